"""LazyERA5Dataset: NetCDF files and Zarr stores in their real layouts, read one time step at a time, item for item
the same as the eager path ``ERA5Dataset(load_era5(path), normalizer)``."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torch

xr = pytest.importorskip("xarray")
pytest.importorskip("netCDF4")
pytest.importorskip("zarr")

from torch_geometric.loader import DataLoader  # noqa: E402

from pcfunc.data import (ERA5Dataset, LazyERA5Dataset, MinMaxNormalizer, load_era5,  # noqa: E402
                         split_by_time)

ROOT = Path(__file__).resolve().parents[2]
STEPS = 10
NORM = MinMaxNormalizer(230.0, 320.0)


def _era5_dataset(steps: int = STEPS, seed: int = 0) -> "xr.Dataset":
    """An ERA5 download as the new CDS writes it, out of order: ``t2m(valid_time, number, latitude, longitude)``
    with a size-1 ``number`` dimension, latitudes south first (both poles), longitudes -180..180 with the cyclic
    column at 180 (equal to -180), and the times shuffled."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(-90.0, 90.0, 7)
    lon = np.arange(-180.0, 181.0, 40.0)  # -180, -140, ..., 180: 10 columns, the last repeating the first
    values = (275 + 25 * np.cos(np.deg2rad(lat))[None, :, None]
              + rng.normal(0, 5, (steps, lat.size, lon.size))).astype(np.float32)
    values[..., -1] = values[..., 0]
    times = np.datetime64("2020-01-01T00", "ns") + np.arange(steps).astype("timedelta64[h]")
    order = rng.permutation(steps)
    return xr.Dataset(
        {"t2m": (("valid_time", "number", "latitude", "longitude"), values[order][:, None],
                 {"units": "K", "long_name": "2 metre temperature", "standard_name": "air_temperature"})},
        coords={"valid_time": ("valid_time", times[order], {"standard_name": "time"}),
                "number": ("number", [0]),
                "latitude": ("latitude", lat, {"units": "degrees_north", "standard_name": "latitude"}),
                "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"})})


def _write(tmp_path: Path, kind: str, ds=None) -> Path:
    """The dataset as a NetCDF file (values packed in int16 with scale_factor/add_offset, as the old CDS wrote
    them) or as a Zarr store chunked 3 time steps at a time."""
    ds = _era5_dataset() if ds is None else ds
    if kind == "nc":
        path = tmp_path / "era5.nc"
        ds.to_netcdf(path, encoding={"t2m": {"dtype": "int16", "scale_factor": 0.002, "add_offset": 275.0,
                                             "_FillValue": -32767}})
    else:
        path = tmp_path / "era5.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr: consolidated metadata is not in the v3 specification
            ds.to_zarr(path, mode="w", encoding={"t2m": {"chunks": (3, 1, 7, 10)}})
    return path


def _lazy(*args, **kwargs) -> LazyERA5Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cyclic column's warning (tested on its own)
        return LazyERA5Dataset(*args, **kwargs)


def _eager(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_era5(*args, **kwargs)


def _assert_same_item(a, b) -> None:
    assert sorted(a.keys()) == sorted(b.keys()) == ["pos", "time_index", "x"]
    for key in a.keys():
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def _assert_same_batches(xs: List, ys: List) -> None:
    assert len(xs) == len(ys) > 0
    for a, b in zip(xs, ys):
        for key in ("x", "pos", "batch", "ptr", "time_index"):
            assert torch.equal(a[key], b[key]), key


class _Reads:
    """Records every read xarray makes from a NetCDF variable: ``(variable name, number of time steps)``."""

    def __init__(self, monkeypatch) -> None:
        from xarray.backends.netCDF4_ import NetCDF4ArrayWrapper

        self.calls: List[Tuple[str, int]] = []
        original = NetCDF4ArrayWrapper._getitem
        outer = self

        def counting(wrapper, key):
            k = key[0] if isinstance(key, tuple) and key else key
            n = len(range(*k.indices(wrapper.shape[0]))) if isinstance(k, slice) else int(np.size(k))
            outer.calls.append((wrapper.variable_name, n))
            return original(wrapper, key)

        monkeypatch.setattr(NetCDF4ArrayWrapper, "_getitem", counting)

    def of(self, name: str = "t2m") -> List[int]:
        return [n for v, n in self.calls if v == name]


@pytest.mark.parametrize("kind", ["nc", "zarr"])
def test_items_identical_to_eager_path(tmp_path, kind):
    path = _write(tmp_path, kind)
    field = _eager(path)
    lazy = _lazy(path, normalizer=NORM)
    eager = ERA5Dataset(field, NORM)
    assert len(lazy) == len(eager) == STEPS
    np.testing.assert_array_equal(lazy.lat, field.lat)
    np.testing.assert_array_equal(lazy.lon, field.lon)
    np.testing.assert_array_equal(lazy.time, field.time)
    assert (lazy.variable, lazy.units, lazy.grid.shape) == ("t2m", "K", (7, 9))
    for i in list(range(STEPS)) + [-1]:
        _assert_same_item(lazy[i], eager[i])
        np.testing.assert_array_equal(lazy.read(i), field.values[i])
    # Clipping (for splits the normalizer was not fitted on) and transforms follow ERA5Dataset's.
    narrow = MinMaxNormalizer(270.0, 280.0)
    _assert_same_item(_lazy(path, normalizer=narrow, clip=True)[3], ERA5Dataset(field, narrow, clip=True)[3])
    np.testing.assert_array_equal(lazy.load().values, field.values)


def test_cyclic_column_dropped_with_one_warning_and_checked_per_step(tmp_path):
    path = _write(tmp_path, "zarr")
    with pytest.warns(UserWarning, match="repeated longitude"):
        lazy = LazyERA5Dataset(path, normalizer=NORM)
    assert lazy.lon.tolist() == list(np.arange(-180.0, 180.0, 40.0))
    bad = _era5_dataset()
    bad["t2m"][4, ..., -1] += 3.0  # one step where "180" is not "-180"
    path = _write(tmp_path / "bad", "zarr", bad)
    lazy = _lazy(path, normalizer=NORM)
    order = np.argsort(bad["valid_time"].values)
    lazy[int(np.nonzero(order != 4)[0][0])]  # other steps read
    with pytest.raises(ValueError, match="longitudes -180 and 180, the same meridian, with different values"):
        lazy[int(np.nonzero(order == 4)[0][0])]


@pytest.mark.parametrize("kind", ["nc", "zarr"])
def test_streaming_normalizer_equals_eager_fit(tmp_path, kind):
    path = _write(tmp_path, kind)
    lazy = _lazy(path)
    step_bytes = 4 * 7 * 10
    fitted = lazy.fit_normalizer(max_bytes=2 * step_bytes)
    assert fitted == MinMaxNormalizer.fit(_eager(path)) and lazy.normalizer is fitted
    assert MinMaxNormalizer(**fitted.to_dict()) == fitted  # stored and reloaded
    _assert_same_item(lazy[2], ERA5Dataset(_eager(path), fitted)[2])
    # A subset's normaliser is that of its steps alone.
    part = _lazy(path).subset(slice(2, 7))
    assert part.fit_normalizer() == MinMaxNormalizer.fit(_eager(path).select_time(slice(2, 7)))


def test_fit_normalizer_reads_bounded_blocks(tmp_path, monkeypatch):
    path = _write(tmp_path, "nc")
    lazy = _lazy(path)
    reads = _Reads(monkeypatch)
    lazy.fit_normalizer(max_bytes=3 * 4 * 7 * 10)  # three steps of float32 values per read
    steps = reads.of()
    assert steps and max(steps) <= 3 and sum(steps) == STEPS  # never the whole variable, every step once
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        lazy.fit_normalizer(max_bytes=0)


def test_construction_reads_no_values(tmp_path, monkeypatch):
    path = _write(tmp_path, "nc")
    reads = _Reads(monkeypatch)
    lazy = _lazy(path, normalizer=NORM)
    parts = lazy.split((0.5, 0.5))
    sub = lazy.subset([1, 2])
    assert len(lazy) == STEPS and len(parts[0]) == 5 and len(sub) == 2
    assert reads.of() == []  # the coordinates only
    lazy[4]
    assert reads.of() == [1]  # one item: one time step


def test_unreadable_chunks_do_not_stop_construction(tmp_path):
    """Every chunk of the variable is garbage: the dataset is still built, selected and split, and fails only when
    an item is read; an implementation reading values up front would fail at once."""
    path = _write(tmp_path, "zarr")
    chunks = [f for f in (path / "t2m").rglob("*") if f.is_file() and not f.name.startswith(("zarr.json", ".z"))]
    assert len(chunks) == 4  # 10 steps in chunks of 3
    for f in chunks:
        f.write_bytes(b"not a chunk")
    lazy = _lazy(path, normalizer=NORM)
    train, test = lazy.split((0.8, 0.2))
    assert (len(train), len(test)) == (8, 2) and lazy.grid.shape == (7, 9)
    with pytest.raises(Exception):
        lazy[0]


@pytest.mark.parametrize("kind", ["nc", "zarr"])
def test_dataloader_workers_give_the_same_batches(tmp_path, kind):
    path = _write(tmp_path, kind)
    lazy = _lazy(path)
    lazy.fit_normalizer()  # the file is now open in this process: forked workers must open their own
    lazy[0]
    serial = list(DataLoader(lazy, batch_size=3, shuffle=False, num_workers=0))
    parallel = list(DataLoader(lazy, batch_size=3, shuffle=False, num_workers=2))
    _assert_same_batches(serial, parallel)
    eager = list(DataLoader(ERA5Dataset(_eager(path), lazy.normalizer), batch_size=3, shuffle=False))
    _assert_same_batches(serial, eager)
    # Shuffled with the same seed, workers or not: the same batches.
    shuffled = [list(DataLoader(lazy, batch_size=4, shuffle=True, num_workers=w,
                                generator=torch.Generator().manual_seed(3))) for w in (0, 2)]
    _assert_same_batches(*shuffled)


def test_no_open_handle_is_pickled_or_reused_in_another_process(tmp_path, monkeypatch):
    path = _write(tmp_path, "nc")
    lazy = _lazy(path, normalizer=NORM)
    first = lazy[5]
    assert lazy._handle is not None  # opened on first use
    assert lazy.__getstate__()["_handle"] is None
    copy = pickle.loads(pickle.dumps(lazy))  # what a spawned worker receives
    assert copy._handle is None
    _assert_same_item(copy[5], first)
    # In another process (a forked worker has the parent's object), the file is opened again.
    handle = lazy._handle
    monkeypatch.setattr(os, "getpid", lambda: -1)
    _assert_same_item(lazy[5], first)
    assert lazy._handle is not handle and lazy._handle[0] == -1


def test_time_subsets_and_splits_match_the_eager_ones(tmp_path):
    path = _write(tmp_path, "zarr")
    field = _eager(path)
    lazy = _lazy(path, normalizer=NORM)
    for index in (slice(2, 8), [7, 0, 3], np.arange(STEPS) % 3 == 0):
        part, eager = lazy.subset(index), ERA5Dataset(field.select_time(index), NORM)
        assert len(part) == len(eager)
        np.testing.assert_array_equal(part.time, eager.field.time)
        for i in range(len(part)):
            _assert_same_item(part[i], eager[i])
    for part, eager in zip(lazy.split((0.6, 0.2, 0.2)), split_by_time(field, (0.6, 0.2, 0.2))):
        np.testing.assert_array_equal(part.time, eager.time)
        np.testing.assert_array_equal(part.load().values, eager.values)
        _assert_same_item(part[-1], ERA5Dataset(eager, NORM)[-1])
    assert lazy.subset(slice(2, 8)).subset([0, -1]).time.tolist() == field.time[[2, 7]].tolist()
    with pytest.raises(ValueError, match="selects no time step"):
        lazy.subset(slice(5, 5))
    with pytest.raises(IndexError, match="outside the 10 time steps"):
        lazy.subset([10])
    with pytest.raises(ValueError, match="fractions must be positive"):
        lazy.split((0.5, 0.6))


def test_time_selection_by_label_in_a_climate_model_calendar(tmp_path):
    pytest.importorskip("cftime")
    times = xr.date_range("2000-01-01", periods=12, freq="D", calendar="360_day", use_cftime=True)
    lat, lon = np.array([60.0, 20.0, -20.0, -60.0]), np.array([0.0, 90.0, 180.0, 270.0])
    values = (280 + np.arange(12)[:, None, None] + lat[None, :, None] / 10 + lon / 1000).astype(np.float32)
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), values, {"standard_name": "air_temperature", "units": "K"})},
                    coords={"time": times, "lat": ("lat", lat, {"standard_name": "latitude"}),
                            "lon": ("lon", lon, {"standard_name": "longitude"})})
    path = tmp_path / "tas_360day.nc"
    ds.isel(time=np.random.default_rng(1).permutation(12)).to_netcdf(
        path, encoding={"time": {"units": "days since 2000-01-01", "calendar": "360_day"}})
    window = slice("2000-01-05", "2000-01-09")
    lazy = LazyERA5Dataset(path, "air_temperature", normalizer=NORM, time=window)
    field = load_era5(path, "air_temperature", time=window)
    assert len(lazy) == 5 and lazy.time.tolist() == field.time.tolist()
    for i in range(5):
        _assert_same_item(lazy[i], ERA5Dataset(field, NORM)[i])
    with pytest.raises(ValueError, match="cannot select along 'time'"):
        LazyERA5Dataset(path, time=slice(0, 3))  # numbers for dates


@pytest.mark.parametrize("as_array", [False, True])
def test_xarray_objects_as_source(tmp_path, as_array):
    path = _write(tmp_path, "zarr")
    with xr.open_zarr(path) as ds:
        lazy = _lazy(ds["t2m"] if as_array else ds, normalizer=NORM)
        eager = ERA5Dataset(_eager(ds), NORM)
        for i in (0, 9):
            _assert_same_item(lazy[i], eager[i])
        batches = list(DataLoader(lazy, batch_size=5, num_workers=2))
        _assert_same_batches(batches, list(DataLoader(eager, batch_size=5)))


def test_errors_name_the_problem_and_the_fix(tmp_path):
    path = _write(tmp_path, "nc")
    lazy = _lazy(path)
    with pytest.raises(RuntimeError, match="fit_normalizer"):
        lazy[0]
    with pytest.raises(IndexError, match="out of range for 10 time steps"):
        _lazy(path, normalizer=NORM)[10]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LazyERA5Dataset(tmp_path / "missing.nc")
    with pytest.raises(TypeError, match="source must be a path"):
        LazyERA5Dataset(3)
    with pytest.raises(ValueError, match="has no variable 'msl'"):
        LazyERA5Dataset(path, "msl")
    with pytest.raises(ValueError, match="selects no time step"):
        _lazy(path, time=slice("2030-01-01", "2030-02-01"))
    # An infinite value fails when its step is read (and in the streaming pass), naming the step; the others read.
    inf = _era5_dataset()
    inf["t2m"][2, 0, 3, 4] = np.inf
    path = _write(tmp_path / "inf", "zarr", inf)
    lazy = _lazy(path, normalizer=NORM)
    where = int(np.nonzero(np.argsort(inf["valid_time"].values) == 2)[0][0])
    lazy[(where + 1) % STEPS]
    with pytest.raises(ValueError, match="contains 1 infinite values at time step 2 of the file"):
        lazy[where]
    with pytest.raises(ValueError, match="infinite"):
        lazy.fit_normalizer()


@pytest.mark.parametrize("kind", ["nc", "zarr"])
def test_missing_values_are_missing_points_as_in_the_eager_path(tmp_path, kind):
    """Sea-surface temperature style: a land mask (NaN, written as the NetCDF _FillValue) in every step, and one
    nearly empty step, which ERA5Dataset(min_points=...) skips and drop_sparse_steps leaves out alike."""
    ds = _era5_dataset()
    land = np.zeros((7, 10), dtype=bool)
    land[2:4, 3:6] = True
    ds["t2m"] = ds["t2m"].where(~land)
    empty = int(np.argsort(ds["valid_time"].values)[6])  # the file position of the 7th step in time order
    ds["t2m"][empty, 0, 1:] = np.nan
    path = _write(tmp_path, kind, ds)
    with pytest.warns(UserWarning, match="values are missing"):
        field = load_era5(path)
    lazy = _lazy(path, min_points=20)
    with pytest.warns(UserWarning, match="values are missing"):
        fitted = lazy.fit_normalizer()
    assert fitted == MinMaxNormalizer.fit(field)
    with pytest.raises(ValueError, match=r"has 1 valid points, fewer than min_points=20: .*drop_sparse_steps"):
        lazy[6]
    counts = lazy.valid_points()
    assert counts[6] == 1 and set(np.delete(counts, 6)) == {7 * 9 - 2 * 9 + 2 - 6}  # poles are one point each
    with pytest.warns(UserWarning, match=r"1 of 10 time steps have fewer than 20 valid points"):
        eager = ERA5Dataset(field, fitted, min_points=20)
    with pytest.warns(UserWarning, match=r"1 of 10 time steps have fewer than 20 valid points"):
        usable = lazy.drop_sparse_steps()
    assert len(usable) == len(eager) == 9
    for i in range(9):
        _assert_same_item(usable[i], eager[i])  # time_index too: 0..5, 7..9
    assert [int(usable[i].time_index) for i in (5, 6)] == [5, 7]
    # Without a normaliser fitted first, drop_sparse_steps counts in a pass of its own.
    alone = _lazy(path, normalizer=fitted, min_points=20)
    with pytest.warns(UserWarning):
        assert len(alone.drop_sparse_steps()) == 9
    _assert_same_item(_lazy(path, normalizer=fitted)[6], ERA5Dataset(field, fitted)[6])  # min_points=1: an item


@pytest.mark.slow
def test_benchmark_quick_runs(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "data_stream.py"), "--quick", "--dir",
                          str(tmp_path)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| streaming alone: LazyERA5Dataset, 2 workers" in out.stdout
    assert "| in memory: ERA5Dataset, no workers |" in out.stdout
    assert "streaming / in memory:" in out.stdout
    assert not list(tmp_path.glob("*.zarr"))  # the store is deleted afterwards


@pytest.mark.parametrize("kind", ["nc", "zarr"])
def test_a_file_replaced_under_a_lazy_dataset_is_an_error_not_shifted_values(tmp_path, kind):
    import shutil

    if kind == "zarr":
        pytest.importorskip("zarr")
    ds = _era5_dataset()
    path = _write(tmp_path, kind, ds)
    norm = MinMaxNormalizer(low=200.0, high=350.0)
    lazy = _lazy(path, normalizer=norm)
    first = lazy[0].x.clone()
    lazy.close()
    # The same field with longitudes 0..360 written over it, as a re-download in another layout might be.
    other = ds.isel(longitude=slice(0, -1))
    other = other.assign_coords(longitude=other.longitude % 360).sortby("longitude")
    (shutil.rmtree if path.is_dir() else os.remove)(path)
    _write(tmp_path, kind, other)
    with pytest.raises(RuntimeError, match="changed on disk since this LazyERA5Dataset read its coordinates"):
        lazy[0]
    again = _lazy(path, normalizer=norm)[0].x  # built again: the same values, in the new file's point order
    torch.testing.assert_close(again.flatten().sort().values, first.flatten().sort().values)
