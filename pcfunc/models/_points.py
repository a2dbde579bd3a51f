"""Packed and dense views of a batch of point clouds, and VaMoH's per-batch point dropout."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .._random import rand
from .._validation import check_batch, check_finite, check_points
from ..manifolds import Manifold
from ..ops import knn, shared_grid, to_padded

__all__ = ["Points", "DensePoints", "as_points", "dense_points", "point_dropout", "shared_positions", "rank_in_cloud"]


class Points(NamedTuple):
    """A packed batch: ``x`` :math:`(N, C)`, ``pos`` :math:`(N, D)`, sorted ``batch`` :math:`(N,)` and the
    number of clouds."""

    x: Tensor
    pos: Tensor
    batch: Tensor
    num_clouds: int


class DensePoints(NamedTuple):
    """A padded batch: ``pos`` :math:`(N, D)` when every cloud has the same coordinates, else
    :math:`(B, N, D)`; ``y`` :math:`(B, N, C)`; ``mask`` :math:`(B, N)` (``True`` at real points)."""

    pos: Tensor
    y: Tensor
    mask: Tensor


def as_points(data: Any, manifold: Manifold, channels: int, name: str, dtype: Optional[torch.dtype] = None) -> Points:
    """Validate a PyG ``Data``/``Batch`` (or anything with ``x``, ``pos`` and optional ``batch``); with ``dtype``
    (the model's), its floating tensors must have it."""
    x, pos = getattr(data, "x", None), getattr(data, "pos", None)
    if not isinstance(x, Tensor) or not isinstance(pos, Tensor):
        raise TypeError(f"{name} must have tensor attributes x [N, C] and pos [N, D] (a PyG Data or Batch), "
                        f"got {type(data).__name__}")
    check_points(pos, f"{name}.pos", manifold.ambient_dim)
    if x.dim() != 2 or x.size(0) != pos.size(0) or x.size(1) != channels:
        raise ValueError(f"{name}.x must have shape [{pos.size(0)}, {channels}] (one row per point of "
                         f"{name}.pos, in_channels={channels}), got {tuple(x.shape)}")
    check_finite(x, f"{name}.x")
    manifold.assert_check_point(pos, f"{name}.pos")
    if dtype is not None:
        for key, t in (("x", x), ("pos", pos)):
            if t.dtype != dtype:
                raise TypeError(f"{name}.{key} is {t.dtype} but the model's parameters are {dtype}: convert the data "
                                f"({name}.{key} = {name}.{key}.to({dtype}), and the other of x and pos alike) or the "
                                f"model (model.to({t.dtype}))")
    batch = getattr(data, "batch", None)
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    check_batch(batch, pos.size(0), f"{name}.batch", f"{name}.pos")
    if pos.size(0) == 0:
        raise ValueError(f"{name} has no points")
    num = int(batch[-1]) + 1
    # A PyG Batch knows its number of clouds (ptr / num_graphs): an empty last cloud is not silently dropped.
    ptr = getattr(data, "ptr", None)
    declared = ptr.numel() - 1 if isinstance(ptr, Tensor) else getattr(data, "num_graphs", None)
    if isinstance(declared, int) and declared > num:
        raise ValueError(f"{name} has {declared} clouds but its last {declared - num} have no points; drop empty "
                         "clouds before batching (a function needs at least one observed point)")
    if bool((torch.bincount(batch, minlength=num) == 0).any()):
        raise ValueError(f"{name}.batch must number its clouds 0..B-1 without gaps (some cloud is empty)")
    return Points(x, pos, batch.long(), num)


def shared_positions(pts: Points) -> Optional[Tensor]:
    """The coordinates :math:`(n, D)` common to every cloud when the batch is copies of one cloud (a grid; also a
    single cloud), else ``None`` (the test of :func:`pcfunc.ops.shared_grid`)."""
    if pts.num_clouds == 1:
        return pts.pos
    clouds = shared_grid(pts.pos, pts.batch)
    return None if clouds is None else pts.pos[: pts.pos.size(0) // clouds]


def rank_in_cloud(score: Tensor, batch: Tensor, counts: Tensor) -> Tensor:
    """Rank of every point's ``score`` inside its cloud, 0 for the highest (sorted by score, then stably by cloud)."""
    order = torch.argsort(score, descending=True)
    order = order[torch.argsort(batch[order], stable=True)]
    start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=score.device) - start[batch[order]]
    return rank


def dense_points(pts: Points) -> DensePoints:
    """Pad to :math:`(B, N_\\max)`; coordinates are kept :math:`(N, D)` if all clouds share them."""
    B = pts.num_clouds
    counts = torch.bincount(pts.batch, minlength=B)
    n = int(counts.max())
    common = shared_positions(pts)
    if common is not None:
        return DensePoints(common, pts.x.view(B, n, -1), torch.ones(B, n, dtype=torch.bool, device=pts.pos.device))
    if bool((counts == n).all()):
        return DensePoints(pts.pos.view(B, n, -1), pts.x.view(B, n, -1),
                           torch.ones(B, n, dtype=torch.bool, device=pts.pos.device))
    # Padding slots repeat each cloud's first point, so they stay on the manifold (they are masked out).
    pos, mask, _ = to_padded(pts.pos, counts)
    y = pts.x.new_zeros(B, n, pts.x.size(1))
    y[mask] = pts.x  # the batch is sorted: the mask's slots in row-major order are the packed order
    return DensePoints(pos, y, mask)


def point_dropout(pts: Points, max_rate: Optional[float], min_points: int,
                  generator: Optional[torch.Generator] = None, shared: bool = False) -> Points:
    r"""VaMoH's point dropout (§3.3): one rate :math:`p \sim \mathcal U(0, \alpha)` for the batch, each point
    kept with probability :math:`1 - p`, and at least ``min_points`` points per cloud (the kept set is
    topped up with the points of highest random score).

    ``max_rate=None`` sets :math:`\alpha = 1 - \text{min\_points} / N_\min` for the smallest cloud.
    Clouds with at most ``min_points`` points are kept whole.

    With ``shared=True`` and clouds that all have the same coordinates (a grid), **one** set of kept
    points is drawn for the batch and applied to every cloud: the clouds still share coordinates, so the
    encoder computes the neighbour hierarchy and the weight networks once per batch instead of once per
    cloud. Otherwise (``shared=False`` or clouds on different points) each cloud draws its own.
    """
    B = pts.num_clouds
    counts = torch.bincount(pts.batch, minlength=B)
    alpha = max(0.0, 1.0 - min_points / int(counts.min())) if max_rate is None else max_rate
    dev = pts.pos.device
    p = float(rand((), generator)) * alpha
    if shared and B > 1 and shared_positions(pts) is not None:
        n = int(counts[0])
        score = rand((n,), generator, device=dev)
        keep = score >= p
        keep[torch.argsort(score, descending=True)[:min_points]] = True
        cols = keep.nonzero().squeeze(1)
        idx = (cols[None, :] + torch.arange(B, device=dev)[:, None] * n).reshape(-1)
        return Points(pts.x[idx], pts.pos[idx], pts.batch[idx], B)
    score = rand((pts.batch.numel(),), generator, device=dev)
    keep = (score >= p) | (rank_in_cloud(score, pts.batch, counts) < min_points)
    idx = keep.nonzero().squeeze(1)
    return Points(pts.x[idx], pts.pos[idx], pts.batch[idx], B)



def check_pooled_points(pos: Tensor, y: Tensor, manifold: Any, channels: int) -> None:
    """``pos`` :math:`(N, D)` on ``manifold`` and finite values ``y`` :math:`(N, C)`, or a clear error naming them."""
    if not isinstance(pos, Tensor) or not isinstance(y, Tensor):
        raise TypeError("pos and y must be torch.Tensors")
    check_points(pos, "pos", manifold.ambient_dim)
    manifold.assert_check_point(pos, "pos")
    if y.dim() != 2 or y.size(0) != pos.size(0) or y.size(1) != channels:
        raise ValueError(f"y must have shape [{pos.size(0)}, {channels}], got {tuple(y.shape)}")
    if not bool(torch.isfinite(y).all()):
        raise ValueError("y has NaN or Inf values")


def check_residual_neighbors(residual_neighbors: Any) -> int:
    """``residual_neighbors`` of :meth:`VaMoH.reconstruct` / :meth:`VaMoH.predictive`: a non-negative integer."""
    k = int(residual_neighbors)
    if isinstance(residual_neighbors, bool) or k != residual_neighbors or k < 0:
        raise ValueError(f"residual_neighbors must be a non-negative integer, got {residual_neighbors!r}")
    return k


def nearest_observed(pts: Points, pos: Tensor, num: int, k: int) -> Tuple[Tensor, Tensor]:
    """Query points ``pos`` :math:`(M, D)` / :math:`(B, M, D)` flattened to :math:`(B M, D)`, and the indices
    :math:`(B M, k)` into ``pts`` of the ``k`` nearest observed points of the same cloud, nearest first
    (memory-linear kNN, any grid size)."""
    M = pos.size(-2)
    q = (pos.expand(num, *pos.shape[-2:]) if pos.dim() == 2 else pos).reshape(num * M, -1).to(pts.pos.dtype)
    qb = torch.arange(num, device=q.device).repeat_interleave(M)
    return q, knn(pts.pos, q, k, pts.batch, qb, p=2)[1].view(num * M, k)


RESIDUAL_KERNELS = ("idw", "linear")

#: Queries whose local interpolation systems are solved at once (16,384 systems of 17 x 17 in float64: 38 MB).
_RBF_CHUNK = 1 << 14


def check_residual_kernel(kernel: Any) -> str:
    """``residual_kernel`` of :meth:`VaMoH.reconstruct` / :meth:`VaMoH.predictive`."""
    if kernel not in RESIDUAL_KERNELS:
        raise ValueError(f"residual_kernel must be one of {RESIDUAL_KERNELS}, got {kernel!r}")
    return kernel


def linear_rbf_weights(query: Tensor, centres: Tensor) -> Tensor:
    r"""Weights :math:`w` of a local linear radial-basis-function interpolant with a constant term: for each query
    :math:`\mathbf q` and its :math:`k` centres :math:`\mathbf x_j`, :math:`f(\mathbf q) = \sum_j w_j y_j` equals
    :math:`\sum_j a_j \phi(\lVert \mathbf q - \mathbf x_j \rVert) + c` with :math:`\phi(r) = -r`, where
    :math:`a, c` interpolate the :math:`y_j` exactly and :math:`\sum_j a_j = 0` (as
    ``scipy.interpolate.RBFInterpolator(kernel="linear", neighbors=k)``).

    Args:
        query (Tensor): :math:`(Q, D)`.
        centres (Tensor): :math:`(Q, k, D)`, each query's centres (distinct).

    Returns:
        Tensor: :math:`(Q, k)` in float64; each row sums to 1 (the constant term reproduces constants).
    """
    Q, k, _ = centres.shape
    out = torch.empty(Q, k, dtype=torch.float64, device=query.device)
    for s in range(0, Q, _RBF_CHUNK):
        x, q = centres[s:s + _RBF_CHUNK].double(), query[s:s + _RBF_CHUNK].double()
        n = x.size(0)
        system = torch.zeros(n, k + 1, k + 1, dtype=torch.float64, device=x.device)
        system[:, :k, :k] = -torch.cdist(x, x)
        system[:, :k, k] = system[:, k, :k] = 1.0
        rhs = torch.cat([-(x - q[:, None]).norm(dim=-1), x.new_ones(n, 1)], dim=1)
        # The system is symmetric: the weights of the data are the solution's first k entries.
        out[s:s + n] = torch.linalg.solve(system, rhs)[:, :k]
    return out


def residual_weights(pts: Points, dense: Any, query: Tensor, k: int, kernel: str = "idw") -> Tuple[Tensor, Tensor]:
    """The ``k`` nearest observed points of the same cloud of every query point and their interpolation weights,
    each :math:`(B M, k)` (``dense``: :func:`dense_points` of ``pts``): normalised inverse squared distances
    (``kernel="idw"``) or the weights of a local linear RBF interpolant (``"linear"``, :func:`linear_rbf_weights`)."""
    counts = dense.mask.sum(-1)
    if k > int(counts.min()):
        raise ValueError(f"residual_neighbors={k} is more than the {int(counts.min())} observed points of the "
                         "smallest cloud")
    q, nearest = nearest_observed(pts, query, dense.mask.size(0), k)
    if check_residual_kernel(kernel) == "linear" and k > 1:
        return nearest, linear_rbf_weights(q, pts.pos[nearest]).to(q.dtype)
    w = 1.0 / (q.unsqueeze(1) - pts.pos[nearest]).pow(2).sum(-1).clamp_min(1e-24)  # [B M, k]
    return nearest, w / w.sum(-1, keepdim=True)


def check_query(pos: Any, manifold: Manifold, num: int) -> Tensor:
    """Query points of a decoder: :math:`(M, D)` shared by the ``num`` functions or :math:`(num, M, D)`, finite and
    on ``manifold`` (no values are returned for points off it)."""
    D = manifold.ambient_dim
    if not isinstance(pos, Tensor):
        raise TypeError(f"pos must be a torch.Tensor, got {type(pos).__name__}")
    if not (pos.dim() == 2 or (pos.dim() == 3 and pos.size(0) == num)):
        raise ValueError(f"pos must have shape [M, {D}] or [{num}, M, {D}], got {tuple(pos.shape)}")
    flat = pos.reshape(-1, pos.size(-1))
    check_points(flat, "pos", D)
    manifold.assert_check_point(flat, "pos")
    return pos
