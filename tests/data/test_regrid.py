import numpy as np
import pytest
import torch

from pcfunc.data import (ERA5Field, LatLonGrid, interpolate_latlon, interpolate_to_points, latlon_cell_area, regrid)
from pcfunc.manifolds import latlon_to_xyz

scipy_interpolate = pytest.importorskip("scipy.interpolate")

D = torch.float64


def _axes(step_lat=10.0, step_lon=10.0, poles=True, lon0=0.0):
    lat = torch.arange(90.0, -90.0 - 1e-9, -step_lat, dtype=D) if poles else \
        torch.arange(90.0 - step_lat / 2, -90.0, -step_lat, dtype=D)
    lon = lon0 + torch.arange(0.0, 360.0 - 1e-9, step_lon, dtype=D)
    return lat, lon


def _smooth(lat, lon, seed=0, k=4):
    """A smooth random field: a sum of a few products of sinusoids in lat and lon (periodic in lon)."""
    g = np.random.default_rng(seed)
    la, lo = np.deg2rad(np.asarray(lat))[:, None], np.deg2rad(np.asarray(lon))[None, :]
    out = np.zeros((la.size, lo.size))
    for _ in range(k):
        a, b, m = g.normal(), g.uniform(0, 2 * np.pi, 2), g.integers(0, 3)
        out += a * np.cos(la * g.integers(1, 3) + b[0]) * np.cos(m * lo + b[1])
    return torch.as_tensor(out)


def _edges(centres):
    """Independent cell edges: midpoints, half a step beyond the ends (for the reference area weights)."""
    c = np.sort(np.asarray(centres, dtype=np.float64))
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate(([c[0] - (c[1] - c[0]) / 2], mid, [c[-1] + (c[-1] - c[-2]) / 2]))


def _area_weights(lat, lon):
    """Cell areas of a global grid with increasing lon (periodic) from edges computed here, cos-lat style."""
    lat = np.asarray(lat, dtype=np.float64)
    e = np.clip(_edges(lat), -90, 90)
    dsin = np.diff(np.sin(np.deg2rad(e)))
    if lat[0] > lat[-1]:
        dsin = dsin[::-1]
    dlon = np.full(np.asarray(lon).size, 360.0 / np.asarray(lon).size)
    return dsin[:, None] * np.deg2rad(dlon)[None, :]


# -- bilinear / nearest ----------------------------------------------------------------------
@pytest.mark.parametrize("periodic", [True, False])
def test_bilinear_reproduces_functions_linear_in_lat_lon(periodic):
    if periodic:
        lat, lon = _axes(7.5, 10.0, poles=False)
    else:  # regional, uneven spacing, crossing 0°
        lat = torch.tensor([-20.0, -5.0, 0.0, 12.5, 40.0], dtype=D)
        lon = torch.tensor([-30.0, -10.0, 5.0, 6.0, 30.0, 44.0], dtype=D)
    # linear in lat and lon (bilinear interpolation also reproduces the lat * lon term)
    f = lambda la, lo: 2.0 + 0.3 * la - 0.05 * lo + 1e-3 * la * lo  # noqa: E731
    values = f(lat[:, None], lon[None, :]).expand(3, -1, -1) * torch.tensor([1.0, -2.0, 0.5], dtype=D)[:, None, None]
    g = torch.Generator().manual_seed(0)
    qlat = lat.min() + (lat.max() - lat.min()) * torch.rand(200, generator=g, dtype=D)
    qlon = lon.min() + (lon.max() - lon.min()) * torch.rand(200, generator=g, dtype=D)
    out = interpolate_latlon(values, lat, lon, qlat, qlon)
    ref = f(qlat, qlon) * torch.tensor([1.0, -2.0, 0.5], dtype=D)[:, None]
    assert out.shape == (3, 200)
    torch.testing.assert_close(out, ref, atol=1e-11, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["bilinear", "nearest"])
def test_exact_at_grid_points_and_identity_regrid(dtype, method):
    lat, lon = _axes(10.0, 15.0, poles=True)
    values = torch.randn(2, lat.numel(), lon.numel(), dtype=dtype)
    qlat = lat[:, None].expand(-1, lon.numel())
    qlon = lon[None, :].expand(lat.numel(), -1)
    out = interpolate_latlon(values, lat, lon, qlat, qlon, method)
    assert out.dtype == dtype and out.shape == values.shape
    assert torch.equal(out, values)
    assert torch.equal(regrid(values, lat, lon, lat, lon, method), values)


def test_conservative_identity():
    lat, lon = _axes(3.0, 3.0, poles=False)
    values = torch.randn(lat.numel(), lon.numel(), dtype=D)
    torch.testing.assert_close(regrid(values, lat, lon, lat, lon, "conservative"), values, atol=1e-12, rtol=0)


def test_longitude_wrap():
    lat = torch.tensor([30.0, 0.0, -30.0], dtype=D)
    lon = torch.arange(0.0, 360.0, 3.0, dtype=D)  # 0..357
    values = torch.randn(lat.numel(), lon.numel(), dtype=D)
    mid = (values[:, -1] + values[:, 0]) / 2
    for q in (358.5, -1.5, 718.5):
        out = interpolate_latlon(values, lat, lon, lat, torch.full((3,), q, dtype=D))
        torch.testing.assert_close(out, mid, atol=1e-14, rtol=0)
    # a quarter of the way across the wrap cell
    out = interpolate_latlon(values, lat, lon, lat, torch.full((3,), 357.75, dtype=D))
    torch.testing.assert_close(out, 0.75 * values[:, -1] + 0.25 * values[:, 0], atol=1e-14, rtol=0)
    # nearest across the wrap
    out = interpolate_latlon(values, lat, lon, lat, torch.full((3,), 359.0, dtype=D), "nearest")
    assert torch.equal(out, values[:, 0])


def test_lon_conventions_and_lat_order_agree():
    lat, lon = _axes(6.0, 6.0, poles=False)
    values = _smooth(lat, lon, seed=1)
    g = torch.Generator().manual_seed(1)
    qlat = torch.rand(300, generator=g, dtype=D) * 180 - 90
    qlon = torch.rand(300, generator=g, dtype=D) * 720 - 360
    ref = interpolate_latlon(values, lat, lon, qlat, qlon)
    # -180..180: the same columns, reordered
    lon_pm = torch.where(lon >= 180, lon - 360, lon)
    order = torch.argsort(lon_pm)
    for method in ("bilinear", "nearest"):
        r = interpolate_latlon(values, lat, lon, qlat, qlon, method)
        torch.testing.assert_close(interpolate_latlon(values[:, order], lat, lon_pm[order], qlat, qlon, method), r,
                                   atol=1e-13, rtol=0)
        # south-first
        torch.testing.assert_close(interpolate_latlon(values.flip(0), lat.flip(0), lon, qlat, qlon, method), r,
                                   atol=1e-13, rtol=0)
        # shuffled longitude columns
        p = torch.randperm(lon.numel(), generator=g)
        torch.testing.assert_close(interpolate_latlon(values[:, p], lat, lon[p], qlat, qlon, method), r,
                                   atol=1e-13, rtol=0)
    torch.testing.assert_close(interpolate_latlon(values, lat, lon, qlat, torch.remainder(qlon, 360)), ref,
                               atol=1e-13, rtol=0)
    # regrid onto -180..180 vs 0..360 target columns
    new_lat, new_lon = torch.tensor([50.0, 1.0, -33.0], dtype=D), torch.tensor([0.0, 90.0, 200.0, 350.0], dtype=D)
    a = regrid(values, lat, lon, new_lat, new_lon)
    b = regrid(values, lat, lon, new_lat, torch.tensor([0.0, 90.0, -160.0, -10.0], dtype=D))
    torch.testing.assert_close(a, b, atol=1e-13, rtol=0)


@pytest.mark.parametrize("periodic", [False, True])
def test_bilinear_and_nearest_match_scipy(periodic):
    g = np.random.default_rng(3)
    if periodic:
        lat, lon = _axes(4.0, 5.0, poles=True)
    else:  # irregular, regional, south-first
        lat = torch.as_tensor(np.sort(g.choice(np.arange(-60.0, 61.0), 25, replace=False)))
        lon = torch.as_tensor(np.sort(g.choice(np.arange(100.0, 200.0), 30, replace=False)))
    values = torch.stack([_smooth(lat, lon, seed=s) for s in range(2)])
    la, lo = lat.numpy(), lon.numpy()
    v = values.numpy()
    if periodic:  # scipy's reference: ascending axes, the first column repeated at +360
        la, v = la[::-1], v[:, ::-1]
        lo, v = np.append(lo, lo[0] + 360), np.concatenate((v, v[:, :, :1]), axis=2)
    qlat = g.uniform(la.min(), la.max(), 500)
    qlon = g.uniform(lo.min(), lo.max(), 500)
    for method in ("linear", "nearest"):
        ref = np.stack([scipy_interpolate.RegularGridInterpolator((la, lo), v[c], method=method)((qlat, qlon))
                        for c in range(2)])
        out = interpolate_latlon(values, lat, lon, torch.as_tensor(qlat), torch.as_tensor(qlon),
                                 "bilinear" if method == "linear" else "nearest")
        np.testing.assert_allclose(out.numpy(), ref, atol=1e-12, rtol=0)


def test_pole_rule_and_pole_rows():
    lat = torch.tensor([80.0, 40.0, 0.0, -40.0, -80.0], dtype=D)
    lon = torch.arange(0.0, 360.0, 45.0, dtype=D)
    values = torch.randn(2, 5, 8, dtype=D)
    north, south = values[:, 0].mean(-1), values[:, -1].mean(-1)
    q = lambda la, lo, m="bilinear": interpolate_latlon(  # noqa: E731
        values, lat, lon, torch.tensor([la], dtype=D), torch.tensor([lo], dtype=D), m)[:, 0]
    torch.testing.assert_close(q(90.0, 0.0), north, atol=1e-14, rtol=0)
    torch.testing.assert_close(q(90.0, 123.0), north, atol=1e-14, rtol=0)
    torch.testing.assert_close(q(-90.0, 17.0), south, atol=1e-14, rtol=0)
    # halfway from row 80 (at lon 90: column 2) to the pole
    torch.testing.assert_close(q(85.0, 90.0), (values[:, 0, 2] + north) / 2, atol=1e-14, rtol=0)
    torch.testing.assert_close(q(-82.0, 22.5), 0.8 * (values[:, -1, 0] + values[:, -1, 1]) / 2 + 0.2 * south,
                               atol=1e-14, rtol=0)
    torch.testing.assert_close(q(86.0, 90.0, "nearest"), north, atol=1e-14, rtol=0)
    assert torch.equal(q(84.0, 90.0, "nearest"), values[:, 0, 2])
    # a grid with pole rows: the pole row is data (here constant, as in ERA5)
    plat = torch.tensor([90.0, 45.0, 0.0, -45.0, -90.0], dtype=D)
    pv = torch.randn(5, 8, dtype=D)
    pv[0], pv[-1] = 3.0, -1.0
    out = interpolate_latlon(pv, plat, lon, torch.tensor([90.0, 67.5, -90.0], dtype=D),
                             torch.tensor([10.0, 0.0, 300.0], dtype=D))
    torch.testing.assert_close(out, torch.stack([pv[0, 0], (3.0 + pv[1, 0]) / 2, pv[-1, 0]]), atol=1e-14, rtol=0)


def test_leading_dims_and_query_shape():
    lat, lon = _axes(10.0, 10.0)
    values = torch.randn(2, 3, lat.numel(), lon.numel(), dtype=D)
    qlat, qlon = torch.rand(4, 5, dtype=D) * 180 - 90, torch.rand(4, 5, dtype=D) * 360
    out = interpolate_latlon(values, lat, lon, qlat, qlon)
    assert out.shape == (2, 3, 4, 5)
    torch.testing.assert_close(out[1, 2], interpolate_latlon(values[1, 2], lat, lon, qlat, qlon), atol=0, rtol=0)
    torch.testing.assert_close(out[0, 1].reshape(-1),
                               interpolate_latlon(values[0, 1], lat, lon, qlat.reshape(-1), qlon.reshape(-1)),
                               atol=0, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    lat, lon = _axes(4.0, 4.0)
    values = _smooth(lat, lon).float()
    qlat, qlon = torch.rand(100) * 180 - 90, torch.rand(100) * 360
    for method in ("bilinear", "nearest"):
        cpu = interpolate_latlon(values, lat, lon, qlat, qlon, method)
        gpu = interpolate_latlon(values.cuda(), lat, lon, qlat.cuda(), qlon.cuda(), method)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-6, rtol=0)
    new_lat, new_lon = _axes(12.0, 12.0)
    torch.testing.assert_close(regrid(values.cuda(), lat, lon, new_lat, new_lon, "conservative").cpu(),
                               regrid(values, lat, lon, new_lat, new_lon, "conservative"), atol=1e-5, rtol=0)


# -- super-resolution baseline ---------------------------------------------------------------
def test_super_resolution_4deg_to_1deg():
    coarse, fine = LatLonGrid.regular(46, 90), LatLonGrid.regular(181, 360)
    f = lambda la, lo: torch.cos(torch.deg2rad(la)) * torch.sin(torch.deg2rad(lo))  # noqa: E731
    grid_values = f(coarse.lat[:, None], coarse.lon[None, :])                       # (46, 90)
    x = coarse.to_data(grid_values).x                                               # point values (N, 1)
    arr = coarse.to_array(x)                                                        # (46, 90, 1)
    pos = fine.pos.double()
    truth = f(*[t for t in _latlon_of(pos)])
    bil = interpolate_to_points(arr.movedim(-1, 0), coarse.lat, coarse.lon, pos)[0]
    near = interpolate_to_points(arr.movedim(-1, 0), coarse.lat, coarse.lon, pos, "nearest")[0]
    assert bil.shape == (fine.num_points,)
    err_bil, err_near = (bil - truth).abs().max(), (near - truth).abs().max()
    assert err_bil < 1e-2 and err_near > 2 * err_bil, (err_bil, err_near)
    # points of the coarse grid inside the fine one get the coarse values (pos in float32: to ~1e-6)
    torch.testing.assert_close(interpolate_to_points(grid_values, coarse.lat, coarse.lon, coarse.pos),
                               x[:, 0], atol=1e-5, rtol=0)


def _latlon_of(pos):
    return torch.rad2deg(torch.asin(pos[:, 2].clamp(-1, 1))), torch.rad2deg(torch.atan2(pos[:, 1], pos[:, 0]))


def test_interpolate_to_points_matches_latlon_queries():
    lat, lon = _axes(5.0, 5.0, poles=False)
    values = _smooth(lat, lon, seed=4)
    g = torch.Generator().manual_seed(4)
    qlat, qlon = torch.rand(50, generator=g, dtype=D) * 180 - 90, torch.rand(50, generator=g, dtype=D) * 360 - 180
    pos = 2.5 * latlon_to_xyz(qlat, qlon)  # not unit norm
    torch.testing.assert_close(interpolate_to_points(values, lat, lon, pos),
                               interpolate_latlon(values, lat, lon, qlat, qlon), atol=1e-12, rtol=0)


# -- conservative ----------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["3deg_centres", "4deg_poles", "1.5deg_offset"])
def test_conservative_keeps_area_weighted_mean_and_constants(target):
    lat, lon = _axes(1.0, 1.0, poles=True)  # the 1° ERA5 layout: 181 x 360
    if target == "3deg_centres":
        new_lat, new_lon = torch.arange(-88.5, 90.0, 3.0, dtype=D), torch.arange(1.5, 360.0, 3.0, dtype=D)
    elif target == "4deg_poles":
        new_lat, new_lon = _axes(4.0, 4.0, poles=True)
    else:  # -180..180, south-first, lon offset
        new_lat, new_lon = torch.arange(-89.25, 90.0, 1.5, dtype=D), torch.arange(-179.3, 180.0, 1.5, dtype=D)
    values = torch.stack([_smooth(lat, lon, seed=s) + 10 for s in range(2)])
    out = regrid(values, lat, lon, new_lat, new_lon, "conservative")
    assert out.shape == (2, new_lat.numel(), new_lon.numel())
    w_src = torch.as_tensor(_area_weights(lat, lon))
    w_new = torch.as_tensor(_area_weights(new_lat, new_lon))
    assert abs(float(w_src.sum()) - 4 * np.pi) < 1e-12 and abs(float(w_new.sum()) - 4 * np.pi) < 1e-12
    torch.testing.assert_close(latlon_cell_area(new_lat, new_lon), w_new, atol=1e-15, rtol=0)
    mean_src = (values * w_src).sum((-2, -1)) / w_src.sum()
    mean_new = (out * w_new).sum((-2, -1)) / w_new.sum()
    torch.testing.assert_close(mean_new, mean_src, atol=1e-6, rtol=0)
    # each new value is a convex combination of source values
    assert bool((out >= values.amin((-2, -1), keepdim=True) - 1e-12).all())
    assert bool((out <= values.amax((-2, -1), keepdim=True) + 1e-12).all())
    const = regrid(torch.full((lat.numel(), lon.numel()), -7.25, dtype=D), lat, lon, new_lat, new_lon, "conservative")
    torch.testing.assert_close(const, torch.full_like(const, -7.25), atol=1e-12, rtol=0)
    # float32 in, float32 out
    out32 = regrid(values.float(), lat, lon, new_lat, new_lon, "conservative")
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out, atol=1e-4, rtol=0)


def test_conservative_weights_by_hand():
    # Source cells 10° wide centred on 0, 10, ...; target cells 20° wide centred on 10, 30, ...: the target cell
    # [0, 20] holds half of cell 0, all of cell 10, half of cell 20 (in longitude), on a single band of latitude.
    lat = torch.tensor([-45.0, 45.0], dtype=D)
    lon = torch.arange(0.0, 360.0, 10.0, dtype=D)
    values = torch.randn(2, 36, dtype=D)
    out = regrid(values, lat, lon, lat, torch.arange(10.0, 360.0, 20.0, dtype=D), "conservative")
    ref = 0.25 * values[:, 0:36:2] + 0.5 * values[:, 1:36:2] + 0.25 * torch.roll(values, -2, dims=1)[:, 0:36:2]
    torch.testing.assert_close(out, ref, atol=1e-14, rtol=0)
    # target rows [-20, 0] and [0, 20] each lie inside one source row ([-90, 0], [0, 90]): that row's values
    out = regrid(values, lat, lon, torch.tensor([-10.0, 10.0], dtype=D), lon, "conservative")
    torch.testing.assert_close(out, values, atol=1e-14, rtol=0)
    # regional source, target partly covered: mean of the covered part
    rl = torch.tensor([0.0, 10.0], dtype=D)
    rv = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=D)
    out = regrid(rv, rl, rl, torch.tensor([5.0, 15.0], dtype=D), torch.tensor([5.0, 15.0], dtype=D), "conservative")
    assert out.shape == (2, 2)
    # target cell [0, 10] x [0, 10] (lat x lon) covers the source cells [-5, 5] and [5, 15] half each in lon
    s = np.sin(np.deg2rad([0.0, 5.0, 10.0]))
    w_lo, w_hi = s[1] - s[0], s[2] - s[1]
    ref00 = (w_lo * (rv[0, 0] + rv[0, 1]) / 2 + w_hi * (rv[1, 0] + rv[1, 1]) / 2) / (w_lo + w_hi)
    torch.testing.assert_close(out[0, 0], ref00, atol=1e-14, rtol=0)


def test_cell_area_sums_to_sphere():
    grids = (_axes(1.0, 1.0), _axes(3.0, 3.0, poles=False), (torch.linspace(-90, 90, 7), torch.arange(-180.0, 180, 45)))
    for lat, lon in grids:
        torch.testing.assert_close(latlon_cell_area(lat, lon).sum(), torch.tensor(4 * np.pi, dtype=D),
                                   atol=1e-12, rtol=0)


# -- ERA5Field.regrid ------------------------------------------------------------------------
def _field(n_lat=19, n_lon=36, steps=3):
    lat = np.linspace(90, -90, n_lat)
    lon = np.arange(n_lon) * (360.0 / n_lon) - 180.0
    values = (_smooth(lat, lon).numpy()[None] * 10 + 280 + np.arange(steps)[:, None, None]).astype(np.float32)
    time = np.array(["2020-01-01T00", "2020-01-01T06", "2020-01-01T12"][:steps], dtype="datetime64[ns]")
    return ERA5Field(values=values, lat=lat, lon=lon, time=time, variable="t2m", units="K")


@pytest.mark.parametrize("method", ["bilinear", "nearest", "conservative"])
def test_era5_field_regrid_keeps_metadata(method):
    field = _field()
    before = field.values.copy()
    new_lat = np.arange(-87.0, 90.0, 6.0)           # south-first: stored north-first
    new_lon = np.arange(3.0, 360.0, 6.0)[::-1]      # decreasing: stored increasing
    out = field.regrid(new_lat, new_lon, method)
    assert out.values.dtype == np.float32 and out.values.shape == (3, new_lat.size, new_lon.size)
    assert out.variable == "t2m" and out.units == "K" and np.array_equal(out.time, field.time)
    np.testing.assert_array_equal(out.lat, new_lat[::-1])
    np.testing.assert_array_equal(out.lon, np.sort(new_lon))
    ref = regrid(torch.as_tensor(field.values, dtype=D), field.lat, field.lon, out.lat, out.lon, method)
    np.testing.assert_allclose(out.values, ref.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(field.values, before)  # the original is untouched


def test_era5_field_regrid_sample_to_3deg():
    from pcfunc.data import load_era5_sample

    field = load_era5_sample().select_time(slice(0, 2))
    new_lat, new_lon = np.arange(88.5, -90, -3.0), np.arange(1.5, 360, 3.0)
    out = field.regrid(new_lat, new_lon, "conservative")
    assert out.values.shape == (2, 60, 120) and out.units == "K"
    w_src, w_new = _area_weights(field.lat, field.lon), _area_weights(new_lat, new_lon)
    mean_src = (field.values.astype(np.float64) * w_src).sum((1, 2)) / w_src.sum()
    mean_new = (out.values.astype(np.float64) * w_new).sum((1, 2)) / w_new.sum()
    np.testing.assert_allclose(mean_new, mean_src, atol=1e-3, rtol=0)  # float32 storage of ~280 K values


# -- errors ----------------------------------------------------------------------------------
def test_errors():
    lat, lon = _axes(30.0, 30.0)
    values = torch.zeros(lat.numel(), lon.numel(), dtype=D)
    q = torch.zeros(3, dtype=D)
    with pytest.raises(ValueError, match="values must have shape"):
        interpolate_latlon(values[:, :-1], lat, lon, q, q)
    with pytest.raises(ValueError, match="values must have shape"):
        regrid(values.T, lat, lon, lat, lon)
    with pytest.raises(ValueError, match="values must have shape"):
        interpolate_latlon(values[0], lat, lon, q, q)
    with pytest.raises(ValueError, match="lat must be strictly monotone"):
        interpolate_latlon(values, lat[[0, 2, 1, 3, 4, 5, 6]], lon, q, q)
    with pytest.raises(ValueError, match="lat must lie in"):
        interpolate_latlon(values, lat * 1.1, lon, q, q)
    with pytest.raises(ValueError, match="new_lat must be strictly monotone"):
        regrid(values, lat, lon, torch.tensor([0.0, 10.0, 5.0]), lon)
    with pytest.raises(ValueError, match="new_lat must lie in"):
        regrid(values, lat, lon, torch.tensor([0.0, 95.0]), lon)
    with pytest.raises(ValueError, match="lon has values equal modulo 360"):
        interpolate_latlon(values, lat, torch.cat((lon[:-1], lon[:1] + 360)), q, q)
    with pytest.raises(ValueError, match="new_lon has values equal modulo 360"):
        regrid(values, lat, lon, lat, torch.tensor([-180.0, 0.0, 180.0]))
    bad = values.clone()
    bad[2, 3] = float("inf")  # NaN is a missing value (tests/data/test_masks.py); Inf is an error
    with pytest.raises(ValueError, match="values contains NaN or Inf"):
        interpolate_latlon(bad, lat, lon, q, q)
    with pytest.raises(ValueError, match="values contains NaN or Inf"):
        regrid(bad, lat, lon, lat, lon, "conservative")
    with pytest.raises(ValueError, match="query_lat contains NaN or Inf"):
        interpolate_latlon(values, lat, lon, torch.tensor([0.0, float("nan")]), torch.zeros(2))
    with pytest.raises(ValueError, match="query_lon contains NaN or Inf"):
        interpolate_latlon(values, lat, lon, torch.zeros(2), torch.tensor([float("inf"), 0.0]))
    with pytest.raises(ValueError, match="pos contains NaN or Inf"):
        interpolate_to_points(values, lat, lon, torch.tensor([[float("nan"), 0.0, 1.0]]))
    with pytest.raises(ValueError, match="lat contains NaN or Inf"):
        interpolate_latlon(values, torch.cat((lat[:-1], torch.tensor([float("nan")], dtype=D))), lon, q, q)
    with pytest.raises(ValueError, match="query_lat must lie in"):
        interpolate_latlon(values, lat, lon, torch.tensor([91.0]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="method must be one of"):
        interpolate_latlon(values, lat, lon, q, q, "cubic")
    with pytest.raises(ValueError, match="method must be one of"):
        interpolate_latlon(values, lat, lon, q, q, "conservative")  # regrid only
    with pytest.raises(ValueError, match="method must be one of"):
        regrid(values, lat, lon, lat, lon, "linear")
    with pytest.raises(ValueError, match="method must be one of"):
        interpolate_to_points(values, lat, lon, torch.zeros(2, 3), "spline")
    with pytest.raises(ValueError, match="query_lat and query_lon must have the same shape"):
        interpolate_latlon(values, lat, lon, torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="pos must have 3 coordinates"):
        interpolate_to_points(values, lat, lon, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="lat must be a 1-D array"):
        interpolate_latlon(values, lat[:, None], lon, q, q)
    # regional grids are not extrapolated
    rlat, rlon = torch.tensor([10.0, 20.0, 30.0]), torch.tensor([-20.0, 0.0, 20.0])
    rv = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="query_lon has 1 points outside the grid's longitudes"):
        interpolate_latlon(rv, rlat, rlon, torch.tensor([15.0, 15.0]), torch.tensor([10.0, 30.0]))
    with pytest.raises(ValueError, match="query_lat has 1 points outside the grid's latitudes"):
        interpolate_latlon(rv, rlat, rlon, torch.tensor([15.0, 5.0]), torch.tensor([350.0, 0.0]))
    with pytest.raises(ValueError, match="new_lon has 3 points outside"):
        regrid(rv, rlat, rlon, rlat, torch.tensor([0.0, 90.0]))
    with pytest.raises(ValueError, match="new_lat has 1 cells that no cell of the source grid overlaps"):
        regrid(rv, rlat, rlon, torch.tensor([20.0, 60.0]), rlon, "conservative")
    with pytest.raises(ValueError, match="new_lat needs at least 2 latitudes"):
        regrid(values, lat, lon, torch.tensor([0.0]), lon, "conservative")
    with pytest.raises(ValueError, match="new_lat must be strictly monotone"):
        _field().regrid(np.array([0.0, 10.0, 5.0]), np.arange(0.0, 360, 30))


# Boxes whose edges do not round cleanly: the edge rows and columns come back from the grid's float32 unit vectors up
# to ~2e-6 degrees outside the box (the 50-58 N box at 0.25 degrees failed at the end of a 16-minute run).
_BOXES = [(50.0, 58.0, 0.0, 10.0, 0.25, 0.5), (50.0, 58.0, -10.0, 10.0, 0.25, 1.0),
          (-33.3, -12.1, 111.7, 153.9, 0.1, 0.7), (35.05, 47.15, 6.6, 18.6, 0.05, 0.2), (80.1, 89.9, 0.0, 40.0, 0.1, 0.5)]


@pytest.mark.parametrize("box", _BOXES, ids=[f"{b[0]}..{b[1]}N@{b[4]}" for b in _BOXES])
def test_a_regional_grids_own_points_are_inside_it_after_the_xyz_round_trip(box):
    from pcfunc.data import regular_axes
    from pcfunc.evaluation import BilinearDownscaling

    south, north, west, east, d_fine, d_coarse = box
    lat = np.linspace(north, south, int(round((north - south) / d_fine)) + 1)
    lon = np.linspace(west, east, int(round((east - west) / d_fine)) + 1)
    fine = LatLonGrid(lat, lon)
    values = _smooth(lat, lon)
    # the grid's own points: bilinear at the nodes gives the values back (float32 positions: to ~1e-5)
    own = interpolate_to_points(values, lat, lon, fine.pos)
    torch.testing.assert_close(own, values.reshape(-1), atol=1e-4, rtol=0)
    torch.testing.assert_close(interpolate_to_points(values, lat, lon, fine.pos.double()), own)
    # the super-resolution baseline's path: a coarse grid in the same box, queried at the fine grid's points
    clat, clon = regular_axes(d_coarse, lat, lon)
    coarse = LatLonGrid(clat, clon)
    cvals = interpolate_latlon(values, lat, lon, *(torch.as_tensor(a) for a in np.meshgrid(clat, clon, indexing="ij")))
    up = interpolate_to_points(cvals, clat, clon, fine.pos)
    assert torch.isfinite(up).all()
    train_c = coarse.to_points(cvals[None].float())
    down = BilinearDownscaling(coarse, fine, train_c, fine.to_points(values[None].float()))
    assert torch.isfinite(down.predict(train_c)).all()
    # a point a whole metre-scale step outside is still refused
    outside = latlon_to_xyz(torch.tensor([north + 1e-3], dtype=D), torch.tensor([(west + east) / 2], dtype=D))
    with pytest.raises(ValueError, match="outside the grid's latitudes"):
        interpolate_to_points(values, lat, lon, outside)


def test_regrid_of_a_dataarray_returns_a_dataarray_with_the_new_axes():
    xr = pytest.importorskip("xarray")
    lat, lon = _axes(10.0, 10.0)
    values = torch.stack([_smooth(lat, lon, seed=s) for s in range(3)])
    times = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[ns]")
    da = xr.DataArray(values.numpy(), dims=("time", "lat", "lon"), name="t2m", attrs={"units": "K"},
                      coords={"time": times, "lat": ("lat", lat.numpy(), {"units": "degrees_north"}),
                              "lon": ("lon", lon.numpy(), {"units": "degrees_east"})})
    new_lat, new_lon = np.arange(85.0, -90.0, -5.0), np.arange(2.5, 360.0, 5.0)
    out = regrid(da, None, None, new_lat, new_lon)
    assert isinstance(out, xr.DataArray) and out.dims == ("time", "lat", "lon") and out.name == "t2m"
    np.testing.assert_array_equal(out["lat"].values, new_lat)
    np.testing.assert_array_equal(out["time"].values, times)
    assert out.attrs == {"units": "K", "regrid_method": "bilinear"} and out["lat"].attrs["units"] == "degrees_north"
    np.testing.assert_allclose(out.values, regrid(values, lat, lon, new_lat, new_lon).numpy())
    with pytest.raises(ValueError, match="lat=None, lon=None"):
        regrid(da, lat, lon, new_lat, new_lon)
    with pytest.raises(ValueError, match="no coordinate values"):
        regrid(xr.DataArray(values.numpy(), dims=("time", "y", "x")), None, None, new_lat, new_lon)
