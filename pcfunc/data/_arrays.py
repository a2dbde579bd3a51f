"""Array-like inputs of the data layer (NumPy arrays, sequences, tensors) as tensors."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]


def _as_tensor(a: ArrayLike, dtype: Optional[torch.dtype] = None) -> Tensor:
    if not isinstance(a, Tensor):
        arr = np.asarray(a)
        # Copy read-only or negatively strided arrays (e.g. lat[::-1]), which torch cannot wrap.
        contiguous = arr.flags.writeable and all(s >= 0 for s in arr.strides)
        t = torch.as_tensor(arr if contiguous else np.ascontiguousarray(arr).copy())
    else:
        t = a
    if dtype is not None:
        t = t.to(dtype)
    elif not torch.is_floating_point(t):
        t = t.to(torch.get_default_dtype())
    return t
