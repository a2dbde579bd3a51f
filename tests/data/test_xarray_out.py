"""Predictions on a lat/lon grid as xarray: values where the grid's arrays have them, CF coordinates, times, units,
names and attribution; a NetCDF that load_era5 reads back."""

import numpy as np
import pytest
import torch

xr = pytest.importorskip("xarray")

from pcfunc.data import ERA5_ATTRIBUTION, LatLonGrid, load_era5, predictions_to_xarray  # noqa: E402


def test_predictions_round_trip_through_netcdf_and_load_era5(tmp_path):
    lat, lon = np.linspace(90.0, -90.0, 7), np.arange(0.0, 360.0, 30.0)
    grid = LatLonGrid(lat, lon)
    arrays = np.random.default_rng(0).normal(280.0, 5.0, (3, 7, 12))
    arrays[:, 0], arrays[:, -1] = arrays[:, :1, 0], arrays[:, -1:, 0]  # a pole is one value per field
    points = grid.to_points(torch.as_tensor(arrays))  # (3, N, 1)
    times = np.array(["2020-01-01", "2020-01-02", "2020-01-03"], dtype="datetime64[ns]")
    mask = points[0, :, 0] > 280.0
    entries = {"mean": points, "std": points[..., 0] * 0 + 1.5, "observed": mask[None].expand(3, -1)}
    ds = predictions_to_xarray(grid, entries, time=times, units="K", long_name="2 metre temperature", attribution=ERA5_ATTRIBUTION,
                               attrs={"std": {"long_name": "predictive standard deviation"}})
    np.testing.assert_allclose(ds["mean"].values, arrays, rtol=1e-6)
    assert ds["mean"].attrs == {"long_name": "2 metre temperature: mean", "units": "K"}
    assert ds["std"].attrs["long_name"] == "predictive standard deviation" and ds["std"].attrs["units"] == "K"
    assert ds["observed"].dtype == bool and "units" not in ds["observed"].attrs
    np.testing.assert_array_equal(ds["observed"].values[0], grid.to_array(mask[:, None].double())[..., 0] > 0.5)
    np.testing.assert_array_equal(ds["latitude"].values, lat)
    assert ds["longitude"].attrs["units"] == "degrees_east" and ds.attrs["attribution"] == ERA5_ATTRIBUTION
    ds.to_netcdf(tmp_path / "p.nc")
    back = load_era5(tmp_path / "p.nc", "mean")
    np.testing.assert_allclose(back.values, arrays, rtol=1e-6)
    np.testing.assert_array_equal(back.time, times)
    assert back.units == "K"
    # One field without times: numbered from 0.
    one = predictions_to_xarray(grid, {"sample": points[0, :, 0]})
    assert one["sample"].shape == (1, 7, 12) and list(one["time"].values) == [0]


def test_predictions_errors_name_the_entry():
    grid = LatLonGrid(np.linspace(90.0, -90.0, 7), np.arange(0.0, 360.0, 30.0))
    n = grid.num_points
    with pytest.raises(ValueError, match=r"predictions\['x'\] must hold point values .* got \(2, 5\)"):
        predictions_to_xarray(grid, {"x": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="same number of fields"):
        predictions_to_xarray(grid, {"a": torch.zeros(2, n), "b": torch.zeros(3, n)})
    with pytest.raises(ValueError, match=r"time must hold one entry per field \(2\)"):
        predictions_to_xarray(grid, {"a": torch.zeros(2, n)}, time=[0])
    with pytest.raises(TypeError, match="LatLonGrid"):
        predictions_to_xarray(object(), {"a": torch.zeros(n)})
    with pytest.raises(ValueError, match="non-empty"):
        predictions_to_xarray(grid, {})
