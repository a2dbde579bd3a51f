"""When pcfunc's hand-written autograd functions apply instead of the plain torch operation."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["exact_dtypes"]


def exact_dtypes(*tensors: Tensor) -> bool:
    """``True`` when all ``tensors`` have one dtype and autocast is off on their device.

    The custom autograd functions (``wide_linear``'s weight gradient, the INR's narrow output layer,
    PointConv's neighbour sum) compute in their inputs' dtype. Under autocast, or with mixed dtypes, their
    callers use the plain torch operation, which autocast casts as it should.
    """
    first = tensors[0]
    return not torch.is_autocast_enabled(first.device.type) and all(t.dtype == first.dtype for t in tensors[1:])
