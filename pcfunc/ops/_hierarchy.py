"""PointConv's neighbour hierarchy: the centroids and neighbours of every encoder level, sampled once and cached."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..manifolds import Manifold
from .._validation import check_positive_int
from ._common import checked_inputs, resolve_metric
from ._fps import _fps
from ._knn import _knn

__all__ = ["Level", "NeighborCache", "default_cache", "sample_and_group", "build_hierarchy"]


@dataclass(frozen=True)
class Level:
    r"""One level of a neighbour hierarchy: centroids of a point set and their neighbourhoods.

    Attributes:
        index (Tensor): Centroid indices into the input points, shape :math:`(M,)`,
            or ``None`` when every input point is a centroid.
        pos (Tensor): Centroid coordinates, shape :math:`(M, D)`.
        batch (Tensor): Cloud of each centroid, shape :math:`(M,)`.
        edge_index (Tensor): ``[2, M k]``: row = centroid (index into ``pos``),
            col = neighbour (index into the input points), ``k`` per centroid by increasing distance.
        k (int): Neighbours per centroid.
        clouds (int, optional): When the input was ``clouds`` copies of one point set (a fixed grid),
            that number: the centroids then come cloud by cloud, ``M / clouds`` each, and every
            cloud's neighbourhoods are the first cloud's shifted by the cloud offset. ``None`` otherwise.
    """

    index: Optional[Tensor]
    pos: Tensor
    batch: Tensor
    edge_index: Tensor
    k: int
    clouds: Optional[int] = None

    @property
    def num_centroids(self) -> int:
        """Number of centroids :math:`M` over the whole batch."""
        return self.pos.size(0)


class NeighborCache:
    """A bounded LRU cache of neighbour levels, keyed by the point set itself.

    Batches on a fixed grid (images, ERA5) see the same coordinates at every
    step: their FPS and kNN are computed once and reused. A lookup first
    compares a cheap signature (shape, dtype, device, metric, level spec and
    two checksums of the coordinates) and then confirms with an exact
    :func:`torch.equal` against the stored coordinates, so a hit is never
    stale: different clouds (point dropout, another grid) simply miss.

    Args:
        max_entries (int): Levels kept (least recently used dropped first). (default: ``64``)
        max_points (int): Total stored coordinates across entries; an entry
            bigger than this is not cached. (default: ``4_000_000``)
    """

    def __init__(self, max_entries: int = 64, max_points: int = 4_000_000) -> None:
        self.max_entries = check_positive_int(max_entries, "max_entries")
        self.max_points = check_positive_int(max_points, "max_points")
        self._store: "OrderedDict[Hashable, Tuple[Tensor, Any]]" = OrderedDict()
        self._points = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def signature(pos: Tensor, spec: Hashable) -> Hashable:
        """Cheap key of a point set: shape, dtype, device, ``spec`` and two checksums of the coordinates."""
        w = torch.arange(1, pos.numel() + 1, device=pos.device, dtype=pos.dtype).view_as(pos)
        sums = torch.stack((pos.sum(), (pos * w).sum())).tolist() if pos.numel() else [0.0, 0.0]
        return (tuple(pos.shape), pos.dtype, str(pos.device), spec, tuple(sums))

    def get(self, pos: Tensor, spec: Hashable) -> Any:
        """The value stored for exactly these coordinates and ``spec``, or ``None``."""
        key = self.signature(pos, spec)
        with self._lock:
            entry = self._store.get(key)
            if entry is not None and torch.equal(entry[0], pos):
                self._store.move_to_end(key)
                self.hits += 1
                return entry[1]
            self.misses += 1
            return None

    def put(self, pos: Tensor, spec: Hashable, value: Any) -> None:
        """Store ``value`` for these coordinates and ``spec`` (a copy of ``pos`` is kept for the exact check)."""
        n = pos.size(0)
        if n > self.max_points:
            return
        key = self.signature(pos, spec)
        with self._lock:
            old = self._store.pop(key, None)
            if old is not None:
                self._points -= old[0].size(0)
            self._store[key] = (pos.detach().clone(), value)
            self._points += n
            while len(self._store) > self.max_entries or self._points > self.max_points:
                _, (p, _) = self._store.popitem(last=False)
                self._points -= p.size(0)

    def clear(self) -> None:
        """Drop every entry and reset the hit/miss counters."""
        with self._lock:
            self._store.clear()
            self._points = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"NeighborCache(entries={len(self)}, points={self._points}, hits={self.hits}, misses={self.misses})"


#: The process-wide cache, used unless another cache (or ``cache=None``) is passed.
default_cache = NeighborCache()


def shared_grid(pos: Tensor, batch: Optional[Tensor]) -> Optional[int]:
    r"""The number of clouds :math:`B \ge 2` if the packed batch is :math:`B` copies of one cloud (same size, same
    coordinates, e.g. fields on one grid), else ``None``. Such a batch is computed once and tiled."""
    if batch is None or batch.numel() == 0:
        return None
    B = int(batch[-1]) + 1
    if B < 2 or pos.size(0) % B:
        return None
    n = pos.size(0) // B
    expected = torch.arange(B, device=batch.device).repeat_interleave(n)
    if not torch.equal(batch.long(), expected):
        return None
    view = pos.view(B, n, -1)
    return B if torch.equal(view, view[:1].expand_as(view)) else None


def _base_cloud(pos: Tensor, batch: Optional[Tensor], clouds: Optional[int]) -> Tuple[Tensor, Optional[Tensor], Tensor]:
    """The points to compute on (one cloud of a shared grid, else the whole batch) and the tensor keying the cache."""
    if clouds is not None:
        base = pos[: pos.size(0) // clouds]
        return base, None, base
    if batch is None:
        return pos, None, pos
    return pos, batch, torch.cat((pos, batch[:, None].to(pos.dtype)), 1)


def _compute_level(
    pos: Tensor, batch: Optional[Tensor], num: Optional[int], ratio: Optional[float], k: int,
    manifold: Manifold, backend: str,
) -> Tuple[Optional[Tensor], Tensor]:
    if num is None and ratio is None:
        index = None
        cpos, cbatch = pos, batch
    else:
        index = _fps(pos, batch, ratio, num, manifold, False, None, backend)
        cpos, cbatch = pos[index], None if batch is None else batch[index]
    edge_index = _knn(pos, cpos, k, batch, cbatch, manifold, backend)
    return index, edge_index


def sample_and_group(
    pos: Tensor,
    batch: Optional[Tensor] = None,
    k: int = 9,
    num: Optional[int] = None,
    ratio: Optional[float] = None,
    manifold: Optional[Union[str, Manifold]] = None,
    cache: Optional[NeighborCache] = default_cache,
    backend: str = "auto",
) -> Level:
    r"""Farthest point sampling to ``num`` (or ``ratio``) centroids per cloud, then their ``k`` nearest points.

    With neither ``num`` nor ``ratio`` every point is a centroid. When the
    batch is ``B`` copies of one cloud (a fixed grid), the level is computed
    once for that cloud and tiled over the batch; with a ``cache``, a point
    set seen before (the next step, the next epoch) is served from it. Both
    shortcuts return exactly what the direct computation returns.

    Args:
        pos (Tensor): Packed points, shape :math:`(N, D)`.
        batch (Tensor, optional): Sorted cloud index of each point, shape :math:`(N,)`.
        k (int): Neighbours per centroid.
        num (int, optional): Centroids per cloud.
        ratio (float, optional): Fraction of each cloud kept as centroids.
        manifold (Manifold or str, optional): Metric space (default: Euclidean :math:`\ell_2`).
        cache (NeighborCache, optional): Where levels are looked up and stored;
            ``None`` disables caching. (default: :data:`default_cache`)
        backend (str): Passed to :func:`fps` and :func:`knn`.

    Returns:
        Level: The centroids and their neighbourhoods.
    """
    checked_inputs(pos, "pos", batch, "batch")
    m = resolve_metric(manifold, None, pos.size(1))
    m.assert_check_point(pos, "pos")
    return _sample_and_group(pos, batch, k, num, ratio, m, cache, backend)


def _sample_and_group(
    pos: Tensor, batch: Optional[Tensor], k: int, num: Optional[int], ratio: Optional[float], m: Manifold,
    cache: Optional[NeighborCache], backend: str, clouds: Union[int, None, str] = "detect",
) -> Level:
    """:func:`sample_and_group` on validated input; ``clouds`` may pass on a known shared-grid count."""
    k = check_positive_int(k, "k")
    spec = ("level", m.cache_key(), num, ratio, k, backend)
    if clouds == "detect":
        clouds = shared_grid(pos, batch)
    base_pos, base_batch, cache_key_pos = _base_cloud(pos, batch, clouds)
    hit = cache.get(cache_key_pos, spec) if cache is not None else None
    if hit is None:
        hit = _compute_level(base_pos, base_batch, num, ratio, k, m, backend)
        if cache is not None:
            cache.put(cache_key_pos, spec, hit)
    index, edge_index = hit
    n = base_pos.size(0)
    if clouds is not None:
        m_per = n if index is None else index.numel()
        off_n = torch.arange(clouds, device=pos.device) * n
        if index is not None:
            index = (index[None, :] + off_n[:, None]).reshape(-1)
        row = (edge_index[0][None, :] + (torch.arange(clouds, device=pos.device) * m_per)[:, None]).reshape(-1)
        col = (edge_index[1][None, :] + off_n[:, None]).reshape(-1)
        edge_index = torch.stack((row, col))
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    cpos = pos if index is None else pos[index]
    cbatch = batch.long() if index is None else batch.long()[index]
    return Level(index=index, pos=cpos, batch=cbatch, edge_index=edge_index, k=k, clouds=clouds)


def build_hierarchy(
    pos: Tensor,
    batch: Optional[Tensor],
    levels: Sequence[Tuple[Optional[int], int]],
    manifold: Optional[Union[str, Manifold]] = None,
    cache: Optional[NeighborCache] = default_cache,
    backend: str = "auto",
) -> List[Level]:
    r"""A stack of :func:`sample_and_group` levels, each on the centroids of the previous one.

    Args:
        pos (Tensor): Packed points, shape :math:`(N, D)`.
        batch (Tensor, optional): Sorted cloud index of each point.
        levels (sequence of (num, k)): Centroids per cloud (``None``: all points) and neighbours per level,
            e.g. ``[(1024, 9), (256, 9), (64, 9), (32, 9), (16, 9)]``.
        manifold (Manifold or str, optional): Metric space.
        cache (NeighborCache, optional): Cache of levels (``None`` disables it).
        backend (str): Passed to :func:`fps` and :func:`knn`.

    Returns:
        list of Level: One per entry of ``levels``. With a cache, a repeated call returns the same
        (read-only) tensors as the first.
    """
    if not levels:
        raise ValueError("levels must contain at least one (num, k) pair")
    pairs = []
    for i, spec in enumerate(levels):
        try:
            num, k = spec
        except (TypeError, ValueError):
            raise ValueError(f"levels[{i}] must be a (num, k) pair, got {spec!r}") from None
        pairs.append((num, k))
    checked_inputs(pos, "pos", batch, "batch")
    m = resolve_metric(manifold, None, pos.size(1))
    m.assert_check_point(pos, "pos")
    # The whole stack is cached too (for this number of clouds), so a repeated grid costs one lookup.
    clouds = shared_grid(pos, batch)
    _, _, key_pos = _base_cloud(pos, batch, clouds)
    spec = ("hierarchy", m.cache_key(), tuple(pairs), backend, clouds, str(batch is None))
    if cache is not None:
        hit = cache.get(key_pos, spec)
        if hit is not None:
            return list(hit)
    out: List[Level] = []
    for num, k in pairs:
        # Only the input needs checking, and the shared-grid test is done once: the centroids of B copies of a
        # grid are B copies of the centroids.
        level = _sample_and_group(pos, batch, k, num, None, m, cache, backend, clouds)
        out.append(level)
        pos, batch, clouds = level.pos, level.batch, level.clouds
    if cache is not None:
        cache.put(key_pos, spec, tuple(out))
    return out


