"""Several variables of one grid as the channels of one field: reading, normalising, regridding, datasets and
xarray out, each against the single-variable path or NumPy."""

import numpy as np
import pytest
import torch

xr = pytest.importorskip("xarray")

from pcfunc.data import (ERA5Dataset, ERA5Field, LatLonGrid, LazyERA5Dataset, MinMaxNormalizer,  # noqa: E402
                         load_era5, predictions_to_xarray)


def winds(path=None, steps=5):
    """A CF dataset with u10 and v10 (m/s, south first, 0..360) and a third variable on another grid."""
    lat, lon = np.linspace(-90.0, 90.0, 19), np.arange(0.0, 360.0, 20.0)
    rng = np.random.default_rng(0)
    u = (5 * np.cos(np.deg2rad(lat))[None, :, None] + rng.normal(size=(steps, lat.size, lon.size))).astype("f4")
    v = (2 * np.sin(np.deg2rad(lon))[None, None, :] + 3 * rng.normal(size=(steps, lat.size, lon.size))).astype("f4")
    time = np.datetime64("2020-01-01") + np.arange(steps).astype("timedelta64[D]")
    ds = xr.Dataset({"u10": (("time", "latitude", "longitude"), u, {"units": "m s**-1"}),
                     "v10": (("time", "latitude", "longitude"), v, {"units": "m s**-1"}),
                     "msl": (("time", "lat2", "lon2"), np.full((steps, 3, 4), 1e5, "f4"), {"units": "Pa"})},
                    coords={"time": time, "latitude": lat, "longitude": lon,
                            "lat2": ("lat2", [-45.0, 0.0, 45.0], {"standard_name": "latitude"}),
                            "lon2": ("lon2", [0.0, 90.0, 180.0, 270.0], {"standard_name": "longitude"})})
    if path is not None:
        ds.to_netcdf(path)
    return ds


def test_a_list_of_variables_reads_each_as_a_channel(tmp_path):
    path = tmp_path / "winds.nc"
    winds(path)
    u, v = load_era5(path, "u10"), load_era5(path, "v10")
    both = load_era5(path, ["u10", "v10"])
    assert both.values.shape == u.values.shape + (2,) and both.num_channels == 2
    assert both.variable == ("u10", "v10") and both.units == ("m s**-1", "m s**-1")
    np.testing.assert_array_equal(both.values[..., 0], u.values)
    np.testing.assert_array_equal(both.values[..., 1], v.values)
    np.testing.assert_array_equal(both.lat, u.lat)
    # Subsetting, regions and regridding act on every channel as on each variable alone.
    np.testing.assert_array_equal(both.subsample(2).values[..., 1], v.subsample(2).values)
    np.testing.assert_array_equal(both.region((0, 60), (350, 50)).values[..., 0], u.region((0, 60), (350, 50)).values)
    lat, lon = np.linspace(80, -80, 9), np.arange(5.0, 360.0, 30.0)
    np.testing.assert_allclose(both.regrid(lat, lon).values[..., 1], v.regrid(lat, lon).values, rtol=1e-6)
    np.testing.assert_array_equal(both.select_time([0, 3]).values, both.values[[0, 3]])
    # xarray out and back.
    ds = both.to_xarray()
    assert set(ds.data_vars) == {"u10", "v10"} and ds["v10"].attrs["units"] == "m s**-1"
    np.testing.assert_array_equal(load_era5(ds, ["u10", "v10"]).values, both.values)


def test_variables_that_do_not_make_one_field_are_refused(tmp_path):
    path = tmp_path / "winds.nc"
    winds(path)
    with pytest.raises(ValueError, match="'u10' and 'msl' .* different latitudes"):
        load_era5(path, ["u10", "msl"])
    with pytest.raises(ValueError, match="twice"):
        load_era5(path, ["u10", "U10"])
    with pytest.raises(ValueError, match="empty"):
        load_era5(path, [])
    with pytest.raises(TypeError, match="list of strings"):
        load_era5(path, ["u10", 3])
    with pytest.raises(TypeError, match="LazyERA5Dataset reads one variable"):
        LazyERA5Dataset(path, variable=["u10", "v10"])
    with pytest.raises(ValueError, match="shape"):
        ERA5Field(np.zeros((2, 3, 4)), np.zeros(3), np.zeros(4), np.arange(2), ("u", "v"), "m/s")
    with pytest.raises(ValueError, match="one entry per variable"):
        ERA5Field(np.zeros((2, 3, 4, 2)), np.zeros(3), np.zeros(4), np.arange(2), ("u", "v"), ("m/s",))


def test_per_channel_normalisation_matches_numpy_and_inverts():
    field = load_era5(winds(), ["u10", "v10"])
    field.values[0, 3, 4, 1] = np.nan  # a missing value is ignored by the fit
    norm = MinMaxNormalizer.fit(field)
    for c in range(2):
        assert norm.low[c] == pytest.approx(float(np.nanmin(field.values[..., c])))
        assert norm.high[c] == pytest.approx(float(np.nanmax(field.values[..., c])))
    assert norm.range == pytest.approx(tuple(h - lo for lo, h in zip(norm.low, norm.high)))
    y = norm.transform(field.values)
    assert y.dtype == np.float32
    np.testing.assert_allclose(np.nanmin(y.reshape(-1, 2), 0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.nanmax(y.reshape(-1, 2), 0), 1.0, atol=1e-6)
    t = torch.as_tensor(y)
    np.testing.assert_allclose(norm.inverse(t).numpy(), field.values, rtol=1e-5, atol=1e-5)
    again = MinMaxNormalizer(**norm.to_dict())
    assert again == norm and MinMaxNormalizer.fit(field.values).low == pytest.approx(float(np.nanmin(field.values)))
    with pytest.raises(ValueError, match="one number per channel"):
        MinMaxNormalizer((0.0, 1.0), (1.0,))
    with pytest.raises(ValueError, match="low < high"):
        MinMaxNormalizer((0.0, 1.0), (1.0, 1.0))


def test_a_dataset_of_several_variables_has_one_channel_each_and_drops_points_missing_in_any():
    field = load_era5(winds(), ["u10", "v10"])
    field.values[1, 5, 2, 0] = np.nan
    norm = MinMaxNormalizer.fit(field)
    data = ERA5Dataset(field, norm)
    grid = LatLonGrid(field.lat, field.lon)
    assert data[0].x.shape == (grid.num_points, 2) and data[0].x.dtype == torch.float32
    for c, name in enumerate(("u10", "v10")):
        alone = ERA5Dataset(load_era5(winds(), name), MinMaxNormalizer(norm.low[c], norm.high[c]))
        torch.testing.assert_close(data[0].x[:, c:c + 1], alone[0].x)
    assert data[1].x.size(0) == grid.num_points - 1  # the point missing in u10 is left out of both channels


def test_predictions_to_xarray_writes_each_channel_with_its_units(tmp_path):
    grid = LatLonGrid(np.linspace(90, -90, 7), np.arange(0.0, 360.0, 60.0))
    values = torch.rand(2, grid.num_points, 2)
    ds = predictions_to_xarray(grid, {"reconstruction": values, "entropy": torch.rand(2, grid.num_points)},
                               channels=("t2m", "msl"), units=("K", "Pa"), time=[0, 1])
    assert set(ds.data_vars) == {"reconstruction_t2m", "reconstruction_msl", "entropy"}
    assert ds["reconstruction_msl"].attrs == {"long_name": "msl: reconstruction", "units": "Pa"}
    np.testing.assert_allclose(ds["reconstruction_t2m"].values[:, 1:-1].reshape(2, -1),
                               values[:, 1:-1, 0].numpy(), rtol=1e-6)  # rows between the poles, as stored
    ds.to_netcdf(tmp_path / "p.nc")
    with pytest.raises(ValueError, match="one per channel"):
        predictions_to_xarray(grid, {"r": values}, channels=("a", "b"), units=("K",))
