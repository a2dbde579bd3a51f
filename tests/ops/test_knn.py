import math

import numpy as np
import pytest
import torch

from pcfunc.manifolds import Euclidean, Sphere, Torus
from pcfunc.ops import knn

from ..conftest import FPS_BACKENDS as BACKENDS
from . import _brute

METRICS = [Euclidean(3), Euclidean(3, p=1), Euclidean(2, p=3), Euclidean(3, p=math.inf), Sphere(), Torus(2)]


def _backends(manifold):
    ok = {"torch": True, "torch_cluster": manifold.ambient_euclidean_order,
          "numba": manifold.ambient_euclidean_order or isinstance(manifold, Euclidean)}
    return [b for b in BACKENDS if ok[b]]


def _check_against_brute(edge_index, manifold, x, y, bx, by, k):
    M = y.size(0)
    assert edge_index.shape == (2, M * k)
    assert torch.equal(edge_index[0], torch.arange(M).repeat_interleave(k))
    col = edge_index[1].view(M, k)
    for b in by.unique().tolist():
        qs = (by == b).nonzero().squeeze(1)
        xs = (bx == b).nonzero().squeeze(1)
        ref_idx, ref_d = _brute.knn(manifold, x[xs].numpy(), y[qs].numpy(), k)
        got = col[qs]
        assert bool((bx[got] == b).all()), "neighbour taken from another cloud"
        np.testing.assert_array_equal(got.numpy() - int(xs[0]), ref_idx)
        d = _brute.distance_matrix(manifold, y[qs].numpy(), x.numpy())[np.arange(len(qs))[:, None], got.numpy()]
        np.testing.assert_allclose(d, ref_d, atol=1e-12)


@pytest.mark.parametrize("manifold", METRICS, ids=repr)
@pytest.mark.parametrize("chunk_elements", [1 << 22, 97])
def test_knn_equals_brute_force(manifold, chunk_elements):
    x, bx = _brute.clouds(manifold, [60, 45, 80], seed=1)
    y, by = _brute.clouds(manifold, [10, 7, 12], seed=2)
    for backend in _backends(manifold):
        e = knn(x, y, 9, bx, by, manifold=manifold, backend=backend, chunk_elements=chunk_elements)
        _check_against_brute(e, manifold, x, y, bx, by, 9)


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "torch"])
@pytest.mark.parametrize("manifold", [Euclidean(3), Sphere()], ids=repr)
def test_fast_paths_equal_reference_float32(manifold, backend):
    x, bx = _brute.clouds(manifold, [500, 300], seed=4)
    y, by = _brute.clouds(manifold, [40, 50], seed=5)
    x, y = x.float(), y.float()
    a = knn(x, y, 16, bx, by, manifold=manifold, backend=backend)
    b = knn(x, y, 16, bx, by, manifold=manifold, backend="torch")
    assert torch.equal(a, b)


@pytest.mark.skipif("numba" not in BACKENDS, reason="numba not installed")
def test_numba_knn_on_a_large_bucketed_cloud():
    # Enough points for many buckets, queries inside and outside the cloud's bounding box.
    x = Sphere().random(20_000, generator=torch.Generator().manual_seed(3)).double()
    y = torch.cat((Sphere().random(50, generator=torch.Generator().manual_seed(4)).double(),
                   torch.tensor([[0.0, 0.0, 3.0], [-2.0, 0.5, 0.0]], dtype=torch.float64)))
    e = knn(x, y, 9, p=2, backend="numba")
    _check_against_brute(e, Euclidean(3), x, y, torch.zeros(20_000, dtype=torch.long), torch.zeros(52, dtype=torch.long), 9)


def test_knn_query_cloud_missing_from_y_and_p_shortcut():
    x, bx = _brute.clouds(Euclidean(2), [20, 20, 20])
    y, by = x[40:45], bx[40:45]  # queries only in cloud 2
    e = knn(x, y, 3, bx, by, p=1)
    _check_against_brute(e, Euclidean(2, p=1), x, y, bx, by, 3)


def test_knn_with_duplicates():
    x = torch.cat((torch.zeros(90, 3), torch.eye(3))).double()
    x[:90, 2] = 1.0  # 90 copies of the north pole
    for backend in BACKENDS:
        e = knn(x, x[:1], 5, manifold=Sphere(), backend=backend)
        assert bool((e[1] < 90).all()) and e[1].unique().numel() == 5  # five distinct copies of the pole
    assert knn(x, x[90:92], 1, manifold=Sphere())[1].tolist() == [90, 91]


class _RecordingSphere(Sphere):
    """Records the largest distance block the reference kernel asks for."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def cdist(self, x, y):
        out = super().cdist(x, y)
        self.largest = max(self.largest, out.numel())
        return out


def test_reference_knn_never_forms_the_full_matrix():
    m = _RecordingSphere()
    x = Sphere().random(50_000)
    y = Sphere().random(300)
    e = knn(x, y, 9, manifold=m, backend="torch", chunk_elements=1 << 16)
    assert m.largest <= 1 << 16 < 50_000 * 300
    ref = knn(x, y, 9, manifold=Sphere(), backend="torch")
    assert torch.equal(e, ref)


def test_knn_errors():
    x = torch.rand(10, 3)
    with pytest.raises(ValueError, match="k=11 is larger than cloud 0 of x"):
        knn(x, x, 11)
    with pytest.raises(ValueError, match="k=6 is larger than cloud 1 of x, which has 3"):
        knn(x, x, 6, torch.tensor([0] * 7 + [1] * 3), torch.tensor([0] * 7 + [1] * 3))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        knn(x, x, 0)
    with pytest.raises(ValueError, match="y contains NaN"):
        knn(x, torch.full((2, 3), float("inf")), 2)
    with pytest.raises(ValueError, match="same number of coordinates"):
        knn(x, torch.rand(4, 2), 2)
    with pytest.raises(ValueError, match="give both batch_x and batch_y"):
        knn(x, x, 2, batch_x=torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="batch_y has 3 entries but y has 10"):
        knn(x, x, 2, torch.zeros(10, dtype=torch.long), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="same dtype"):
        knn(x, x.double(), 2)
    with pytest.raises(ValueError, match="unknown manifold"):
        knn(x, x, 2, manifold="poincare")
    with pytest.raises(ValueError, match="y is not on Sphere"):
        knn(Sphere().random(10), x + 1, 2, manifold="sphere")


def _count_exact_blocks(monkeypatch):
    import pcfunc.ops._knn as mod

    calls = []
    exact = mod._chunk_exact

    def spy(*args, **kwargs):
        calls.append(1)
        return exact(*args, **kwargs)

    monkeypatch.setattr(mod, "_chunk_exact", spy)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reference_knn_by_matrix_products_is_certified(monkeypatch, dtype):
    # Manifolds ordered like ambient l2: candidates from matrix products, ranked exactly, certified; on random
    # clouds no block needs the exact search, and the answer is the compiled paths' and the brute force's.
    calls = _count_exact_blocks(monkeypatch)
    x, bx = _brute.clouds(Sphere(), [3000, 2000], seed=6)
    y, by = _brute.clouds(Sphere(), [150, 120], seed=7)
    x, y = x.to(dtype), y.to(dtype)
    e = knn(x, y, 9, bx, by, manifold=Sphere(), backend="torch", chunk_elements=1 << 16)
    assert not calls
    if dtype == torch.float64:
        _check_against_brute(e, Sphere(), x, y, bx, by, 9)
    for backend in [b for b in BACKENDS if b != "torch"]:
        assert torch.equal(e, knn(x, y, 9, bx, by, manifold=Sphere(), backend=backend))
    # The same under bfloat16 autocast and with reduced-precision float32 matrix products allowed.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(e, knn(x, y, 9, bx, by, manifold=Sphere(), backend="torch", chunk_elements=1 << 16))
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        assert torch.equal(e, knn(x, y, 9, bx, by, manifold=Sphere(), backend="torch", chunk_elements=1 << 16))
    finally:
        torch.set_float32_matmul_precision(before)


def test_reference_knn_searches_exactly_where_ties_exceed_the_margin(monkeypatch):
    calls = _count_exact_blocks(monkeypatch)
    # 30 copies of one point at the same distance from the query: more ties than the product search keeps.
    x = torch.cat((torch.tensor([[0.0, 0.0, 1.0]]).expand(30, 3), Sphere().random(200, generator=torch.Generator()
                                                                                  .manual_seed(1)))).double()
    q = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    e = knn(x, q, 12, manifold=Sphere(), backend="torch")
    assert calls and bool((e[1] < 30).all()) and e[1].unique().numel() == 12
    # On a regular grid (ties by symmetry, within the margin) the products suffice and give the brute force's
    # distances.
    calls.clear()
    from pcfunc.data import LatLonGrid

    grid = LatLonGrid.regular(19, 36).pos.double()
    grid = grid / grid.norm(dim=-1, keepdim=True)  # on the sphere in float64, as the brute force's arccos assumes
    e = knn(grid, grid[::7], 8, manifold=Sphere(), backend="torch")
    got = _brute.distance_matrix(Sphere(), grid[::7].numpy(), grid.numpy())[
        np.arange(len(grid[::7]))[:, None], e[1].view(-1, 8).numpy()]
    np.testing.assert_allclose(got, _brute.knn(Sphere(), grid.numpy(), grid[::7].numpy(), 8)[1], atol=1e-12)
    assert not calls
