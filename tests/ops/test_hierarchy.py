import pytest
import torch

from pcfunc.data import LatLonGrid
from pcfunc.manifolds import Euclidean, Sphere
from pcfunc.ops import NeighborCache, build_hierarchy, fps, knn, sample_and_group

from ..conftest import BACKENDS

LEVELS = [(256, 9), (64, 9), (16, 9)]


def _direct(pos, batch, levels, manifold, backend):
    """The hierarchy without sharing or caching: fps + knn on the packed batch."""
    out = []
    for num, k in levels:
        idx = fps(pos, batch, num=num, manifold=manifold, backend=backend)
        cpos, cbatch = pos[idx], batch[idx]
        out.append((idx, knn(pos, cpos, k, batch, cbatch, manifold=manifold, backend=backend)))
        pos, batch = cpos, cbatch
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_grid_computed_once_and_equal_to_direct(backend):
    grid = LatLonGrid.regular(19, 36)
    B = 4
    pos = grid.pos.double().repeat(B, 1)
    batch = torch.arange(B).repeat_interleave(grid.num_points)
    cache = NeighborCache()
    levels = build_hierarchy(pos, batch, LEVELS, manifold=Sphere(), cache=cache, backend=backend)
    # One lookup for the whole stack, one per level; stored: each level and the stack.
    assert cache.misses == 1 + len(LEVELS) and len(cache) == 1 + len(LEVELS)
    # Only the first cloud's coordinates are stored: the batch was recognised as copies of one grid.
    sizes = [entry[0].size(0) for key, entry in cache._store.items() if key[3][0] == "level"]
    assert sizes == [grid.num_points, 256, 64]
    for level, (idx, edge_index) in zip(levels, _direct(pos, batch, LEVELS, Sphere(), backend)):
        assert torch.equal(level.index, idx)
        assert torch.equal(level.edge_index, edge_index)
        assert torch.equal(level.batch, torch.arange(B).repeat_interleave(level.num_centroids // B))
    again = build_hierarchy(pos, batch, LEVELS, manifold=Sphere(), cache=cache, backend=backend)
    assert cache.hits == 1  # the stack in one lookup
    # Another batch size on the same grid reuses the per-level entries.
    three = build_hierarchy(pos[: 3 * grid.num_points], batch[: 3 * grid.num_points], LEVELS, manifold=Sphere(),
                            cache=cache, backend=backend)
    assert cache.hits == 1 + len(LEVELS)
    assert torch.equal(three[0].edge_index, levels[0].edge_index[:, : 3 * 256 * 9])
    for a, b in zip(levels, again):
        assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.pos, b.pos)


def test_cache_is_never_stale():
    cache = NeighborCache()
    grid = LatLonGrid.regular(10, 20)
    pos = grid.pos.repeat(2, 1)
    batch = torch.arange(2).repeat_interleave(grid.num_points)
    first = sample_and_group(pos, batch, k=4, num=30, manifold="sphere", cache=cache)
    # Point dropout: the two clouds now differ, and the result must be that of the new clouds.
    keep = torch.rand(pos.size(0)) < 0.7
    pos2, batch2 = pos[keep], batch[keep]
    dropped = sample_and_group(pos2, batch2, k=4, num=30, manifold="sphere", cache=cache)
    idx = fps(pos2, batch2, num=30, manifold="sphere")
    assert torch.equal(dropped.index, idx)
    assert torch.equal(dropped.edge_index, knn(pos2, pos2[idx], 4, batch2, batch2[idx], manifold="sphere"))
    # A tiny move of one point is a different grid.
    moved = pos.clone()
    moved[5] = Sphere().projx(moved[5] + 1e-3)
    hits = cache.hits
    sample_and_group(moved, batch, k=4, num=30, manifold="sphere", cache=cache)
    assert cache.hits == hits
    # Same coordinates, different metric or spec: different entries.
    sample_and_group(pos, batch, k=5, num=30, manifold="sphere", cache=cache)
    assert cache.hits == hits
    again = sample_and_group(pos, batch, k=4, num=30, manifold="sphere", cache=cache)
    assert cache.hits == hits + 1 and torch.equal(again.edge_index, first.edge_index)


def test_cache_is_bounded():
    cache = NeighborCache(max_entries=2, max_points=1000)
    for n in (100, 200, 300):
        sample_and_group(torch.rand(n, 2), k=3, num=10, cache=cache)
    assert len(cache) == 2
    sample_and_group(torch.rand(2000, 2), k=3, num=10, cache=cache)  # too big to store
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0 and cache.hits == 0


def test_all_points_as_centroids_and_no_cache():
    pos = torch.rand(50, 2)
    level = sample_and_group(pos, k=5, cache=None)
    assert level.index is None and torch.equal(level.pos, pos)
    assert torch.equal(level.edge_index, knn(pos, pos, 5))


def test_build_hierarchy_errors():
    with pytest.raises(ValueError, match="levels must contain"):
        build_hierarchy(torch.rand(10, 2), None, [])
    with pytest.raises(ValueError, match=r"levels\[0\] must be a \(num, k\) pair"):
        build_hierarchy(torch.rand(10, 2), None, [5])
    with pytest.raises(ValueError, match="pos is not on Torus"):
        build_hierarchy(torch.rand(10, 4), None, [(3, 2)], manifold="torus")
    with pytest.raises(ValueError, match="num=20 is larger than cloud 0"):
        build_hierarchy(torch.rand(10, 2), None, [(20, 3)], manifold=Euclidean(2))
