"""Regional grids: training axes over a box, boxes cut from global files (issue "Any gridded file ...")."""

import numpy as np
import pytest

from pcfunc.data import ERA5Field, LatLonGrid, regular_axes


def _field(lat, lon, t=2):
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    values = np.stack([la * 10 + lo / 1000 + i for i in range(t)]).astype(np.float32)  # each cell tells its lat/lon
    return ERA5Field(values=values, lat=np.asarray(lat, float), lon=np.asarray(lon, float),
                     time=np.arange(t).astype("datetime64[D]"), variable="x", units="K")


def test_regular_axes_keep_the_box_edges():
    lat, lon = regular_axes(4.0)
    assert lat.size == 46 and lon.size == 90 and lat[0] == 90 and lat[-1] == -90 and lon[0] == 0 and lon[1] == 4
    # A regional box (CORDEX-like North America, 1 degree): edges kept, spacing as close to 4 as whole steps allow.
    lat, lon = regular_axes(4.0, np.arange(15.0, 60.5), np.arange(225.0, 315.5))
    assert (lat[0], lat[-1], lon[0], lon[-1]) == (60.0, 15.0, 225.0, 315.0)
    np.testing.assert_allclose(np.diff(lat), -45 / 11)
    np.testing.assert_allclose(np.diff(lon), 90 / 22)
    # The same box written -180..180 stays so; a box across 0 (0..360 file) and across 180 (-180..180 file).
    assert regular_axes(4.0, np.arange(15.0, 60.5), np.arange(-135.0, -44.5))[1][[0, -1]].tolist() == [-135, -45]
    across0 = np.concatenate([np.arange(340.0, 360.0), np.arange(0.0, 21.0)])
    assert regular_axes(4.0, np.arange(-30.0, 31.0), across0)[1].tolist() == list(range(-20, 21, 4))
    across180 = np.concatenate([np.arange(150.0, 180.0), np.arange(-180.0, -149.0)])
    lon = regular_axes(4.0, np.arange(-30.0, 31.0), across180)[1]
    assert lon[0] == 150 and lon[-1] == 210 and (np.diff(lon) > 0).all()
    # A polar cap global in longitude: periodic longitudes, latitudes from the pole to the cap's edge.
    lat, lon = regular_axes(4.0, np.arange(90.0, 59.5, -1.0), np.arange(0.0, 360.0))
    assert lat[0] == 90 and lat[-1] == 60 and lon.size == 90
    # Global longitudes written -180..180 keep that convention.
    assert regular_axes(4.0, None, np.arange(-180.0, 180.0))[1][0] == -180
    with pytest.raises(ValueError, match="step must be a positive number"):
        regular_axes(0.0)


def test_regional_field_regrids_to_its_training_grid_and_back_inside_the_box():
    f = _field(np.arange(60.0, 14.5, -1.0), np.arange(225.0, 315.5))
    coarse = f.regrid(*regular_axes(4.0, f.lat, f.lon))  # used to fail: "new_lon has points outside the grid"
    assert coarse.shape == (12, 23)
    la, lo = np.meshgrid(coarse.lat, coarse.lon, indexing="ij")
    np.testing.assert_allclose(coarse.values[0], la * 10 + lo / 1000, atol=1e-3)  # bilinear of a linear field
    grid = LatLonGrid(coarse.lat, coarse.lon)
    assert not grid.is_global_lon and grid.num_points == 12 * 23


def test_region_cuts_a_box_from_a_global_file():
    f = _field(np.linspace(90, -90, 181), np.arange(0.0, 360.0))
    r = f.region((15, 60), (225, 315))
    assert r.shape == (46, 91) and r.lat[0] == 60 and r.lon[0] == 225 and r.lon[-1] == 315
    np.testing.assert_array_equal(r.values, f.values[:, 30:76, 225:316])
    assert f.region((15, 60), (-135, -45)).lon[[0, -1]].tolist() == [225, 315]  # the file's convention
    across = f.region((-10, 10), (350, 10))  # across 0: written -10..10, increasing
    assert across.lon.tolist() == list(range(-10, 11))
    np.testing.assert_array_equal(across.values[0, :, 0], f.values[0, 80:101, 350])
    assert f.region((60, 90)).shape == (31, 360)  # a polar cap
    assert f.region(None, (0, 360)).shape == (181, 360)
    g = _field(np.linspace(90, -90, 181), np.arange(-180.0, 180.0))
    assert g.region((0, 10), (170, -170)).lon.tolist() == list(range(170, 191))  # across 180: written 170..190
    with pytest.raises(ValueError, match="holds no point of the grid"):
        f.region((100, 120))
    with pytest.raises(ValueError, match="south <= north"):
        f.region((60, 15))


def test_to_xarray_round_trips_and_data_arrays_are_read():
    pytest.importorskip("xarray")
    from pcfunc.data import load_era5, load_era5_sample

    f = load_era5_sample().region((15, 60), (225, 315)).select_time(slice(0, 3))
    da = f.to_xarray()
    assert da.name == "t2m" and da.dims == ("time", "latitude", "longitude") and da.attrs["units"] == "K"
    assert da["latitude"].attrs["units"] == "degrees_north"
    back = load_era5(da)  # a DataArray is accepted
    np.testing.assert_array_equal(back.values, f.values)
    np.testing.assert_array_equal(back.lat, f.lat)
    np.testing.assert_array_equal(back.lon, f.lon)
    assert back.variable == "t2m" and back.units == "K" and list(back.time) == list(f.time)
    unnamed = da.rename(None)
    assert load_era5(unnamed, "tas").variable == "tas"
