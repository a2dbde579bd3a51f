"""GRIB files, the Climate Data Store's default format, written with ecCodes from known arrays and read back through
``load_era5`` and ``LazyERA5Dataset`` (cfgrib): orientation, time order, levels chosen by label, content sniffing."""

import shutil

import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("cfgrib")
eccodes = pytest.importorskip("eccodes")

from pcfunc.data import LazyERA5Dataset, load_era5  # noqa: E402

from .._fields import write_grib  # noqa: E402

LAT_S = np.linspace(-60.0, 60.0, 5)  # written south first (jScansPositively = 1)
LON = np.arange(0.0, 360.0, 45.0)
DATES = [20200103, 20200101, 20200102]  # written out of time order


def _write(path, values, levels=None, short="2t"):
    return write_grib(path, values, LAT_S, LON, DATES, levels, short)


def _values(levels=1):
    return np.random.default_rng(0).normal(280.0, 5.0, (len(DATES), levels, LAT_S.size, LON.size)).astype(np.float32)


def test_a_surface_grib_reads_back_north_first_in_time_order(tmp_path):
    values = _values()
    path = _write(tmp_path / "era5_t2m.grib", values)
    f = load_era5(path)
    assert f.variable == "t2m" and f.units == "K" and f.values.shape == (3, 5, 8)
    order = np.argsort(DATES)
    np.testing.assert_array_equal(f.values, values[order, 0, ::-1])  # time order, north first
    np.testing.assert_array_equal(f.lat, LAT_S[::-1])
    np.testing.assert_array_equal(f.lon, LON)
    assert [str(t)[:10] for t in f.time] == ["2020-01-01", "2020-01-02", "2020-01-03"]
    assert not list(tmp_path.glob("*.idx"))  # no index files written beside the user's data
    # By content: a GRIB file under another name is read the same.
    shutil.copy(path, tmp_path / "download.dat")
    np.testing.assert_array_equal(load_era5(tmp_path / "download.dat", "t2m").values, f.values)
    lazy = LazyERA5Dataset(path)
    np.testing.assert_array_equal(np.stack([lazy.read(i) for i in range(len(lazy))]), f.values)


def test_pressure_levels_in_grib_are_chosen_by_label(tmp_path):
    values = _values(2)
    path = _write(tmp_path / "era5_pl.grib2", values, levels=[850, 500], short="t")
    with pytest.raises(ValueError, match=r"isobaricInhPa \(2: 850.0, 500.0\).*--select isobaricInhPa=850.0"):
        load_era5(path, "t")
    f = load_era5(path, "t", select={"isobaricInhPa": 500})
    np.testing.assert_array_equal(f.values, values[np.argsort(DATES), 1, ::-1])
    lazy = LazyERA5Dataset(path, "t", select={"isobaricInhPa": 500})
    np.testing.assert_array_equal(lazy.read(0), f.values[0])


def test_a_file_that_is_not_grib_inside_is_not_read_as_grib(tmp_path):
    (tmp_path / "broken.grib").write_bytes(b"not a grib message")
    with pytest.raises(ValueError, match="broken.grib' is a GRIB file that cfgrib cannot read"):
        load_era5(tmp_path / "broken.grib")
