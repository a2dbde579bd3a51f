import numpy as np
import pytest
import torch

from pcfunc.data import ImageGrid, LatLonGrid, VoxelGrid
from pcfunc.manifolds import Sphere, latlon_to_xyz


def test_latlon_regular_matches_sphere_grid_and_collapses_poles():
    g = LatLonGrid.regular(46, 90)
    assert g.num_points == 44 * 90 + 2 and g.shape == (46, 90)
    assert torch.allclose(g.pos, Sphere().grid((46, 90)), atol=1e-6)
    raw = LatLonGrid.regular(46, 90, collapse_poles=False)
    assert raw.num_points == 46 * 90


def test_latlon_round_trip_and_pole_mean():
    g = LatLonGrid.regular(10, 12)
    v = torch.rand(10, 12, 3, dtype=torch.float64)
    data = g.to_data(v)
    assert data.pos.shape == (g.num_points, 3) and data.x.shape == (g.num_points, 3)
    assert torch.allclose(data.x[0], v[0].mean(0)) and torch.allclose(data.x[-1], v[-1].mean(0))
    assert torch.equal(data.x[1:13], v[1])
    back = g.to_array(data.x)
    assert torch.equal(back[1:-1], v[1:-1])
    assert torch.allclose(back[0], v[0].mean(0).expand(12, 3))
    # Values at a point are those of the array at that point's lat/lon.
    lat = torch.linspace(90, -90, 10, dtype=torch.float64)
    lon = torch.arange(12, dtype=torch.float64) * 30
    assert torch.allclose(g.pos[1 + 2 * 12 + 5].double(), latlon_to_xyz(lat[3], lon[5]), atol=1e-6)


def test_latlon_other_conventions():
    # South-first latitudes without poles, longitudes -180..180: same points as a permutation.
    lat = np.linspace(-80, 80, 9)
    lon = np.arange(-180, 180, 20.0)
    g = LatLonGrid(lat, lon)
    assert g.num_points == 9 * 18
    ref = LatLonGrid(lat[::-1].copy(), (lon % 360))
    d = torch.cdist(g.pos.double(), ref.pos.double()).min(1).values
    assert float(d.max()) < 1e-6
    assert not LatLonGrid(lat, lon[:5]).is_global_lon and g.is_global_lon


def test_latlon_batches():
    g = LatLonGrid.regular(7, 8)
    v = torch.rand(3, 7, 8)
    b = g.to_batch(v)
    assert b.num_graphs == 3 and b.x.shape == (3 * g.num_points, 1)
    out = g.to_array(b.x, b.batch)
    assert out.shape == (3, 7, 8, 1)
    assert torch.allclose(out[:, 1:-1, :, 0], v[:, 1:-1])
    # The (B, N, C) layout of to_points gives the same arrays, without a batch vector.
    assert torch.equal(g.to_array(g.to_points(v)), out)
    with pytest.raises(ValueError, match="3 points per cloud but the grid has"):
        g.to_array(torch.zeros(2, 3, 1))


@pytest.mark.parametrize("factor", [2, 3])
def test_latlon_super_resolution_contains_original(factor):
    g = LatLonGrid.regular(46, 90)
    s = g.super_resolution(factor)
    assert s.shape == (factor * 45 + 1, factor * 90)
    assert float(torch.cdist(g.pos.double(), s.pos.double()).min(1).values.max()) < 1e-6
    regional = LatLonGrid(np.arange(30, 61, 10.0), np.arange(0, 41, 10.0))
    assert regional.super_resolution(2).shape == (7, 9)


def test_latlon_errors():
    with pytest.raises(ValueError, match="lat must be strictly monotone"):
        LatLonGrid([0, 10, 5], [0, 10])
    with pytest.raises(ValueError, match=r"lat must lie in \[-90, 90\]"):
        LatLonGrid([0, 100], [0, 10])
    with pytest.raises(ValueError, match="modulo 360"):
        LatLonGrid([0, 10], [0, 180, 360])
    with pytest.raises(ValueError, match="lon contains NaN"):
        LatLonGrid([0, 10], [0, float("nan")])
    g = LatLonGrid.regular(5, 8)
    with pytest.raises(ValueError, match=r"values must have shape \[5, 8\]"):
        g.to_data(torch.rand(8, 5))
    with pytest.raises(ValueError, match="values contains NaN"):
        g.to_data(torch.full((5, 8), float("nan")))
    with pytest.raises(ValueError, match="evenly spaced"):
        LatLonGrid([0, 10, 30], [0, 10]).super_resolution()


@pytest.mark.parametrize("cls, shape", [(ImageGrid, (4, 6)), (VoxelGrid, (3, 4, 5))])
def test_image_and_voxel_grids(cls, shape):
    g = cls(*shape)
    assert g.num_points == int(np.prod(shape)) and g.pos.shape[1] == len(shape)
    v = torch.rand(*shape, 2)
    d = g.to_data(v)
    assert torch.equal(g.to_array(d.x), v)
    # Row-major: point i is array cell unravel(i), with coordinates linspace(-1, 1).
    i = g.num_points // 2 + 1
    cell = np.unravel_index(i, shape)
    expected = torch.tensor([-1 + 2 * float(c) / (n - 1) for c, n in zip(cell, shape)], dtype=torch.float32)
    assert torch.allclose(g.pos[i], expected)
    assert torch.equal(d.x[i], v[cell])
    s = g.super_resolution(2)
    assert s.shape == tuple(2 * n - 1 for n in shape)
    assert float(torch.cdist(g.pos, s.pos).min(1).values.max()) < 1e-6
    b = g.to_batch(torch.rand(2, *shape))
    assert g.to_array(b.x, b.batch).shape == (2, *shape, 1)
    with pytest.raises(ValueError, match="factor must be a positive integer"):
        g.super_resolution(0)
    with pytest.raises(ValueError, match="rows but the grid has"):
        g.to_array(torch.rand(g.num_points + 1, 1))


def test_latlon_grid_accepts_reversed_numpy_axes():
    lat = np.linspace(-90, 90, 5)
    g = LatLonGrid(lat[::-1], np.arange(0, 360, 90.0))
    torch.testing.assert_close(g.lat, torch.tensor([90.0, 45.0, 0.0, -45.0, -90.0], dtype=torch.float64))
