import math

import pytest
import torch

from pcfunc.manifolds import Euclidean, Sphere, Torus
from pcfunc.ops import fps

from ..conftest import FPS_BACKENDS as BACKENDS
from . import _brute

METRICS = [Euclidean(3), Euclidean(3, p=1), Euclidean(2, p=3), Euclidean(3, p=math.inf), Sphere(), Torus(2)]


def _backends(manifold):
    ok = {"torch": True, "torch_cluster": manifold.ambient_euclidean_order,
          "numba": manifold.ambient_euclidean_order or isinstance(manifold, Euclidean)}
    return [b for b in BACKENDS if ok[b]]


def _fps_gap(manifold, pos, idx):
    """Largest shortfall of a chosen point below the true farthest distance at its step (0 for exact FPS)."""
    mind = torch.full((pos.size(0),), float("inf"), dtype=torch.float64)
    worst = 0.0
    pos = pos.double()
    for t, j in enumerate(idx.tolist()):
        if t:
            worst = max(worst, float(mind.max() - mind[j]))
        mind = torch.minimum(mind, manifold.cdist(pos[j:j + 1], pos)[0])
    return worst


@pytest.mark.parametrize("manifold", METRICS, ids=repr)
def test_fps_equals_brute_force(manifold):
    sizes = [50, 73, 64]
    pos, batch = _brute.clouds(manifold, sizes)
    for backend in _backends(manifold):
        idx = fps(pos, batch, num=20, manifold=manifold, backend=backend)
        expected, start = [], 0
        for n in sizes:
            expected += [start + i for i in _brute.fps(manifold, pos[start:start + n].numpy(), 20)]
            start += n
        assert idx.tolist() == expected, backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_ratio_and_float32(backend):
    m = Sphere()
    pos, batch = _brute.clouds(m, [40, 81, 7], seed=3)
    pos = pos.float()
    idx = fps(pos, batch, ratio=0.25, manifold=m, backend=backend)
    counts = torch.bincount(batch[idx], minlength=3)
    assert counts.tolist() == [10, 21, 2]
    assert idx.unique().numel() == idx.numel()
    ref = fps(pos, batch, ratio=0.25, manifold=m, backend="torch")
    assert torch.equal(idx, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_on_grid_with_ties_is_exact_farthest_point_sampling(backend):
    # A lat/lon grid has many exactly tied distances: any tie-break is fine, the FPS property is not negotiable.
    from pcfunc.data import LatLonGrid

    pos = LatLonGrid.regular(19, 36).pos
    idx = fps(pos, num=200, manifold=Sphere(), backend=backend)
    assert idx[0] == 0 and idx.unique().numel() == 200
    assert _fps_gap(Sphere(), pos, idx) < 1e-6
    if backend == "numba":  # same tie rule as the reference, in float64
        assert torch.equal(idx, fps(pos.double(), num=200, manifold=Sphere(), backend="torch"))


def test_fps_p_shortcut_and_single_cloud():
    pos = torch.rand(100, 2, dtype=torch.float64)
    idx = fps(pos, num=10, p=1)
    assert idx.tolist() == _brute.fps(Euclidean(2, p=1), pos.numpy(), 10)
    assert idx[0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_fps_with_duplicate_points(backend):
    # 90 copies of each pole, as in a raw 46 x 90 lat/lon grid.
    lat = torch.linspace(90, -90, 46, dtype=torch.float64)
    lon = torch.arange(90, dtype=torch.float64) * 4
    from pcfunc.manifolds import latlon_to_xyz

    raw = latlon_to_xyz(lat[:, None], lon[None, :]).reshape(-1, 3)
    idx = fps(raw, num=500, manifold=Sphere(), backend=backend)
    assert idx.unique().numel() == 500
    # Every distinct location is taken before any copy: no two chosen points coincide.
    D = Sphere().cdist(raw[idx], raw[idx])
    assert float((D + torch.eye(500, dtype=D.dtype) * 10).min()) > 1e-6


def test_fps_reference_takes_all_distinct_locations_before_copies():
    pos = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    idx = fps(pos, num=5, backend="torch")
    assert idx.tolist()[:3] == [0, 2, 4]
    assert sorted(idx.tolist()) == [0, 1, 2, 3, 4]


def test_fps_random_start_reproducible():
    pos, batch = _brute.clouds(Euclidean(3), [30, 30])
    a = fps(pos, batch, num=5, random_start=True, generator=torch.Generator().manual_seed(1), backend="torch")
    b = fps(pos, batch, num=5, random_start=True, generator=torch.Generator().manual_seed(1), backend="torch")
    assert torch.equal(a, b)
    starts = [int(a[0]), int(a[5]) - 30]
    assert a[:5].tolist() == _brute.fps(Euclidean(3), pos[:30].numpy(), 5, start=starts[0])


def test_fps_errors():
    pos = torch.rand(10, 3)
    with pytest.raises(ValueError, match="pos contains NaN"):
        fps(torch.tensor([[0.0, float("nan"), 0.0]]), num=1)
    with pytest.raises(ValueError, match="num=11 is larger than cloud 0"):
        fps(pos, num=11)
    with pytest.raises(ValueError, match="batch has 9 entries but pos has 10"):
        fps(pos, torch.zeros(9, dtype=torch.long), num=2)
    with pytest.raises(ValueError, match="batch must be sorted"):
        fps(pos, torch.tensor([0, 1] * 5), num=2)
    with pytest.raises(ValueError, match="unknown manifold"):
        fps(pos, num=2, manifold="hyperbolic-plane")
    with pytest.raises(ValueError, match="ambient_dim=3"):
        fps(torch.rand(10, 2), num=2, manifold="sphere")
    with pytest.raises(ValueError, match="exactly one of ratio= or num="):
        fps(pos)
    with pytest.raises(ValueError, match="ratio must be"):
        fps(pos, ratio=1.5)
    with pytest.raises(ValueError, match="p must"):
        fps(pos, num=2, p=0.5)
    with pytest.raises(ValueError, match="backend must be"):
        fps(pos, num=2, backend="faiss")
    with pytest.raises(ValueError, match="pos must have shape"):
        fps(torch.rand(10), num=2)
    with pytest.raises(ValueError, match="pos is not on Sphere.*unit norm"):
        fps(torch.rand(10, 3) + 1, num=2, manifold="sphere")
    with pytest.raises(ValueError, match="either manifold= or p="):
        fps(pos, num=2, p=2, manifold="sphere")


@pytest.mark.skipif("torch_cluster" not in BACKENDS, reason="torch_cluster not installed")
def test_torch_cluster_backend_refuses_non_l2_metric():
    with pytest.raises(ValueError, match="ambient l2"):
        fps(Torus(2).random(10), num=3, manifold=Torus(2), backend="torch_cluster")


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba not installed")
def test_numba_backend_refuses_other_metrics_and_auto_falls_back():
    with pytest.raises(ValueError, match="backend='numba' supports lp metrics"):
        fps(Torus(2).random(10), num=3, manifold=Torus(2), backend="numba")
    pos = Torus(2).random(40, generator=torch.Generator().manual_seed(0)).double()
    assert fps(pos, num=5, manifold=Torus(2)).tolist() == _brute.fps(Torus(2), pos.numpy(), 5)


