"""Random draws with an optional :class:`torch.Generator`, on any device.

PyTorch draws with a generator only on the generator's own device: ``torch.randn(..., generator=g,
device="cuda")`` with a CPU generator raises. pcfunc's seeded draws (the training steps' generators, a
user's ``torch.Generator().manual_seed(0)``) are therefore made on the generator's device and moved to
where the tensors live: the same seed gives the same numbers on the CPU and on a GPU. Without a generator
the draw is made on the target device directly (PyTorch's global RNG of that device).
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

Device = Optional[Union[str, torch.device]]


def _source(generator: Optional[torch.Generator], device: Device) -> Device:
    return device if generator is None else generator.device


def randn(shape: Sequence[int], generator: Optional[torch.Generator] = None, device: Device = None,
          dtype: Optional[torch.dtype] = None) -> Tensor:
    """Standard normal draws of ``shape`` on ``device``."""
    return torch.randn(tuple(shape), generator=generator, device=_source(generator, device), dtype=dtype).to(device)


def rand(shape: Sequence[int], generator: Optional[torch.Generator] = None, device: Device = None,
         dtype: Optional[torch.dtype] = None) -> Tensor:
    """Uniform draws on :math:`[0, 1)` of ``shape`` on ``device``."""
    return torch.rand(tuple(shape), generator=generator, device=_source(generator, device), dtype=dtype).to(device)


def randint(high: int, shape: Sequence[int], generator: Optional[torch.Generator] = None,
            device: Device = None) -> Tensor:
    """Integers in :math:`[0, \\text{high})` of ``shape`` on ``device``."""
    return torch.randint(high, tuple(shape), generator=generator, device=_source(generator, device)).to(device)


def randperm(n: int, generator: Optional[torch.Generator] = None, device: Device = None) -> Tensor:
    """A random permutation of :math:`0 .. n-1` on ``device``."""
    return torch.randperm(n, generator=generator, device=_source(generator, device)).to(device)


def multinomial(probs: Tensor, num_samples: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """:func:`torch.multinomial` of ``probs`` (rows of non-negative weights), on the device of ``probs``."""
    if generator is None:
        return torch.multinomial(probs, num_samples)
    return torch.multinomial(probs.to(generator.device), num_samples, generator=generator).to(probs.device)
