import math

import numpy as np
import pytest
import torch

from pcfunc.manifolds import (
    Euclidean, Manifold, Sphere, Torus, latlon_to_xyz, register_manifold, resolve_manifold, xyz_to_latlon,
)
from pcfunc.testing import check_manifold

ALL = [Euclidean(1), Euclidean(2), Euclidean(3, p=1), Euclidean(2, p="inf"), Euclidean(4, p=3), Sphere(),
       Torus(1), Torus(2), Torus(3)]


@pytest.mark.parametrize("manifold", ALL, ids=repr)
def test_property_checks(manifold):
    check_manifold(manifold)


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, math.inf])
def test_euclidean_cdist_matches_numpy(p):
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randn(15, 3, dtype=torch.float64)
    diff = np.abs(x.numpy()[:, None, :] - y.numpy()[None, :, :])
    ref = diff.max(-1) if math.isinf(p) else (diff ** p).sum(-1) ** (1 / p)
    np.testing.assert_allclose(Euclidean(3, p=p).cdist(x, y).numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(Euclidean(3, p=p).dist(x, y[:1]).numpy(), ref[:, 0], rtol=1e-12)


def test_euclidean_grid_contains_coarse_grid_and_errors():
    m = Euclidean(2)
    g = m.grid((3, 5))
    assert g.shape == (15, 2)
    assert torch.equal(g[0], torch.tensor([-1.0, -1.0])) and torch.equal(g[-1], torch.tensor([1.0, 1.0]))
    assert torch.equal(g[1], torch.tensor([-1.0, -0.5]))  # axis 0 slowest
    fine = m.grid((5, 9))
    assert torch.cdist(g, fine).min(1).values.max() == 0
    with pytest.raises(ValueError, match="p must"):
        Euclidean(2, p=0.5)
    with pytest.raises(ValueError, match="p must"):
        Euclidean(2, p="two")
    with pytest.raises(ValueError, match="dim"):
        Euclidean(0)
    with pytest.raises(ValueError, match="resolution"):
        m.grid((3, 4, 5))


def test_sphere_latlon_convention_and_round_trip():
    xyz = latlon_to_xyz(torch.tensor([90.0, 0.0, 0.0, -90.0]), torch.tensor([0.0, 0.0, 90.0, 0.0]))
    expected = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, -1]])
    assert torch.allclose(xyz, expected, atol=1e-7)
    lat = torch.rand(100, dtype=torch.float64) * 178 - 89
    lon = torch.rand(100, dtype=torch.float64) * 359.9 - 179.9
    la, lo = xyz_to_latlon(latlon_to_xyz(lat, lon))
    assert torch.allclose(la, lat, atol=1e-10) and torch.allclose(lo, lon, atol=1e-10)
    s = Sphere()
    assert torch.allclose(s.unembed(s.embed(torch.stack((lat, lon), -1))), torch.stack((lat, lon), -1), atol=1e-10)


def test_sphere_great_circle_distance():
    s = Sphere()
    north, eq0, eq90 = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=torch.float64)
    D = s.cdist(torch.stack((north, eq0)), torch.stack((eq90, -north)))
    assert torch.allclose(D, torch.tensor([[math.pi / 2, math.pi], [math.pi / 2, math.pi / 2]], dtype=torch.float64))
    # Against arccos of the dot product on random points, float64.
    x, y = s.random(50, dtype=torch.float64), s.random(40, dtype=torch.float64)
    ref = torch.arccos((x @ y.T).clamp(-1, 1))
    assert torch.allclose(s.cdist(x, y), ref, atol=1e-10)
    # Close points in float32: the chord form keeps precision that acos(dot) loses.
    a = torch.tensor([[1.0, 0.0, 0.0]])
    theta = 1e-5
    b = torch.tensor([[math.cos(theta), math.sin(theta), 0.0]])
    assert abs(float(s.cdist(a, b)) - theta) < 1e-9
    assert abs(float(s.dist(a, b)) - theta) < 1e-9


def test_sphere_grid_layout():
    g = Sphere().grid((46, 90))
    assert g.shape == ((46 - 2) * 90 + 2, 3)
    assert torch.allclose(g[0], torch.tensor([0.0, 0, 1])) and torch.allclose(g[-1], torch.tensor([0.0, 0, -1]))
    lat, lon = xyz_to_latlon(g[1:91].double())
    assert torch.allclose(lat, torch.full((90,), 86.0, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(torch.remainder(lon, 360), torch.arange(90, dtype=torch.float64) * 4, atol=1e-4)
    assert Sphere().grid(3).shape == (1 * 6 + 2, 3)


def test_sphere_check_point_reason():
    ok, reason = Sphere().check_point(torch.tensor([[1.0, 1.0, 0.0]]))
    assert not ok and "unit norm" in reason
    ok, reason = Sphere().check_point(torch.tensor([[1.0, 0.0]]))
    assert not ok and "ambient_dim=3" in reason
    ok, reason = Sphere().check_point(torch.tensor([[float("nan"), 0.0, 0.0]]))
    assert not ok and "NaN" in reason
    with pytest.raises(ValueError, match="pos is not on Sphere"):
        Sphere().assert_check_point(torch.tensor([[2.0, 0.0, 0.0]]), "pos")


def test_torus_periodic_distance():
    t = Torus(2)
    a = t.embed(torch.tensor([[0.1, 3.0]], dtype=torch.float64))
    b = t.embed(torch.tensor([[2 * math.pi - 0.1, 3.0 + 0.3]], dtype=torch.float64))
    expected = math.hypot(0.2, 0.3)
    assert abs(float(t.cdist(a, b)) - expected) < 1e-12
    assert abs(float(t.dist(a, b)) - expected) < 1e-12
    u = torch.rand(30, 2, dtype=torch.float64) * 2 * math.pi
    assert torch.allclose(t.unembed(t.embed(u)), u, atol=1e-12)
    assert t.grid((3, 4)).shape == (12, 4)
    assert not t.ambient_euclidean_order


def test_resolver():
    assert isinstance(resolve_manifold("sphere"), Sphere)
    assert isinstance(resolve_manifold("S2"), Sphere)
    assert resolve_manifold("euclidean", dim=2, p=1).p == 1
    s = Sphere()
    assert resolve_manifold(s) is s
    with pytest.raises(ValueError, match="unknown manifold 'klein'"):
        resolve_manifold("klein")
    with pytest.raises(TypeError, match="manifold must be"):
        resolve_manifold(3)

    class Line(Euclidean):
        def __init__(self):
            super().__init__(1)

    register_manifold("line-for-test", Line)
    assert isinstance(resolve_manifold("line-for-test"), Line)


class _Asymmetric(Manifold):
    ambient_dim = 2

    def cdist(self, x, y):
        return torch.cdist(x, y) + 0.1 * (x[..., :, None, 0] > y[..., None, :, 0])

    def random(self, n, generator=None, dtype=None, device=None):
        return torch.rand(n, 2, generator=generator, dtype=dtype, device=device)

    def grid(self, resolution):
        return Euclidean(2).grid(resolution)


class _NotATriangle(Euclidean):
    def cdist(self, x, y):
        return torch.cdist(x, y).square()

    def dist(self, x, y):
        return (x - y).square().sum(-1)


class _WrongOrder(Torus):
    ambient_euclidean_order = True


@pytest.mark.parametrize(
    "bad, message",
    [(_Asymmetric(), "not symmetric"), (_NotATriangle(2), "triangle inequality"), (_WrongOrder(2), "orders pairs")],
)
def test_property_checks_catch_broken_manifolds(bad, message):
    with pytest.raises(AssertionError, match=message):
        check_manifold(bad)


def test_manifold_contract_is_enforced_and_intrinsic_dim_drives_gasp():
    from pcfunc.manifolds import Manifold, Sphere, Torus
    from pcfunc.models import GASP

    class _NoGrid(Manifold):
        ambient_dim = 2

        def cdist(self, x, y):
            return torch.cdist(x, y)

        def random(self, n, generator=None, dtype=None, device=None):
            return torch.rand(n, 2, generator=generator, dtype=dtype, device=device)

    with pytest.raises(TypeError, match="abstract method.*grid"):
        _NoGrid()
    assert (Sphere().intrinsic_dim, Torus(3).intrinsic_dim, Euclidean(4).intrinsic_dim) == (2, 3, 4)
    assert _Asymmetric().intrinsic_dim == 2  # the default: the ambient dimension

    class _Surface(_Asymmetric):  # a user's manifold: its own attribute, no edit of pcfunc
        ambient_dim = 3
        intrinsic_dim = 2

    gasp = GASP(_Surface(), latent_dim=4, hypernet_hidden=[8], inr_hidden=[8], num_frequencies=4,
                disc_channels=[4], weight_hidden=[4])
    assert gasp.dim == 2 and gasp.discriminator.specs[0].num_neighbors == 9
