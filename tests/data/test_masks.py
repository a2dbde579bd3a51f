"""Masked data: NaN / _FillValue points are missing points (issue "Any gridded file ...", item 4)."""

import warnings

import numpy as np
import pytest
import torch

from pcfunc.data import ERA5Dataset, ERA5Field, MinMaxNormalizer, load_era5


def _sst(t=4, missing_step=None):
    lat, lon = np.linspace(90, -90, 19), np.arange(0.0, 360.0, 10.0)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    v = np.stack([280 + 20 * np.cos(np.deg2rad(la)) + i for i in range(t)]).astype(np.float32)
    land = (la > 20) & (la < 60) & (lo > 60) & (lo < 140)  # a continent
    v[:, land] = np.nan
    v[:, 0] = np.nan  # the north pole row (sea ice): one collapsed point, missing
    if missing_step is not None:
        v[missing_step, 2:] = np.nan  # a nearly empty step
    return ERA5Field(values=v, lat=lat, lon=lon, time=np.arange(t).astype("datetime64[D]"), variable="sst",
                     units="K"), land


def test_fill_values_are_read_as_missing_points(tmp_path):
    xr = pytest.importorskip("xarray")
    f, land = _sst()
    ds = xr.Dataset({"sst": (("time", "latitude", "longitude"), f.values, {"units": "K"})},
                    coords={"time": f.time, "latitude": f.lat, "longitude": f.lon})
    ds.to_netcdf(tmp_path / "sst.nc", encoding={"sst": {"_FillValue": -999.0}})
    raw = xr.open_dataset(tmp_path / "sst.nc", mask_and_scale=False)["sst"].values
    assert (raw == -999.0).sum() == np.isnan(f.values).sum()  # on disk: the fill value
    with pytest.warns(UserWarning, match=r"values are missing \(NaN or the file's _FillValue"):
        g = load_era5(tmp_path / "sst.nc")
    np.testing.assert_array_equal(np.isnan(g.values), np.isnan(f.values))  # never filled
    assert np.nanmin(g.values) > 250


def test_normalizer_ignores_missing_values():
    f, _ = _sst()
    n = MinMaxNormalizer.fit(f)
    assert (n.low, n.high) == (float(np.nanmin(f.values)), float(np.nanmax(f.values)))
    with pytest.raises(ValueError, match="every value is missing"):
        MinMaxNormalizer.fit(np.full((2, 3), np.nan))


def test_dataset_items_hold_only_valid_points_and_batch_with_different_sizes():
    from torch_geometric.data import Batch

    f, land = _sst()
    ds = ERA5Dataset(f)
    valid = (~land[1:-1]).sum() + 1  # interior rows without the continent, plus the south pole; no north pole
    item = ds[0]
    assert item.x.shape == (valid, 1) and torch.isfinite(item.x).all()
    # Brute force: the item's points are exactly the grid points whose value is not missing.
    from pcfunc.data import LatLonGrid

    grid = LatLonGrid(f.lat, f.lon)
    v = ds.normalizer.transform(f.values[0])
    # Row by row: the north pole row (missing) gives no point, interior cells give theirs, the south pole one.
    expected = [(grid.pos[1 + r * 36 + c], v[1 + r, c]) for r in range(17) for c in range(36)
                if not np.isnan(v[1 + r, c])] + [(grid.pos[-1], v[-1].mean())]
    torch.testing.assert_close(item.pos, torch.stack([p for p, _ in expected]))
    torch.testing.assert_close(item.x[:, 0], torch.tensor([x for _, x in expected], dtype=item.x.dtype))
    # Fields with different numbers of points batch together, and VaMoH trains on them.
    g = f.values.copy()
    g[1, 5, :] = np.nan  # one more missing row in step 1
    ds2 = ERA5Dataset(ERA5Field(values=g, lat=f.lat, lon=f.lon, time=f.time, variable="sst", units="K"))
    b = Batch.from_data_list([ds2[0], ds2[1]])
    fewer = valid - (36 - int(land[5].sum()))  # row 5 crosses the continent: its sea points go
    assert b.ptr.diff().tolist() == [valid, fewer]
    from pcfunc.models import VaMoH
    from pcfunc.nn import LayerSpec

    model = VaMoH("sphere", encoder=[LayerSpec(8, 4, num_centroids=32), LayerSpec(8, 4, global_centroid=True)],
                  latent_dim=4, num_components=2, hypernet_hidden=(8,), generator_hidden=(8,), num_frequencies=4,
                  categorical_hidden=(8,), flow_layers=1, likelihood="gaussian")
    out = model.elbo(b)
    assert out.num_points.tolist() == [valid, fewer] and torch.isfinite(out.loss)


def test_steps_with_too_few_valid_points_are_skipped_with_their_time():
    f, _ = _sst(t=4, missing_step=2)
    with pytest.warns(UserWarning, match=r"1 of 4 time steps have fewer than 50 valid points .* 1970-01-03"):
        ds = ERA5Dataset(f, min_points=50)
    assert len(ds) == 3 and [int(ds[i].time_index) for i in range(3)] == [0, 1, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(ERA5Dataset(f, min_points=1)) == 4
    with pytest.raises(ValueError, match="no time step of field has 10000 valid points"), pytest.warns(UserWarning):
        ERA5Dataset(f, min_points=10_000)


def test_target_points_are_drawn_among_valid_points():
    f, _ = _sst()
    fine = f  # the same grid as target: every drawn point must be valid
    ds = ERA5Dataset(f, target=fine, target_points=50, generator=torch.Generator().manual_seed(0))
    for i in range(len(ds)):
        item = ds[i]
        assert item.target_x.shape == (50, 1) and torch.isfinite(item.target_x).all()


def test_regridding_never_fills_a_missing_value():
    from pcfunc.data import regrid

    lat, lon = np.linspace(90, -90, 19), np.arange(0.0, 360.0, 10.0)
    g = torch.Generator().manual_seed(0)
    v = torch.rand(19, 36, generator=g, dtype=torch.float64)
    v[5, 7] = float("nan")
    # Bilinear onto a grid that contains the source grid's nodes: a target at a node reads only that node.
    new_lat, new_lon = np.linspace(90, -90, 37), np.arange(0.0, 360.0, 5.0)
    out = regrid(v, lat, lon, new_lat, new_lon)
    missing = torch.isnan(out)
    assert bool(missing[10, 14]) and not bool(missing[12, 14])  # the node itself; the next node is valid
    # Exactly the targets whose interpolation reads the missing node with a positive weight.
    la = torch.tensor(new_lat)[:, None].expand(37, 72)
    lo = torch.tensor(new_lon)[None, :].expand(37, 72)
    reads = ((la - 40.0).abs() < 10.0) & ((lo - 70.0).abs() < 10.0)
    assert torch.equal(missing, reads)
    torch.testing.assert_close(out[~missing], regrid(torch.nan_to_num(v, nan=0.5), lat, lon, new_lat, new_lon)[
        ~missing])
    # Conservative: the area-weighted mean of the valid part of each target cell (brute force by the weights).
    coarse_lat, coarse_lon = np.linspace(90, -90, 7), np.arange(0.0, 360.0, 30.0)
    c = regrid(v, lat, lon, coarse_lat, coarse_lon, "conservative")
    ones = regrid(torch.ones_like(v), lat, lon, coarse_lat, coarse_lon, "conservative")
    filled = regrid(torch.nan_to_num(v, nan=0.0), lat, lon, coarse_lat, coarse_lon, "conservative")
    valid = regrid((~torch.isnan(v)).double(), lat, lon, coarse_lat, coarse_lon, "conservative")
    torch.testing.assert_close(c, filled / valid)
    torch.testing.assert_close(ones, torch.ones_like(ones))
    assert not bool(torch.isnan(c).any())  # every coarse cell has a valid part
    all_missing = v.clone()
    all_missing[:4] = float("nan")  # the northern cap: the first coarse row sees nothing valid
    assert bool(torch.isnan(regrid(all_missing, lat, lon, coarse_lat, coarse_lon, "conservative")[0]).all())
    with pytest.raises(ValueError, match="NaN or Inf"):
        regrid(torch.full_like(v, float("inf")), lat, lon, new_lat, new_lon)


def test_grid_to_points_keeps_missing_values():
    from pcfunc.data import LatLonGrid

    grid = LatLonGrid(np.linspace(90, -90, 5), np.arange(0.0, 360.0, 45.0))
    v = np.random.default_rng(0).random((3, 5, 8))
    v[1, 0, 2] = np.nan  # one cell of the north pole row: the pole point is missing
    v[2, 2, 3] = np.nan
    p = grid.to_points(v)
    assert p.shape == (3, 26, 1) and torch.isnan(p[1, 0, 0]) and torch.isnan(p[2, 1 + 8 + 3, 0])
    assert int(torch.isnan(p).sum()) == 2
    torch.testing.assert_close(p[0], grid.to_batch(v[:1]).x.double())
