"""Farthest point sampling within each cloud of a batch (torch-cluster when installed, a reference loop otherwise)."""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from .._random import rand
from ..manifolds import Manifold
from ._common import (_lp_exponent, batch_counts, checked_inputs, num_per_cloud, resolve_metric, select_backend,
                      to_padded, upcast_reduced)

__all__ = ["fps"]


def fps(
    pos: Tensor,
    batch: Optional[Tensor] = None,
    ratio: Optional[float] = None,
    num: Optional[int] = None,
    manifold: Optional[Union[str, Manifold]] = None,
    p: Optional[Union[float, str]] = None,
    random_start: bool = False,
    generator: Optional[torch.Generator] = None,
    backend: str = "auto",
) -> Tensor:
    r"""Farthest point sampling on a manifold (Eldar et al. 1997; PointNet++).

    For each cloud, starting from its first point (or a random one), repeatedly
    add the point farthest from those already chosen:

    .. math::
        s_{t+1} = \operatorname*{arg\,max}_{i}\ \min_{u \le t} d(x_i, x_{s_u}).

    Ties go to the lowest index, so the result is deterministic. A chosen point
    is never chosen again, so with duplicated coordinates (e.g. 90 copies of a
    pole) every distinct location is taken before any copy, and the indices
    are always distinct.

    Backends (``"auto"`` picks the first that applies):

    * ``"numba"`` (CPU): an exact bucketed FPS compiled with Numba, for any
      :class:`~pcfunc.manifolds.Euclidean` :math:`\ell_p` metric and any
      manifold whose metric orders points like the ambient :math:`\ell_2`
      distance (e.g. :class:`~pcfunc.manifolds.Sphere`). A spatial bucket is
      skipped when its bounding box is farther from the new centroid than its
      farthest point, so late steps touch only nearby points.
    * ``"torch_cluster"``: the compiled kernel of ``torch_cluster`` (CPU and
      CUDA) for metrics ordered like ambient :math:`\ell_2`.
    * ``"torch"``: the pure-PyTorch reference for any manifold, memory :math:`O(N)`.

    All three return the same indices (up to exact ties; ``"numba"`` and
    ``"torch"`` break ties identically).

    Args:
        pos (Tensor): Packed points, shape :math:`(N, D)`.
        batch (Tensor, optional): Sorted cloud index of each point, shape :math:`(N,)`.
        ratio (float, optional): Fraction of each cloud to keep, :math:`\lceil r\, n_b \rceil` points.
        num (int, optional): Points to keep per cloud (give ``ratio`` or ``num``).
        manifold (Manifold or str, optional): Metric space of ``pos``
            (default: Euclidean :math:`\ell_2`).
        p (float or "inf", optional): Shortcut for ``manifold=Euclidean(D, p)``.
        random_start (bool): Start each cloud at a random point. (default: ``False``)
        generator (torch.Generator, optional): Source of the random start
            (``"torch"`` and ``"numba"``; ``torch_cluster`` draws its own).
        backend (str): ``"auto"``, ``"numba"``, ``"torch_cluster"`` or ``"torch"``.

    Returns:
        Tensor: Indices into ``pos`` (int64), cloud by cloud, in selection order;
        shape :math:`(\sum_b m_b,)`.
    """
    checked_inputs(pos, "pos", batch, "batch")
    pos = upcast_reduced(pos)
    m = resolve_metric(manifold, p, pos.size(1))
    m.assert_check_point(pos, "pos")
    return _fps(pos, batch, ratio, num, m, random_start, generator, backend)


def _fps(
    pos: Tensor, batch: Optional[Tensor], ratio: Optional[float], num: Optional[int], m: Manifold,
    random_start: bool, generator: Optional[torch.Generator], backend: str,
) -> Tensor:
    """:func:`fps` on validated ``pos``/``batch`` (callers that validated once skip the repeated scans)."""
    counts = batch_counts(batch, pos.size(0), pos.device)
    if pos.size(0) == 0:
        raise ValueError("pos has no points")
    if bool((counts == 0).any()):
        raise ValueError(f"batch has empty clouds (cloud {int((counts == 0).nonzero()[0])} has no points)")
    k = num_per_cloud(counts, ratio, num)
    chosen = select_backend("fps", m, backend, pos)
    if chosen == "torch_cluster":
        return _fps_torch_cluster(pos, batch, counts, k, random_start)
    if random_start:
        u = rand((counts.numel(),), generator, device=pos.device, dtype=torch.float64)
        starts = (u * counts.double()).long().minimum(counts - 1)
    else:
        starts = torch.zeros_like(counts)
    if chosen == "numba":
        from ._numba_kernels import fps_buckets

        p_exp = _lp_exponent(m)
        assert p_exp is not None
        idx = fps_buckets(pos.detach().cpu().numpy(), counts.cpu().numpy(), k.cpu().numpy(), starts.cpu().numpy(), p_exp)
        return torch.from_numpy(idx).to(pos.device)
    return _fps_reference(pos, counts, k, m, starts)


def _fps_torch_cluster(pos: Tensor, batch: Optional[Tensor], counts: Tensor, k: Tensor, random_start: bool) -> Tensor:
    import torch_cluster

    # torch_cluster keeps ceil(ratio * n) points; aim half a point below k so rounding cannot add one.
    ratio = ((k.double() - 0.5) / counts.double()).to(pos.dtype)
    if batch is None:
        ratio = ratio[:1]
        batch_arg = None
    else:
        batch_arg = batch.long()
    idx = torch_cluster.fps(pos, batch_arg, ratio, random_start)
    if idx.numel() != int(k.sum()):  # guard the rounding assumption above
        raise RuntimeError(f"torch_cluster.fps returned {idx.numel()} points, expected {int(k.sum())}")
    return idx


def _fps_reference(pos: Tensor, counts: Tensor, k: Tensor, manifold: Manifold, starts: Tensor) -> Tensor:
    padded, mask, ptr = to_padded(pos, counts)
    B, L, _ = padded.shape
    steps = int(k.max())
    ar = torch.arange(B, device=pos.device)
    # Padding slots get -inf so they are never the farthest; chosen slots get -1 (below any distance).
    mind = torch.full((B, L), float("inf"), dtype=pos.dtype, device=pos.device).masked_fill_(~mask, float("-inf"))
    cur = starts.clone()
    out = torch.empty(B, steps, dtype=torch.long, device=pos.device)
    # Where the metric orders points like ambient l2, the squared ambient distance picks the same points
    # and costs a fraction of a general cdist (no square root, no arcsin).
    ambient = manifold.ambient_euclidean_order
    for t in range(steps):
        out[:, t] = cur
        c = padded[ar, cur].unsqueeze(1)
        d = (padded - c).square_().sum(-1) if ambient else manifold.cdist(c, padded).squeeze(1)
        mind = torch.minimum(mind, d)
        mind[ar, cur] = -1.0
        cur = mind.argmax(dim=1)
    keep = torch.arange(steps, device=pos.device)[None, :] < k[:, None]
    return (out + ptr[:-1, None])[keep]
