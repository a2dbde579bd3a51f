"""CF NetCDF files from sources other than the CDS (climate models, other reanalyses, observations), written with
xarray in their real layout and read back through ``load_era5``: calendars, variable names, axis attributes."""

import warnings

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("cftime")

from pcfunc.data import ERA5Dataset, load_era5, split_by_time  # noqa: E402

LAT = np.array([60.0, 20.0, -20.0, -60.0])  # north first
LON = np.array([-135.0, -45.0, 45.0, 135.0])  # increasing
TAS = {"standard_name": "air_temperature", "long_name": "Near-Surface Air Temperature", "units": "K"}
PR = {"standard_name": "precipitation_flux", "long_name": "Precipitation", "units": "kg m-2 s-1"}


def _expected(steps):
    """Values in time order, north first, increasing longitude; each encodes (step, lat, lon)."""
    return (250 + 10 * np.arange(steps)[:, None, None] + LAT[None, :, None] / 10
            + LON[None, None, :] / 1000).astype(np.float32)


def _cmip_file(path, calendar, steps=4, freq="MS", start="2000-01-01", extra=None):
    """A CMIP-style file: ``tas(time, lat, lon)`` with CF attributes and cell bounds, written out of order (times
    shuffled, latitudes south first, longitudes starting at 45), times encoded in ``calendar``."""
    times = xr.date_range(start, periods=steps, freq=freq, calendar=calendar, use_cftime=True)
    data = {"tas": (("time", "lat", "lon"), _expected(steps), TAS),
            "lat_bnds": (("lat", "bnds"), np.stack([LAT - 20, LAT + 20], 1)),
            "lon_bnds": (("lon", "bnds"), np.stack([LON - 45, LON + 45], 1))}
    data.update(extra or {})
    ds = xr.Dataset(data, coords={
        "time": ("time", times, {"standard_name": "time", "axis": "T"}),
        "lat": ("lat", LAT, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y",
                             "bounds": "lat_bnds"}),
        "lon": ("lon", LON, {"standard_name": "longitude", "units": "degrees_east", "axis": "X",
                             "bounds": "lon_bnds"})})
    order = np.random.default_rng(0).permutation(steps)
    if steps > 1 and np.all(np.diff(order) > 0):
        order = order[::-1]
    ds = ds.isel(time=order, lat=slice(None, None, -1), lon=[2, 3, 0, 1])
    ds.to_netcdf(path, encoding={"time": {"units": "days since 2000-01-01", "calendar": calendar}})
    return path, times


def _grid(steps=2):
    """Values ``(steps, 3, 4)`` for small hand-made grids."""
    return np.arange(steps * 12, dtype=np.float32).reshape(steps, 3, 4) + 250


@pytest.mark.parametrize("calendar, kind", [("360_day", "360_day"), ("noleap", "noleap"), ("365_day", "noleap"),
                                            ("all_leap", "all_leap"), ("julian", "julian"),
                                            ("proleptic_gregorian", "M"), ("standard", "M"), ("gregorian", "M")])
def test_every_cf_calendar_reads_back_sorted_north_first(tmp_path, calendar, kind):
    path, times = _cmip_file(tmp_path / f"tas_{calendar}.nc", calendar)
    f = load_era5(path, "tas")
    assert f.variable == "tas" and f.units == "K" and f.values.shape == (4, 4, 4)
    np.testing.assert_array_equal(f.values, _expected(4))  # times sorted, latitudes north first, longitudes increasing
    np.testing.assert_array_equal(f.lat, LAT)
    np.testing.assert_array_equal(f.lon, LON)
    assert [str(t)[:10] for t in f.time] == ["2000-01-01", "2000-02-01", "2000-03-01", "2000-04-01"]
    if kind == "M":  # standard calendars: numpy datetime64, as before
        assert f.time.dtype.kind == "M" and f.calendar == "proleptic_gregorian"
    else:  # the others: cftime datetimes of the file's calendar
        assert f.time.dtype == object and f.calendar == kind
        assert list(f.time) == list(times)
    assert all(a < b for a, b in zip(f.time[:-1], f.time[1:]))
    assert load_era5(path).variable == "tas"  # the only variable on the grid (the cell bounds do not count)


@pytest.mark.parametrize("calendar, feb28_to_mar01", [("360_day", 4), ("noleap", 2)])
def test_time_selection_and_split_in_360_day_and_noleap(tmp_path, calendar, feb28_to_mar01):
    path, _ = _cmip_file(tmp_path / "daily.nc", calendar, steps=8, freq="D", start="2000-02-27")
    f = load_era5(path, "tas", time=slice("2000-02-28", "2000-03-01"))
    # 360_day has 29 and 30 February; noleap has neither.
    assert f.values.shape[0] == feb28_to_mar01 and f.calendar == calendar
    assert str(f.time[0])[:10] == "2000-02-28" and str(f.time[-1])[:10] == "2000-03-01"
    np.testing.assert_array_equal(f.values, _expected(8)[1:1 + feb28_to_mar01])
    if calendar == "360_day":
        assert [str(t)[:10] for t in f.time] == ["2000-02-28", "2000-02-29", "2000-02-30", "2000-03-01"]
        assert load_era5(path, "tas", time=slice("2000-02-30", "2000-02-30")).values.shape[0] == 1
    # Splits are chronological and contiguous, whatever order the file has.
    full = load_era5(path, "tas")
    train, val, test = split_by_time(full, (0.5, 0.25, 0.25))
    assert [s.values.shape[0] for s in (train, val, test)] == [4, 2, 2]
    assert max(train.time) < min(val.time) and max(val.time) < min(test.time)
    np.testing.assert_array_equal(np.concatenate([train.values, val.values, test.values]), _expected(8))
    assert len(ERA5Dataset(train, target=train)) == 4  # equal cftime axes
    with pytest.raises(ValueError, match=rf"whose times are cftime datetimes \({calendar} calendar\)"):
        load_era5(path, "tas", time=slice(0, 3))


def test_variable_by_standard_name_or_long_name(tmp_path):
    pr = _expected(4) * 0 + 1e-5
    path, _ = _cmip_file(tmp_path / "two.nc", "noleap", extra={"pr": (("time", "lat", "lon"), pr, PR)})
    f = load_era5(path, "air_temperature")  # CF standard_name
    assert f.variable == "tas" and f.units == "K"
    np.testing.assert_array_equal(f.values, _expected(4))
    assert load_era5(path, "near-surface air temperature").variable == "tas"  # long_name, any case
    assert load_era5(path, "Precipitation").variable == "pr"
    assert load_era5(path, "TAS").variable == "tas"  # short name, any case
    with pytest.raises(ValueError, match=r"no variable 'msl'; it has \[.*\] \(looked up by name, CF standard_name"):
        load_era5(path, "msl")


def test_several_variables_on_the_grid_are_listed(tmp_path):
    pr = _expected(4) * 0 + 1e-5
    area = (("lat", "lon"), np.ones((4, 4)), {"standard_name": "cell_area", "units": "m2"})
    path, _ = _cmip_file(tmp_path / "many.nc", "360_day", extra={
        "pr": (("time", "lat", "lon"), pr, PR), "areacella": area})
    with xr.open_dataset(path) as ds:  # cell_measures names the cell areas: an auxiliary variable
        ds = ds.load()
    ds["tas"].attrs["cell_measures"] = "area: areacella"
    with pytest.raises(ValueError, match="2 variables on a latitude/longitude grid") as err:
        load_era5(ds)
    msg = str(err.value)
    assert "tas (time, lat, lon): standard_name='air_temperature', long_name='Near-Surface Air Temperature', " \
           "units='K'" in msg
    assert "pr (time, lat, lon): standard_name='precipitation_flux', long_name='Precipitation', " \
           "units='kg m-2 s-1'" in msg
    assert "pass variable=" in msg and "lat_bnds" not in msg and "areacella" not in msg
    # Two variables with one standard name: both listed.
    ds["tasmax"] = (ds["tas"] + 5).assign_attrs(TAS, long_name="Daily Maximum Temperature")
    with pytest.raises(ValueError, match="2 variables whose standard_name is 'air_temperature'") as err:
        load_era5(ds, "air_temperature")
    assert "  tas (" in str(err.value) and "  tasmax (" in str(err.value)
    assert load_era5(ds, "Daily Maximum Temperature").variable == "tasmax"


def test_axes_under_other_names_are_found_by_cf_attributes(tmp_path):
    ds = xr.Dataset({"temp": (("t", "y", "x"), _grid(), {"units": "degC"})}, coords={
        "t": ("t", [1.0, 0.0], {"units": "hours since 2001-01-01", "calendar": "all_leap", "axis": "T"}),
        "y": ("y", [-10.0, 0.0, 10.0], {"axis": "Y"}),
        "x": ("x", [0.0, 90.0, 180.0, 270.0], {"units": "degrees_east"})})
    ds.to_netcdf(tmp_path / "odd.nc")
    f = load_era5(tmp_path / "odd.nc", "temp")
    assert f.variable == "temp" and f.calendar == "all_leap" and [str(t) for t in f.time] == [
        "2001-01-01 00:00:00", "2001-01-01 01:00:00"]
    np.testing.assert_array_equal(f.lat, [10.0, 0.0, -10.0])
    np.testing.assert_array_equal(f.values, _grid()[::-1, ::-1])
    # A projection's y axis (another standard name) is not a latitude.
    proj = ds.assign_coords(y=ds["y"].assign_attrs(standard_name="projection_y_coordinate", units="m"))
    with pytest.raises(ValueError, match=r"has no latitude coordinate for 'temp' .*standard_name='latitude'"):
        load_era5(proj, "temp")
    assert load_era5(tmp_path / "odd.nc").variable == "temp"


def test_rotated_or_curvilinear_grids_are_a_clear_error(tmp_path):
    coords = {"time": np.array(["2000-01-01", "2000-01-02"], dtype="datetime64[ns]"),
              "rlat": ("rlat", [-1.0, 0.0, 1.0], {"standard_name": "grid_latitude", "units": "degrees", "axis": "Y"}),
              "rlon": ("rlon", [0.0, 1.0, 2.0, 3.0], {"standard_name": "grid_longitude", "units": "degrees",
                                                      "axis": "X"}),
              "lat": (("rlat", "rlon"), np.full((3, 4), 50.0), {"standard_name": "latitude", "units": "degrees_north"}),
              "lon": (("rlat", "rlon"), np.full((3, 4), 10.0), {"standard_name": "longitude", "units": "degrees_east"})}
    ds = xr.Dataset({"tas": (("time", "rlat", "rlon"), _grid(), {"grid_mapping": "rotated_pole", **TAS}),
                     "rotated_pole": ((), 0, {"grid_mapping_name": "rotated_latitude_longitude"})}, coords=coords)
    ds.to_netcdf(tmp_path / "cordex.nc")
    for variable in ("tas", None):
        with pytest.raises(ValueError, match=r"'tas' in .*cordex.nc is on a rotated or curvilinear grid .*regrid it"):
            load_era5(tmp_path / "cordex.nc", variable)


def test_time_axis_without_units_keeps_the_numbers(tmp_path):
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), _grid(3), TAS)},
                    coords={"time": [5, 3, 4], "lat": [-10.0, 0.0, 10.0], "lon": [0.0, 90.0, 180.0, 270.0]})
    ds.to_netcdf(tmp_path / "plain.nc")
    f = load_era5(tmp_path / "plain.nc", "tas")
    assert f.time.tolist() == [3, 4, 5] and f.calendar == ""
    np.testing.assert_array_equal(f.values, _grid(3)[[1, 2, 0], ::-1])
    assert load_era5(tmp_path / "plain.nc", time=slice(4, 5)).time.tolist() == [4, 5]
    with pytest.raises(ValueError, match="whose times are numbers, not dates .*no CF units"):
        load_era5(tmp_path / "plain.nc", time=slice("2000-01", "2000-02"))
    # Units xarray cannot decode ("months since" in the standard calendar): numbers too, with a warning.
    ds["time"].attrs.update(units="months since 2000-01-01", calendar="standard")
    ds.to_netcdf(tmp_path / "months.nc")
    with pytest.warns(UserWarning, match="cannot decode its times .*months since"):
        f = load_era5(tmp_path / "months.nc")
    assert f.time.tolist() == [3, 4, 5]


def test_single_time_step_and_no_time(tmp_path):
    values = _grid(1)[0]
    ds = xr.Dataset({"tas": (("lat", "lon"), values, TAS)}, coords={
        "time": ((), 0.0, {"units": "days since 1850-01-01", "calendar": "noleap"}),
        "lat": [-10.0, 0.0, 10.0], "lon": [0.0, 90.0, 180.0, 270.0]})
    ds.to_netcdf(tmp_path / "scalar.nc")  # one step as a scalar time coordinate
    f = load_era5(tmp_path / "scalar.nc", "tas")
    assert f.values.shape == (1, 3, 4) and f.calendar == "noleap" and str(f.time[0]) == "1850-01-01 00:00:00"
    np.testing.assert_array_equal(f.values[0], values[::-1])
    one = ds.expand_dims("time")  # one step along a time dimension
    one.to_netcdf(tmp_path / "one.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_era5(tmp_path / "one.nc").values.shape == (1, 3, 4)
    with pytest.raises(ValueError, match="1 time steps cannot be split"):
        split_by_time(f, (0.5, 0.5))
    with pytest.raises(ValueError, match=r"has no time dimension or scalar time coordinate .*expand_dims\(time="):
        load_era5(ds.drop_vars("time"))


def _levels_file(path):
    """A CDS pressure-level file: ``t(valid_time, pressure_level, number, latitude, longitude)``, three levels and
    two ensemble members; each value encodes (step, level, member, lat, lon)."""
    level, member = np.array([1000.0, 850.0, 500.0]), np.array([0, 1])
    values = (_expected(3)[:, None, None] + level[None, :, None, None, None] / 10
              + member[None, None, :, None, None] * 1000).astype(np.float32)
    ds = xr.Dataset({"t": (("valid_time", "pressure_level", "number", "latitude", "longitude"), values,
                           {"units": "K", "long_name": "Temperature"})},
                    coords={"valid_time": np.array(["2020-01-01T00", "2020-01-01T06", "2020-01-01T12"],
                                                   dtype="datetime64[ns]"),
                            "pressure_level": ("pressure_level", level, {"units": "hPa"}), "number": member,
                            "latitude": LAT, "longitude": LON})
    ds.to_netcdf(path)
    return path, values


def test_pressure_levels_and_members_are_chosen_by_label_eager_and_lazy(tmp_path):
    from pcfunc.data import LazyERA5Dataset

    path, values = _levels_file(tmp_path / "levels.nc")
    f = load_era5(path, "t", select={"pressure_level": 500, "number": 1})
    np.testing.assert_array_equal(f.values, values[:, 2, 1])
    assert f.units == "K" and f.values.shape == (3, 4, 4)
    lazy = LazyERA5Dataset(path, "t", select={"pressure_level": 500.0, "number": 1})
    np.testing.assert_array_equal(lazy.read(2), values[2, 2, 1])
    # Without a choice, the error lists every extra dimension with its labels and how to choose.
    for reader in (lambda **kw: load_era5(path, "t", **kw), lambda **kw: LazyERA5Dataset(path, "t", **kw)):
        with pytest.raises(ValueError, match=r"pressure_level \(3: 1000.0, 850.0, 500.0\); number \(2: 0, 1\)"
                                             r".*select=\{'pressure_level': 1000.0, 'number': 0\}"
                                             r".*--select pressure_level=1000.0 --select number=0"):
            reader()
        with pytest.raises(ValueError, match=r"pressure_level.*no single entry.*labels are \(3: 1000.0, 850.0, 500.0\)"):
            reader(select={"pressure_level": 700, "number": 0})
        with pytest.raises(ValueError, match=r"no dimension 'level'.*\['pressure_level', 'number'\]"):
            reader(select={"level": 500})
        with pytest.raises(ValueError, match="'latitude' is the latitude axis"):
            reader(select={"latitude": 60.0, "pressure_level": 500, "number": 0})
    # Only the member chosen, the levels left open: still an error naming the levels alone.
    with pytest.raises(ValueError, match=r"several entries: pressure_level \(3: "):
        load_era5(path, "t", select={"number": 0})


def test_a_time_axis_that_is_a_plain_index_is_named_with_time_dim(tmp_path):
    from pcfunc.data import LazyERA5Dataset

    values = _grid(12)
    ds = xr.Dataset({"u": (("month", "lat", "lon"), values, {"units": "m s-1"})},
                    coords={"month": np.arange(1, 13), "lat": [10.0, 0.0, -10.0], "lon": [0.0, 90.0, 180.0, 270.0]})
    ds.to_netcdf(tmp_path / "climatology.nc")
    with pytest.raises(ValueError, match=r"found dimensions \['month', 'lat', 'lon'\].*time_dim='month'"):
        load_era5(tmp_path / "climatology.nc")
    f = load_era5(tmp_path / "climatology.nc", time_dim="month")
    np.testing.assert_array_equal(f.time, np.arange(1, 13))
    np.testing.assert_array_equal(f.values, values)
    lazy = LazyERA5Dataset(tmp_path / "climatology.nc", time_dim="month")
    np.testing.assert_array_equal(lazy.read(11), values[11])
    with pytest.raises(ValueError, match=r"time_dim='months' is not a dimension .*\['month', 'lat', 'lon'\]"):
        load_era5(tmp_path / "climatology.nc", time_dim="months")
    # A dimension without coordinate values is chosen by position.
    nolabels = xr.Dataset({"u": (("time", "member", "lat", "lon"), np.stack([values[:2], values[2:4]], 1))},
                          coords={"time": [0.0, 1.0], "lat": [10.0, 0.0, -10.0], "lon": [0.0, 90.0, 180.0, 270.0]})
    np.testing.assert_array_equal(load_era5(nolabels, select={"member": 1}).values, values[2:4])
    with pytest.raises(ValueError, match=r"no coordinate values, so give a position in 0..1"):
        load_era5(nolabels, select={"member": 2})
