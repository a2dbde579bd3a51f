"""Helpers shared by the neighbour-search kernels: argument resolution and packed <-> padded layouts."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .. import _compat
from .._validation import check_batch, check_points
from ..manifolds import Euclidean, Manifold, resolve_manifold

FPS_BACKENDS = ("auto", "torch", "torch_cluster", "numba")
KNN_BACKENDS = ("auto", "torch", "torch_cluster", "numba")


def resolve_metric(
    manifold: Optional[Union[str, Manifold]], p: Optional[Union[float, str]], dim: int
) -> Manifold:
    """The manifold from ``manifold=`` or the ``p=`` shortcut (Euclidean lp); Euclidean l2 by default."""
    if manifold is not None and p is not None:
        raise ValueError("give either manifold= or p=, not both")
    if p is not None:
        return Euclidean(dim, p=p)
    if manifold is None:
        return Euclidean(dim)
    if isinstance(manifold, str) and manifold.lower() == "euclidean":
        return Euclidean(dim)
    m = resolve_manifold(manifold)
    if m.ambient_dim != dim:
        raise ValueError(f"points have {dim} coordinates but manifold {m!r} has ambient_dim={m.ambient_dim}")
    return m


def _lp_exponent(manifold: Manifold) -> Optional[float]:
    """The p of an lp metric that orders points like ``manifold.cdist``, or None."""
    if isinstance(manifold, Euclidean):
        return manifold.p
    return 2.0 if manifold.ambient_euclidean_order else None


def select_backend(op: str, manifold: Manifold, backend: str, pos: Tensor) -> str:
    """Resolve ``backend`` for ``op`` ("fps" or "knn") to "torch", "torch_cluster" or "numba".

    "auto" prefers, on the CPU, the Numba kernels (any lp, and manifolds ordered like ambient l2), then
    torch_cluster (ambient-l2-ordered metrics), then the pure-PyTorch reference; on other devices torch_cluster
    where the metric allows, else the reference.
    """
    allowed = FPS_BACKENDS if op == "fps" else KNN_BACKENDS
    if backend not in allowed:
        raise ValueError(f"backend must be one of {allowed} for {op}, got {backend!r}")
    float_ok = pos.dtype in (torch.float32, torch.float64)
    if backend in ("torch_cluster", "numba") and not float_ok:
        raise TypeError(f"backend={backend!r} needs float32 or float64 positions, got {pos.dtype}; use "
                        "backend='auto' or 'torch' (any floating dtype), or convert them")
    if backend == "torch_cluster":
        _compat.require("torch_cluster", "backend='torch_cluster'")
        if not manifold.ambient_euclidean_order:
            raise ValueError(
                f"backend='torch_cluster' computes ambient l2 neighbours, which differ from those of {manifold!r}; "
                "use backend='auto' or 'torch'"
            )
        return backend
    if backend == "numba":
        _compat.require("numba", "backend='numba'")
        if _lp_exponent(manifold) is None:
            raise ValueError(f"backend='numba' supports lp metrics and ambient-l2-ordered manifolds, not {manifold!r}")
        return backend
    if backend == "torch":
        return backend
    if pos.device.type == "cpu" and float_ok and _compat.WITH_NUMBA and _lp_exponent(manifold) is not None:
        return "numba"
    if _compat.WITH_TORCH_CLUSTER and manifold.ambient_euclidean_order and float_ok:
        return "torch_cluster"
    return "torch"


def batch_counts(batch: Optional[Tensor], n: int, device: torch.device, num_clouds: Optional[int] = None) -> Tensor:
    """Points per cloud (int64, shape [B])."""
    if batch is None:  # one cloud of n points (further requested clouds are empty)
        counts = torch.zeros(max(1, num_clouds or 1), dtype=torch.long, device=device)
        counts[0] = n
        return counts
    size = int(batch.max()) + 1 if batch.numel() else 0
    if num_clouds is not None:
        size = max(size, num_clouds)
    return torch.bincount(batch, minlength=size)


def upcast_reduced(pos: Tensor) -> Tensor:
    """bfloat16/float16 positions as float32: the kernels (and ``torch.cdist``) need float32 or float64, and the
    result (indices) does not depend on the working precision beyond ties."""
    return pos.float() if pos.dtype in (torch.bfloat16, torch.float16) else pos


def checked_inputs(pos: Tensor, name: str, batch: Optional[Tensor], batch_name: str) -> None:
    check_points(pos, name)
    check_batch(batch, pos.size(0), batch_name, name)


def to_padded(pos: Tensor, counts: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Packed points to a padded batch: the points of cloud :math:`b` fill the first ``counts[b]`` slots of row
    :math:`b` (as :func:`torch_geometric.utils.to_dense_batch` with a sorted batch vector).

    Padding slots hold a copy of the cloud's first point, not zeros, so that any manifold's distance is finite
    there (a zero vector on the sphere could give NaN); callers mask them out.

    Args:
        pos (Tensor): Packed points :math:`(N, D)`, cloud by cloud.
        counts (Tensor): Points per cloud :math:`(B,)`, summing to :math:`N`.

    Returns:
        (Tensor, Tensor, Tensor): the padded points :math:`(B, L, D)` with :math:`L` the largest count, the mask
        of real points :math:`(B, L)`, and the offsets of the clouds :math:`(B + 1,)`.
    """
    B = counts.numel()
    L = int(counts.max()) if B else 0
    ptr = torch.zeros(B + 1, dtype=torch.long, device=pos.device)
    ptr[1:] = torch.cumsum(counts, 0)
    cloud = torch.repeat_interleave(torch.arange(B, device=pos.device), counts)
    slot = torch.arange(pos.size(0), device=pos.device) - ptr[cloud]
    first = pos[ptr[:-1].clamp(max=max(pos.size(0) - 1, 0))] if pos.size(0) else pos.new_zeros(B, pos.size(1))
    out = first.unsqueeze(1).expand(B, L, pos.size(1)).clone()
    out[cloud, slot] = pos
    mask = torch.zeros(B, L, dtype=torch.bool, device=pos.device)
    mask[cloud, slot] = True
    return out, mask, ptr


def num_per_cloud(counts: Tensor, ratio: Optional[float], num: Optional[int], what: str = "num") -> Tensor:
    """Samples per cloud from ``ratio`` (ceil(ratio * n)) or ``num``; errors name the argument."""
    if (ratio is None) == (num is None):
        raise ValueError("give exactly one of ratio= or num=")
    if ratio is not None:
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not (0.0 < float(ratio) <= 1.0):
            raise ValueError(f"ratio must be a number in (0, 1], got {ratio!r}")
        # Tiny slack so that ratio * n computed in floating point never rounds up past an integer.
        return torch.ceil(counts.double() * float(ratio) - 1e-9).long().clamp_min(1).minimum(counts)
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"{what} must be a positive integer, got {num!r}")
    small = counts < num
    if bool(small.any()):
        b = int(small.nonzero()[0])
        raise ValueError(f"{what}={num} is larger than cloud {b}, which has {int(counts[b])} points")
    return torch.full_like(counts, num)


