import numpy as np
import pytest

xr = pytest.importorskip("xarray")

from pcfunc.data import ERA5Field, LatLonGrid, load_era5  # noqa: E402


def _cds_dataset(time_name="valid_time", lon_convention="0-360", north_first=True, n_lat=19, n_lon=36, steps=3,
                 extra=None):
    """A small field in the layout of CDS downloads; values encode (step, lat, lon) so reordering is checkable."""
    lat = np.linspace(90, -90, n_lat)
    lon = np.arange(n_lon) * (360.0 / n_lon)
    if lon_convention == "-180-180":
        lon = np.where(lon >= 180, lon - 360, lon)
        order = np.argsort(lon)
        lon = lon[order]
    t = np.arange(steps)[:, None, None]
    values = (250 + t + 0.1 * np.cos(np.deg2rad(lat))[None, :, None] * 100
              + 0.01 * np.sin(np.deg2rad(lon))[None, None, :] * 100).astype(np.float32)
    if not north_first:
        lat, values = lat[::-1], values[:, ::-1]
    times = np.array(["2020-01-01T00", "2020-01-01T06", "2020-01-01T12"][:steps], dtype="datetime64[ns]")
    dims = (time_name, "latitude", "longitude")
    coords = {time_name: times, "latitude": lat, "longitude": lon}
    da = xr.DataArray(values, dims=dims, coords=coords, attrs={"units": "K"})
    if extra:
        da = da.expand_dims({extra[0]: extra[1]})
    return xr.Dataset({"t2m": da, "u10": da * 0 + 1.5})


def _expected(ds):
    da = ds["t2m"]
    return da.sortby("latitude", ascending=False).sortby("longitude")


@pytest.mark.parametrize("time_name", ["valid_time", "time"])
@pytest.mark.parametrize("lon_convention", ["0-360", "-180-180"])
@pytest.mark.parametrize("north_first", [True, False])
def test_netcdf_in_cds_layouts(tmp_path, time_name, lon_convention, north_first):
    ds = _cds_dataset(time_name, lon_convention, north_first)
    path = tmp_path / "era5.nc"
    ds.to_netcdf(path)
    f = load_era5(path, "t2m")
    ref = _expected(ds)
    assert isinstance(f, ERA5Field) and f.values.shape == (3, 19, 36) and f.units == "K"
    assert f.lat[0] == 90 and f.lat[-1] == -90 and np.all(np.diff(f.lon) > 0)
    np.testing.assert_array_equal(f.values, ref.values)
    np.testing.assert_array_equal(f.lon, ref["longitude"].values)
    assert f.time.dtype.kind == "M"
    # Both longitude conventions give the same points on the sphere.
    grid = LatLonGrid(f.lat, f.lon)
    assert grid.num_points == 17 * 36 + 2
    assert grid.to_batch(f.values).x.shape == (3 * grid.num_points, 1)


def test_zarr_store_other_variable_and_time_selection(tmp_path):
    ds = _cds_dataset()
    path = tmp_path / "era5.zarr"
    ds.to_zarr(path)
    f = load_era5(path, "u10", time=slice("2020-01-01T06", "2020-01-01T12"))
    assert f.variable == "u10" and f.values.shape == (2, 19, 36) and np.all(f.values == 1.5)


def test_extra_dimensions(tmp_path):
    f = load_era5(_cds_dataset(extra=("expver", [1])))
    assert f.values.shape == (3, 19, 36)
    with pytest.raises(ValueError, match=r"extra dimensions with several entries: number \(2: 0, 1\)"):
        load_era5(_cds_dataset(extra=("number", [0, 1])))


def test_subsample_keeps_poles_like_the_papers():
    ds = _cds_dataset(n_lat=181, n_lon=360, steps=1)
    f = load_era5(ds).subsample(4)
    assert f.shape == (46, 90) and f.lat[0] == 90 and f.lat[-1] == -90
    np.testing.assert_array_equal(f.values, load_era5(ds).values[:, ::4, ::4])
    with pytest.raises(ValueError, match="does not divide the 180 latitude intervals"):
        load_era5(ds).subsample(7)
    assert load_era5(ds).select_time([0]).values.shape == (1, 181, 360)


def test_errors(tmp_path):
    ds = _cds_dataset()
    with pytest.raises(ValueError, match=r"no variable 'msl'; it has \['t2m', 'u10'\]"):
        load_era5(ds, "msl")
    bad = ds.copy()
    bad["t2m"] = bad["t2m"].where(bad["t2m"] < 250.5, np.inf)
    with pytest.raises(ValueError, match="contains .* infinite values"):
        load_era5(bad)
    odd = ds.rename({"latitude": "y"})
    with pytest.raises(ValueError, match="has no latitude coordinate"):
        load_era5(odd)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_era5(tmp_path / "missing.nc")


def test_real_sample_round_trip(tmp_path):
    # The real 1-degree ERA5 sample, written as a CDS NetCDF and read back.
    from pathlib import Path

    sample = Path(__file__).resolve().parents[3] / "shared" / "data" / "era5_sample_1deg.npz"
    if not sample.is_file():
        pytest.skip("the shared ERA5 sample is not beside this checkout")
    with np.load(sample) as z:
        t2m, lat, lon = z["t2m"][:2], z["latitude"], z["longitude"]
    ds = xr.Dataset({"t2m": (("valid_time", "latitude", "longitude"), t2m)},
                    coords={"valid_time": np.array(["2026-03-25T00", "2026-03-25T07"], dtype="datetime64[ns]"),
                            "latitude": lat, "longitude": lon})
    ds.to_netcdf(tmp_path / "real.nc")
    f = load_era5(tmp_path / "real.nc").subsample(4)
    np.testing.assert_array_equal(f.values, t2m[:, ::4, ::4])
    assert 200 < f.values.min() < f.values.max() < 330


def test_embedded_sample_matches_the_shared_real_data():
    from pathlib import Path

    from pcfunc.data import load_era5_sample

    f = load_era5_sample()
    assert f.values.shape == (24, 181, 360) and f.units == "K" and f.variable == "t2m"
    assert str(f.time[0])[:13] == "2026-03-25T00" and np.all(np.diff(f.time).astype(np.int64) > 0)
    sample = Path(__file__).resolve().parents[3] / "shared" / "data" / "era5_sample_1deg.npz"
    if sample.is_file():
        with np.load(sample) as z:
            assert np.abs(f.values - z["t2m"]).max() <= 0.0026  # the stored quantisation step is 0.005 K
    assert (Path(__import__("pcfunc").__file__).parent / "data" / "assets" / "ERA5_ATTRIBUTION.txt").is_file()


def test_normalizer_and_time_split():
    import torch

    from pcfunc.data import MinMaxNormalizer, load_era5_sample, split_by_time

    train, val, test = split_by_time(load_era5_sample(), (0.75, 0.125, 0.125))
    assert [s.values.shape[0] for s in (train, val, test)] == [18, 3, 3]
    assert train.time.max() < val.time.min() and val.time.max() < test.time.min()
    norm = MinMaxNormalizer.fit(train)
    y = norm.transform(train.values)
    assert y.min() == 0.0 and y.max() == 1.0
    np.testing.assert_allclose(norm.inverse(y), train.values, rtol=1e-6)
    t = torch.as_tensor(val.values)
    assert torch.allclose(norm.inverse(norm.transform(t)), t, rtol=1e-6)
    assert MinMaxNormalizer(**norm.to_dict()) == norm
    with pytest.raises(ValueError, match="low < high"):
        MinMaxNormalizer(1.0, 1.0)
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_time(train, (0.5, 0.2))
    with pytest.raises(ValueError, match="cannot be split"):
        split_by_time(train.select_time([0, 1]), (0.5, 0.25, 0.25))


def test_dataset_with_fine_target_points():
    import torch
    from torch_geometric.loader import DataLoader

    from pcfunc.data import ERA5Dataset, MinMaxNormalizer, load_era5_sample, target_points

    fine = load_era5_sample().select_time([0, 1, 2])
    coarse = fine.regrid(np.linspace(90, -90, 46), np.arange(90) * 4.0)
    norm = MinMaxNormalizer.fit(coarse)
    ds = ERA5Dataset(coarse, norm, target=fine, target_points=500, generator=torch.Generator().manual_seed(0))
    item = ds[1]
    assert item.target_x.shape == (500, 1) and item.target_pos.shape == (500, 3) and item.num_target.tolist() == [500]
    # Every target point is a point of the fine grid with its normalised value at that time (found by position).
    grid = LatLonGrid(fine.lat, fine.lon)
    all_fine = grid.to_data(norm.transform(fine.values[1]))
    d = torch.cdist(item.target_pos.double(), all_fine.pos.double())
    nearest = d.argmin(1)
    assert float(d.min(1).values.max()) < 1e-6
    torch.testing.assert_close(item.target_x, all_fine.x[nearest])
    assert nearest.unique().numel() == 500  # without replacement
    assert not torch.equal(ds[1].target_pos, item.target_pos)  # fresh points at every access
    b = next(iter(DataLoader(ds, batch_size=3)))
    t = target_points(b)
    assert t.batch.tolist() == [0] * 500 + [1] * 500 + [2] * 500
    torch.testing.assert_close(t.x, b.target_x)
    assert ERA5Dataset(coarse, norm, target=fine)[0].num_target.tolist() == [grid.num_points]
    with pytest.raises(ValueError, match="same time steps"):
        ERA5Dataset(coarse, norm, target=fine.select_time([0, 1]))
    with pytest.raises(ValueError, match="target_points"):
        ERA5Dataset(coarse, norm, target=fine, target_points=0)
    with pytest.raises(ValueError, match="needs target"):
        ERA5Dataset(coarse, norm, target_points=10)
    with pytest.raises(ValueError, match="no target points"):
        target_points(next(iter(DataLoader(ERA5Dataset(coarse, norm), batch_size=2))))


@pytest.mark.parametrize("lon_convention", ["0-360", "-180-180"])
def test_cyclic_seam_column_is_dropped_once_and_a_conflicting_one_is_an_error(tmp_path, lon_convention):
    # The "cyclic point" many tools add: 360 = 0 (or 180 = -180), a copy of the first column.
    ds = _cds_dataset(lon_convention=lon_convention)
    seam = ds.isel(longitude=[0])
    seam = seam.assign_coords(longitude=seam["longitude"] + 360.0)
    with_seam = xr.concat([ds, seam], dim="longitude")
    path = tmp_path / "seam.nc"
    with_seam.to_netcdf(path)
    with pytest.warns(UserWarning, match="dropped 1 repeated longitude column"):
        f = load_era5(path, "t2m")
    ref = load_era5(ds, "t2m")
    assert f.lon.size == 36 and np.unique(np.remainder(f.lon, 360)).size == 36
    np.testing.assert_array_equal(f.values, ref.values)
    np.testing.assert_array_equal(f.lon, ref.lon)
    LatLonGrid(f.lat, f.lon)  # a valid global grid
    # A repeated meridian with other values is not a seam: an error naming both longitudes.
    bad = with_seam.copy(deep=True)
    bad["t2m"][..., -1] = bad["t2m"][..., -1] + 1.0
    first = float(ds["longitude"][0])
    with pytest.raises(ValueError, match=f"longitudes {first:g} and {first + 360:g}, the same meridian"):
        load_era5(bad, "t2m")


def test_repeated_times_empty_selections_and_fill_values_as_data_are_errors():
    ds = _cds_dataset()
    twice = xr.concat([ds, ds.isel(valid_time=[1])], dim="valid_time")  # step 1 twice
    with pytest.raises(ValueError, match=r"repeats 1 time step\(s\) \(2020-01-01T06.*drop_duplicates\('valid_time'\)"):
        load_era5(twice, "t2m")
    with pytest.raises(ValueError, match=r"selects no time step of dataset, whose times run from 2020-01-01T00"):
        load_era5(ds, "t2m", time=slice("2021-01-01", "2021-02-01"))
    filled = ds.copy(deep=True)
    filled["t2m"][0, 3, 4] = 9.969209968386869e36  # written as data by a tool that forgot the _FillValue
    with pytest.raises(ValueError, match=r"holds 1 value\(s\) of about 9.969e\+36, NetCDF's default fill value"):
        load_era5(filled, "t2m")
    # Masked, they are missing points (as before), and a real selection still works.
    masked = filled.copy()
    masked["t2m"] = filled["t2m"].where(abs(filled["t2m"]) < 9.9e36)
    with pytest.warns(UserWarning, match="1 of"):
        assert np.isnan(load_era5(masked, "t2m").values).sum() == 1
    assert load_era5(ds, "t2m", time=slice("2020-01-01T06", "2020-01-01T12")).values.shape[0] == 2


def test_latitude_and_longitude_in_radians_are_converted_other_units_refused():
    ds = _cds_dataset()
    rad = ds.assign_coords(latitude=("latitude", np.deg2rad(ds.latitude.values), {"units": "radians"}),
                           longitude=("longitude", np.deg2rad(ds.longitude.values), {"units": "rad"}))
    with pytest.warns(UserWarning, match="latitude, longitude converted from radians to degrees"):
        got = load_era5(rad, "t2m")
    ref = load_era5(ds, "t2m")
    np.testing.assert_allclose(got.lat, ref.lat, atol=1e-9)  # was a 3-degree box
    np.testing.assert_allclose(got.lon, ref.lon, atol=1e-9)
    np.testing.assert_array_equal(got.values, ref.values)
    km = ds.assign_coords(latitude=("latitude", ds.latitude.values, {"units": "km"}))
    with pytest.raises(ValueError, match=r"the latitude 'latitude' of 't2m' in dataset is in 'km'"):
        load_era5(km, "t2m")


def test_lazy_dataset_converts_radians_like_load_era5(tmp_path):
    from pcfunc.data import LazyERA5Dataset

    ds = _cds_dataset()
    rad = ds.assign_coords(latitude=("latitude", np.deg2rad(ds.latitude.values), {"units": "radians"}),
                           longitude=("longitude", np.deg2rad(ds.longitude.values), {"units": "radians"}))
    path = tmp_path / "rad.nc"
    rad.to_netcdf(path)
    with pytest.warns(UserWarning, match="converted from radians"):
        lazy = LazyERA5Dataset(path, "t2m")
    np.testing.assert_allclose(lazy.lat, load_era5(ds, "t2m").lat, atol=1e-9)
