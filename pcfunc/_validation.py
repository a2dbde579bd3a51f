"""Input checks shared by every layer: clear errors that name the argument, before any work."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

__all__ = ["check_finite", "check_points", "check_batch", "check_positive_int"]


def check_finite(t: Tensor, name: str) -> None:
    if not torch.is_floating_point(t):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    if t.is_meta:
        raise ValueError(f"{name} is a meta tensor (a shape without values); give real data, e.g. build the "
                         "tensor on 'cpu' or 'cuda', or load a model created under the meta device with "
                         "load_state_dict(..., assign=True)")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(dim=-1).sum()) if t.dim() > 1 else int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains NaN or Inf values ({bad} rows)")


def check_points(pos: Tensor, name: str, dim: Optional[int] = None) -> None:
    """``pos`` must be a finite ``[N, D]`` floating tensor (with ``D == dim`` if given)."""
    if not isinstance(pos, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(pos).__name__}")
    if pos.dim() != 2:
        raise ValueError(f"{name} must have shape [N, D], got {tuple(pos.shape)}")
    if dim is not None and pos.size(1) != dim:
        raise ValueError(f"{name} must have {dim} coordinates per point (shape [N, {dim}]), got {tuple(pos.shape)}")
    check_finite(pos, name)


def check_batch(batch: Optional[Tensor], num_points: int, name: str, points_name: str) -> None:
    """``batch`` must be None or a sorted int64 vector of length ``num_points``."""
    if batch is None:
        return
    if not isinstance(batch, Tensor) or batch.dim() != 1:
        raise ValueError(f"{name} must be a 1-D tensor of cloud indices, got {getattr(batch, 'shape', batch)}")
    if batch.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must be an integer tensor, got dtype {batch.dtype}")
    if batch.numel() != num_points:
        raise ValueError(f"{name} has {batch.numel()} entries but {points_name} has {num_points} points")
    if batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        raise ValueError(f"{name} must be sorted (PyG packs the points of each cloud contiguously)")
    if batch.numel() > 0 and int(batch.min()) < 0:
        raise ValueError(f"{name} must be non-negative")


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value
