"""k nearest neighbours within each cloud of a batch, exact, in memory linear in the points (torch-cluster when
installed)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from ..manifolds import Manifold
from .._validation import check_positive_int
from ._common import (_lp_exponent, batch_counts, checked_inputs, resolve_metric, select_backend, to_padded,
                      upcast_reduced)

__all__ = ["knn", "KNN_CHUNK_ELEMENTS"]

#: Largest distance block (elements) the reference kNN materialises at once: 2**22 = 16 MiB in float32.
KNN_CHUNK_ELEMENTS = 1 << 22


def knn(
    x: Tensor,
    y: Tensor,
    k: int,
    batch_x: Optional[Tensor] = None,
    batch_y: Optional[Tensor] = None,
    manifold: Optional[Union[str, Manifold]] = None,
    p: Optional[Union[float, str]] = None,
    backend: str = "auto",
    chunk_elements: int = KNN_CHUNK_ELEMENTS,
) -> Tensor:
    r"""The ``k`` nearest points of ``x`` for every query point of ``y``, within each cloud.

    .. math::
        \mathcal{N}_k(y_j) = \operatorname*{arg\,min}_{S \subseteq \{i : b^x_i = b^y_j\},\ |S| = k}
        \ \sum_{i \in S} d(x_i, y_j)

    The result follows PyG's convention: ``edge_index[0]`` is the query (index
    into ``y``), ``edge_index[1]`` the neighbour (index into ``x``); the ``k``
    entries of each query are consecutive and sorted by increasing distance
    (among points at exactly equal distance, such as duplicated coordinates,
    which ones are kept is deterministic but unspecified).

    Backends (``"auto"`` picks the first that applies):

    * ``"numba"`` (CPU): exact search over spatial buckets compiled with
      Numba, for any :class:`~pcfunc.manifolds.Euclidean` :math:`\ell_p`
      metric and manifolds ordered like the ambient :math:`\ell_2` distance
      (e.g. :class:`~pcfunc.manifolds.Sphere`); memory :math:`O(N + M k)`.
    * ``"torch_cluster"``: the compiled kernels of ``torch_cluster`` (CPU and
      CUDA) for metrics ordered like ambient :math:`\ell_2`.
    * ``"torch"``: the pure-PyTorch reference for any :math:`\ell_p` and any
      manifold. It is chunked over queries and points and keeps a running
      top-``k``, so memory is :math:`O((N + M) k)` plus one block of at most
      ``chunk_elements`` distances: it never forms the :math:`M \times N` matrix.

    Args:
        x (Tensor): Points searched, shape :math:`(N, D)`.
        y (Tensor): Query points, shape :math:`(M, D)`.
        k (int): Neighbours per query; at most the size of the query's cloud in ``x``.
        batch_x (Tensor, optional): Sorted cloud index of each point of ``x``, shape :math:`(N,)`.
        batch_y (Tensor, optional): Sorted cloud index of each point of ``y``, shape :math:`(M,)`.
        manifold (Manifold or str, optional): Metric space (default: Euclidean :math:`\ell_2`).
        p (float or "inf", optional): Shortcut for ``manifold=Euclidean(D, p)``.
        backend (str): ``"auto"``, ``"numba"``, ``"torch_cluster"`` or ``"torch"``.
        chunk_elements (int): Distance block size of the reference backend.

    Returns:
        Tensor: ``edge_index`` of shape :math:`(2, M k)`, int64.
    """
    checked_inputs(x, "x", batch_x, "batch_x")
    checked_inputs(y, "y", batch_y, "batch_y")
    x, y = upcast_reduced(x), upcast_reduced(y)
    if x.size(1) != y.size(1):
        raise ValueError(f"x and y must have the same number of coordinates, got {x.size(1)} and {y.size(1)}")
    m = resolve_metric(manifold, p, x.size(1))
    m.assert_check_point(x, "x")
    m.assert_check_point(y, "y")
    return _knn(x, y, k, batch_x, batch_y, m, backend, chunk_elements)


def _knn(
    x: Tensor, y: Tensor, k: int, batch_x: Optional[Tensor], batch_y: Optional[Tensor], m: Manifold,
    backend: str, chunk_elements: int = KNN_CHUNK_ELEMENTS,
) -> Tensor:
    """:func:`knn` on validated points and batches (same number of coordinates, checked by :func:`knn`)."""
    if x.dtype != y.dtype:
        raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    if (batch_x is None) != (batch_y is None):
        raise ValueError("give both batch_x and batch_y, or neither")
    k = check_positive_int(k, "k")
    chunk_elements = check_positive_int(chunk_elements, "chunk_elements")
    num_clouds = 1
    if batch_y is not None and batch_y.numel():
        num_clouds = int(batch_y.max()) + 1
    cx = batch_counts(batch_x, x.size(0), x.device, num_clouds)
    cy = batch_counts(batch_y, y.size(0), y.device, cx.numel())
    if cx.numel() > cy.numel():
        cy = torch.cat((cy, cy.new_zeros(cx.numel() - cy.numel())))
    short = (cx < k) & (cy > 0)
    if bool(short.any()):
        b = int(short.nonzero()[0])
        raise ValueError(f"k={k} is larger than cloud {b} of x, which has {int(cx[b])} points")
    if y.size(0) == 0:
        return torch.empty(2, 0, dtype=torch.long, device=y.device)
    chosen = select_backend("knn", m, backend, x)
    if chosen == "torch_cluster":
        return _knn_torch_cluster(x, y, k, batch_x, batch_y, m)
    if chosen == "numba":
        from ._numba_kernels import knn_buckets

        p_exp = _lp_exponent(m)
        assert p_exp is not None
        col = knn_buckets(x.detach().cpu().numpy(), cx.cpu().numpy(), y.detach().cpu().numpy(), cy.cpu().numpy(),
                          k, p_exp)
        row = torch.arange(y.size(0), device=y.device).repeat_interleave(k)
        return torch.stack((row, torch.from_numpy(col).reshape(-1).to(y.device)))
    return _knn_reference(x, y, k, cx, cy, m, chunk_elements)


def _sort_rows(x: Tensor, y: Tensor, k: int, col: Tensor, manifold: Manifold) -> Tensor:
    """Order each query's k neighbours by distance (stable, ties by index)."""
    M = y.size(0)
    col = col.view(M, k)
    col, _ = col.sort(dim=1)  # ties then fall back to the lower index
    if manifold.ambient_euclidean_order:  # same order as the metric, and cheaper than e.g. arcs on the sphere
        d = (x[col] - y.unsqueeze(1)).square_().sum(-1)
    else:
        d = manifold.dist(y.unsqueeze(1), x[col])
    order = d.argsort(dim=1, stable=True)
    return col.gather(1, order).reshape(-1)


def _knn_torch_cluster(
    x: Tensor, y: Tensor, k: int, batch_x: Optional[Tensor], batch_y: Optional[Tensor], manifold: Manifold
) -> Tensor:
    import torch_cluster

    bx = None if batch_x is None else batch_x.long()
    by = None if batch_y is None else batch_y.long()
    # Threads only pay off for many queries (measured: 1,024 queries run faster on one worker).
    workers = torch.get_num_threads() if y.size(0) * k >= 1 << 16 else 1
    row, col = torch_cluster.knn(x, y, k, bx, by, num_workers=workers)
    if row.numel() != y.size(0) * k:
        raise RuntimeError(f"torch_cluster.knn returned {row.numel()} pairs, expected {y.size(0) * k}")
    # Group by query (stable, torch_cluster's own order within a query is not part of its contract).
    order = torch.argsort(row, stable=True)
    col = _sort_rows(x, y, k, col[order], manifold)
    row = torch.arange(y.size(0), device=y.device).repeat_interleave(k)
    return torch.stack((row, col))


def _knn_reference(
    x: Tensor, y: Tensor, k: int, cx: Tensor, cy: Tensor, manifold: Manifold, chunk_elements: int
) -> Tensor:
    xp, xmask, xptr = to_padded(x, cx)
    yp, ymask, _ = to_padded(y, cy)
    B, L, _ = xp.shape
    Q = yp.size(1)
    # Block sizes: B * qc * pc <= chunk_elements, with at least k columns to merge into.
    qc = max(1, min(Q, 1024, chunk_elements // max(1, B * max(k, 1))))
    by_products = manifold.ambient_euclidean_order
    if by_products:
        xx = xp.square().sum(-1).masked_fill(~xmask, float("inf"))  # [B, L]
        xx_max = xx.masked_fill(~xmask, 0).amax(1, keepdim=True)  # [B, 1], for the rounding bound
    best_i_all = []
    for q0 in range(0, Q, qc):
        yq = yp[:, q0:q0 + qc]
        best = None
        if by_products:
            best = _chunk_by_products(xp, xmask, xx, xx_max, yq, ymask[:, q0:q0 + qc], k, chunk_elements)
        if best is None:
            best = _chunk_exact(xp, xmask, yq, k, manifold, chunk_elements)
        best_i_all.append(best)
    best_i = torch.cat(best_i_all, dim=1)
    col = (best_i + xptr[:-1, None, None])[ymask]
    row = torch.arange(y.size(0), device=y.device).repeat_interleave(k)
    return torch.stack((row, col.reshape(-1)))


def _chunk_exact(xp: Tensor, xmask: Tensor, yq: Tensor, k: int, manifold: Manifold, chunk_elements: int) -> Tensor:
    """The ``k`` nearest of each query of one block by ``manifold.cdist``, over blocks of points, merged in a
    running top-``k``; indices into the padded clouds, sorted by (distance, index)."""
    B, L, _ = xp.shape
    pc = max(k, min(L, chunk_elements // max(1, B * yq.size(1))))
    inf = torch.tensor(float("inf"), dtype=xp.dtype, device=xp.device)
    best_d = xp.new_full((B, yq.size(1), 0), float("inf"))
    best_i = torch.empty(B, yq.size(1), 0, dtype=torch.long, device=xp.device)
    for p0 in range(0, L, pc):
        d = manifold.cdist(yq, xp[:, p0:p0 + pc])
        d = torch.where(xmask[:, None, p0:p0 + pc], d, inf)
        best_d, best_i = _merge(best_d, best_i, d, p0, k)
    return _sorted(best_d, best_i)[1]


def _merge(best_d: Tensor, best_i: Tensor, d: Tensor, p0: int, k: int) -> Tuple[Tensor, Tensor]:
    """The running top-``k`` (smallest) merged with the block ``d`` of columns ``p0 ..``: the block's own top-``k``
    first (one pass over the block, no copy of it), then the ``2 k`` candidates."""
    cd, ci = d.topk(min(k, d.size(2)), dim=2, largest=False, sorted=False)
    cand_d = torch.cat((best_d, cd), dim=2)
    cand_i = torch.cat((best_i, ci + p0), dim=2)
    best_d, sel = cand_d.topk(min(k, cand_d.size(2)), dim=2, largest=False, sorted=False)
    return best_d, cand_i.gather(2, sel)


def _sorted(d: Tensor, i: Tensor) -> Tuple[Tensor, Tensor]:
    """``d`` and the indices ``i`` ordered by (``d``, index), like the compiled paths."""
    i, o = i.sort(dim=2)
    d = d.gather(2, o)
    d, o = d.sort(dim=2, stable=True)
    return d, i.gather(2, o)


#: Candidates beyond ``k`` that the matrix-product search keeps per query for the exact re-ranking.
_MARGIN = 8


def _chunk_by_products(xp: Tensor, xmask: Tensor, xx: Tensor, xx_max: Tensor, yq: Tensor, yvalid: Tensor, k: int,
                       chunk_elements: int) -> Optional[Tensor]:
    r"""The ``k`` nearest in ambient :math:`\ell_2` of each query of one block, found with matrix products.

    Squared distances :math:`\|y\|^2 + \|x\|^2 - 2\, y \cdot x` (one batched matrix product per block of points:
    the GPU's fast path, where ``torch.cdist``'s exact kernel is slow) pick ``k + 8`` candidates per query; their
    exact squared differences rank them. The product form can be off by a rounding error :math:`\varepsilon`
    (bounded from the dtype and the norms, and from the reduced-precision matrix products PyTorch may be allowed to
    use): the answer is certified exact when every point left out is farther, even after that error, than the
    ``k``-th chosen one. ``None`` (then the caller searches exactly) when a query of the block is not certified,
    as happens for near-ties beyond the margin."""
    B, L, D = xp.shape
    kc = min(L, k + _MARGIN)
    pc = max(kc, min(L, chunk_elements // max(1, B * yq.size(1))))
    with torch.autocast(xp.device.type, enabled=False):
        yy = yq.square().sum(-1)  # [B, q]
        best_d = xp.new_full((B, yq.size(1), 0), float("inf"))
        best_i = torch.empty(B, yq.size(1), 0, dtype=torch.long, device=xp.device)
        for p0 in range(0, L, pc):
            xc = xp[:, p0:p0 + pc]
            # |x|^2 - 2 y.x: the squared distance less |y|^2, which does not change a query's ranking.
            d = torch.baddbmm(xx[:, None, p0:p0 + pc], yq, xc.transpose(1, 2), alpha=-2.0)
            best_d, best_i = _merge(best_d, best_i, d, p0, kc)
        best_d = best_d + yy[..., None]
        # Exact squared distances of the candidates (padding: infinite).
        pts = xp.gather(1, best_i.reshape(B, -1, 1).expand(-1, -1, D)).view(*best_i.shape, D)
        exact = (pts - yq[:, :, None]).square_().sum(-1)
        exact = exact.masked_fill(~xmask.gather(1, best_i.reshape(B, -1)).view(best_i.shape), float("inf"))
        exact, order = _sorted(exact, best_i)
        kth = exact[..., k - 1]
        # Everything not among the candidates is at least as far, in the product form, as the farthest candidate.
        left_out = best_d.max(dim=2).values if L > kc else torch.full_like(kth, float("inf"))
        u = torch.finfo(xp.dtype).eps
        if xp.dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
            u = 2.0 ** -8  # TF32 or bfloat16 products
        eps = 4 * (D + 2) * u * (xx_max + yy)
        certified = (left_out - eps > kth) | ~yvalid | torch.isinf(left_out)
    if not bool(certified.all()):
        return None
    return order[..., :k]

