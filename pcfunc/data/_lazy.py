"""Files larger than memory: the time steps of a NetCDF file or Zarr store read one at a time, as training asks."""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._cf import (_choose_entries, _find_variable, _grid_axes, _in_degrees, _open, _time_axis, _time_kind,
                  _time_order)
from ._field import ERA5Field, MinMaxNormalizer

__all__ = ["LazyERA5Dataset"]

#: Default bound on the values one streaming read holds (:meth:`LazyERA5Dataset.fit_normalizer`, ``load``).
_BLOCK_BYTES = 64 * 2**20


class LazyERA5Dataset(torch.utils.data.Dataset):
    r"""The time steps of one variable of a NetCDF file or Zarr store, read from disk one at a time.

    The lazy counterpart of ``ERA5Dataset(load_era5(source, variable, time), normalizer)``: item ``i`` is the same
    PyG :class:`~torch_geometric.data.Data` (``pos``, ``x`` of shape ``(N, 1)``, ``time_index``), value for value,
    but construction reads only the coordinates, and ``__getitem__`` reads one time step (the chunk that holds
    it) when asked. Memory therefore does not grow with the file: one year of hourly 0.25° ERA5 (about 36 GB per
    variable) trains like a week of it.

    Files are read as :func:`~pcfunc.data.load_era5` reads them (the same rules find the variable and the axes,
    size-1 extra dimensions are dropped): time steps in time order, latitudes north first, longitudes increasing,
    a repeated meridian (cyclic point) dropped. Where :func:`~pcfunc.data.load_era5` compares the repeated
    column with the first one over the whole file, this class compares them in every step it reads and raises
    on a difference; infinite values raise when their step is read.

    Missing values (NaN, or the file's ``_FillValue``) are missing points, as in
    :class:`~pcfunc.data.ERA5Dataset`: an item holds its field's valid points only, and the normaliser ignores
    them. :class:`~pcfunc.data.ERA5Dataset` skips the steps with fewer than ``min_points`` valid points when it is
    built; here that needs a pass over the file, so :meth:`drop_sparse_steps` does it (reusing the counts of
    :meth:`fit_normalizer`'s pass), and reading such a step before raises an error that says so.

    Normalisation needs the data's range, which only a pass over the file gives: :meth:`fit_normalizer` makes
    it in one streaming pass over the time steps (bounded memory, chunk by chunk), or pass a saved one, e.g.
    ``MinMaxNormalizer(**saved)`` from :meth:`~pcfunc.data.MinMaxNormalizer.to_dict`. Time selections and
    train/test splits (:meth:`subset`, :meth:`split`) read nothing.

    With :class:`torch.utils.data.DataLoader` or :class:`torch_geometric.loader.DataLoader` and
    ``num_workers > 0``, every process opens the file itself on its first read (an open file handle is never
    pickled nor shared across a fork). Pass a path for that; an :class:`xarray.Dataset` travels to the workers
    as xarray pickles it (in-memory values are copied).

    Example::

        from torch_geometric.loader import DataLoader
        from pcfunc.data import LazyERA5Dataset, MinMaxNormalizer

        data = LazyERA5Dataset("era5_t2m_2020_hourly.zarr", variable="t2m")
        train, test = data.split((0.9, 0.1))        # contiguous blocks of time, nothing read
        norm = train.fit_normalizer()               # one pass over the training steps, chunk by chunk
        test.normalizer = norm                      # json.dump(norm.to_dict(), ...) to keep it
        loader = DataLoader(train, batch_size=8, shuffle=True, num_workers=2)

        # with missing values (e.g. SST over land): also leave out the steps with too few valid points
        train = LazyERA5Dataset("sst.nc", "sst", min_points=1024).drop_sparse_steps()

    Args:
        source: Path to a NetCDF file or Zarr store (recommended: each worker opens it), or an opened
            :class:`xarray.Dataset` / :class:`xarray.DataArray` (kept lazy if it is; an opened NetCDF file's
            handle would be shared by forked workers).
        variable (str, optional): As in :func:`~pcfunc.data.load_era5`: short name, CF standard name or long
            name; by default the file's only variable on a latitude/longitude grid, else ``"t2m"``.
        normalizer (MinMaxNormalizer, optional): Maps values to [0, 1]. Without it, items cannot be read until
            :meth:`fit_normalizer` has run (it is not fitted implicitly: that reads the whole file).
        time (slice, optional): Selection along time by label, as in :func:`~pcfunc.data.load_era5`
            (e.g. ``slice("2020-01", "2020-06")``); read from the time coordinate alone.
        transform (callable, optional): Applied to every item (e.g. :class:`~pcfunc.data.PointDropout`).
        clip (bool): Clip the normalised values to :math:`[0, 1]` (for splits other than the one the
            normalizer was fitted on). (default: ``False``)
        min_points (int): Valid points an item needs (e.g. ``VaMoH.min_encoder_points``); see
            :meth:`drop_sparse_steps`. (default: ``1``)
        select (dict, optional): One entry of each extra dimension by label, as in
            :func:`~pcfunc.data.load_era5` (e.g. ``{"pressure_level": 500}``).
        time_dim (str, optional): The dimension that counts time when it is not a CF time axis, as in
            :func:`~pcfunc.data.load_era5`.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        TypeError: ``source`` is neither a path nor an xarray object.
        ValueError: As :func:`~pcfunc.data.load_era5` for the file, the variable, its axes and ``time``; the
            selection holds no time step; or ``min_points`` is not a positive integer.

    Shapes:
        - item ``pos``: :math:`(N, 3)`, ``N`` the grid's valid points (each pole one point, see
          :class:`~pcfunc.data.LatLonGrid`); ``x``: :math:`(N, 1)`; ``time_index``: :math:`(1,)`, the step's
          index in this dataset (:meth:`subset` and :meth:`split` number from 0; :meth:`drop_sparse_steps` keeps
          it, as :class:`~pcfunc.data.ERA5Dataset` keeps the field's index of the steps it does not skip).
        - :meth:`read`: :math:`(n_\text{lat}, n_\text{lon})`.
    """

    def __init__(self, source: Union[str, Path, Any], variable: Optional[str] = None,
                 normalizer: Optional[MinMaxNormalizer] = None, time: Optional[slice] = None,
                 transform: Optional[Any] = None, clip: bool = False, min_points: int = 1,
                 select: Optional[Mapping[str, Any]] = None, time_dim: Optional[str] = None) -> None:
        from .._validation import check_positive_int
        from ._grids import LatLonGrid

        if variable is not None and not isinstance(variable, str):
            raise TypeError(f"variable must be one name (a string) or None, got {variable!r}: LazyERA5Dataset reads one "
                            "variable; for several as channels, ERA5Dataset(load_era5(source, variable=[...])) "
                            "reads them into memory")
        self._source, self._name = _as_source(source)
        self._signature = _signature(self._source)  # the file as it was read: a replaced file is an error
        self._handle: Optional[Tuple[int, Any, Any]] = None  # (pid, dataset opened here or None, array)
        self.normalizer = normalizer
        self.transform = transform
        self.clip = bool(clip)
        self.min_points = check_positive_int(min_points, "min_points")
        self._selection, self._time_dim = dict(select or {}), time_dim
        ds = self._dataset()
        try:
            self.variable = _find_variable(ds, variable, self._name)
            self._describe(ds, time)
        finally:
            if isinstance(self._source, Path):
                ds.close()
        if self._steps.size == 0:
            raise ValueError(f"time={time!r} selects no time step of {self._name}; check the selection")
        self.grid = LatLonGrid(self.lat, self.lon)
        self._index = np.arange(self._steps.size)  # each item's time_index
        self._valid: Optional[np.ndarray] = None  # valid points of each item, once a streaming pass counted them

    # -- construction: coordinates only -----------------------------------------------------------------------------
    def _dataset(self) -> Any:
        """The source as an xarray Dataset, opened from disk when it is a path (no values read)."""
        if not isinstance(self._source, Path):
            return self._source
        with warnings.catch_warnings():
            if self._handle is not None or getattr(self, "variable", None) is not None:
                warnings.simplefilter("ignore")  # undecodable times: warned once, at construction
            return _open(self._source, self._name)

    def _describe(self, ds: Any, time: Optional[slice]) -> None:
        """Axes, time steps, row/column order and chunking of the variable, as ``_read`` of ``load_era5`` finds them,
        from the coordinates alone."""
        import xarray as xr

        name, variable = self._name, self.variable
        da, t = _time_axis(ds[variable], variable, name, self._time_dim)
        la, lo = _grid_axes(da, variable, name)
        da = _in_degrees(da, la, lo, variable, name)
        self._dims, self._extra = (t, la, lo), _choose_entries(da, self._selection, (t, la, lo), variable, name)
        times = np.asarray(da[t].values)
        order = _time_order(times, name)
        steps = order
        if time is not None:
            positions = xr.DataArray(order, dims=[t], coords={t: da[t].variable[order]})
            labels = [time.start, time.stop] if isinstance(time, slice) else list(np.atleast_1d(np.asarray(time)))
            try:
                if times.dtype.kind in "iuf" and any(x is not None and not isinstance(x, (int, float, np.number))
                                                     for x in labels):
                    raise TypeError("dates given for times that are numbers")
                steps = np.atleast_1d(np.asarray(positions.sel({t: time}).values))
            except (KeyError, TypeError, ValueError) as err:
                raise ValueError(f"time={time!r} cannot select along {t!r} of {name}, whose times are "
                                 f"{_time_kind(times)} ({type(err).__name__}: {str(err)[:160]})") from None
        self._steps = np.asarray(steps, dtype=np.int64)
        self.time = times[self._steps]
        # Rows and columns in the order xarray's sortby gives load_era5 (north first, increasing longitude).
        rows = _sorted_positions(da, la, ascending=False)
        cols = _sorted_positions(da, lo, ascending=True)
        lat = np.asarray(da[la].values, dtype=np.float64)[rows]
        lon = np.asarray(da[lo].values, dtype=np.float64)[cols]
        keep, self._seam = _cyclic_columns(lon, name)
        self._rows = None if np.array_equal(rows, np.arange(rows.size)) else rows
        self._cols = None if keep is None and np.array_equal(cols, np.arange(cols.size)) else (
            cols if keep is None else cols[keep])
        self._all_cols, self._lon_sorted = cols, lon  # every column in increasing longitude: the cyclic-point check
        self.lat, self.lon = lat, (lon if keep is None else lon[keep])
        self.units = str(da.attrs.get("units", ""))
        self._time_chunk = _time_chunk(ds[variable], t)

    # -- the array, opened once per process -------------------------------------------------------------------------
    def _array(self) -> Any:
        """The variable as a lazy ``(time, lat, lon)`` DataArray in the file's order, opened in this process."""
        pid = os.getpid()
        if self._handle is None or self._handle[0] != pid:
            # A handle from another process (a forked DataLoader worker) is never used: open the file again here.
            if _signature(self._source) != self._signature:
                raise RuntimeError(f"{self._name} changed on disk since this LazyERA5Dataset read its coordinates "
                                   "(size or modification time): its grid, times or values may differ; build the "
                                   "dataset again")
            ds = self._dataset()
            da, t = _time_axis(ds[self.variable], self.variable, self._name, self._time_dim)
            da = da.isel(self._extra).transpose(*self._dims) if self._extra else da.transpose(*self._dims)
            self._handle = (pid, ds if isinstance(self._source, Path) else None, da)
        return self._handle[2]

    def close(self) -> None:
        """Close the file if this process opened it (it is opened again on the next read)."""
        if self._handle is not None and self._handle[0] == os.getpid() and self._handle[1] is not None:
            self._handle[1].close()
        self._handle = None

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_handle"] = None  # never pickle an open file: each worker opens its own
        return state

    # -- reading ----------------------------------------------------------------------------------------------------
    def _arrange(self, raw: Any, steps: np.ndarray) -> np.ndarray:
        """Raw values ``(n, lat, lon)`` in the file's order to float32, north first, increasing longitude, without a
        repeated meridian; checks values as ``load_era5`` does (NaN: missing, kept)."""
        values = np.asarray(raw, dtype=np.float32)
        if self._rows is not None:
            values = values[:, self._rows]
        for i, j in self._seam:  # the repeated meridian must hold the first one's values, step by step
            a, b = values[:, :, self._all_cols[i]], values[:, :, self._all_cols[j]]
            largest = np.abs(a).max(axis=1)
            tol = 1e-5 * np.where(largest > 1.0, largest, 1.0)  # as load_era5: max(1, |a|.max()), 1 where NaN
            same = np.isclose(a, b, rtol=0.0, atol=tol[:, None], equal_nan=True).all(axis=1)
            if not same.all():
                k = int(np.nonzero(~same)[0][0])
                lon = self._lon_sorted
                raise ValueError(f"{self._name} has longitudes {lon[i]:g} and {lon[j]:g}, the same meridian, with "
                                 f"different values at time step {int(steps[k])} of the file (largest difference "
                                 f"{float(np.nanmax(np.abs(a[k] - b[k]))):g}); keep one of them")
        if self._cols is not None:
            values = values[:, :, self._cols]
        if np.isinf(values).any():
            bad = np.isinf(values)
            k = int(np.nonzero(bad.any((1, 2)))[0][0])
            raise ValueError(f"{self.variable!r} in {self._name} contains {int(bad[k].sum())} infinite values at "
                             f"time step {int(steps[k])} of the file; mask them (NaN marks a missing point) or fill "
                             "them first")
        return np.ascontiguousarray(values)

    def read(self, i: int) -> np.ndarray:
        """The physical values of item ``i``: one time step read from disk, shape ``(n_lat, n_lon)``, float32.

        Raises:
            IndexError: ``i`` is out of range.
            ValueError: The step holds infinite values, or a repeated meridian with other values than the first.
        """
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"index {i!r} out of range for {n} time steps")
        step = self._steps[int(i)]
        raw = self._array().isel({self._dims[0]: int(step)}).values
        return self._arrange(np.asarray(raw)[None], self._steps[[int(i)]])[0]

    def _blocks(self, max_bytes: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """``(item indices, values)`` of every item, a block of whole file chunks along time at a time, each block
        holding at most ``max_bytes`` of values (or one step)."""
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer (bytes per read), got {max_bytes!r}")
        step_bytes = 4 * int(np.prod(self._array().shape[1:]))
        size = max(1, int(max_bytes) // step_bytes)
        chunk = self._time_chunk
        if chunk and chunk <= size:
            size = (size // chunk) * chunk  # whole chunks: each is read (and decompressed) once
        order = np.argsort(self._steps, kind="stable")
        steps = self._steps[order]
        block = steps // size
        cuts = np.flatnonzero(np.diff(block)) + 1
        t = self._dims[0]
        for items, pos in zip(np.split(order, cuts), np.split(steps, cuts)):
            contiguous = bool(np.all(np.diff(pos) == 1))
            index = slice(int(pos[0]), int(pos[-1]) + 1) if contiguous else pos
            raw = self._array().isel({t: index}).values
            yield items, self._arrange(raw, pos)

    def _valid_counts(self, values: np.ndarray) -> np.ndarray:
        """Valid points of each field ``(n, lat, lon)``, as :class:`~pcfunc.data.ERA5Dataset` counts them."""
        finite = torch.from_numpy(np.isfinite(values).astype(np.float32))[..., None]
        return (self.grid._gather(finite)[..., 0] > 1.0 - 1e-6).sum(-1).numpy()

    def _scan(self, max_bytes: int) -> Tuple[float, float]:
        """One streaming pass: the smallest and largest valid value (``nan`` if none), and each item's valid points
        (kept, for :meth:`drop_sparse_steps`); warns as :func:`~pcfunc.data.load_era5` does of missing values."""
        low, high, missing, total = np.inf, -np.inf, 0, 0
        valid = np.zeros(len(self), dtype=np.int64)
        for items, values in self._blocks(max_bytes):
            nan = np.isnan(values)
            n = int(nan.sum())
            if n < values.size:
                low, high = min(low, float(np.min(values, where=~nan, initial=np.inf))), \
                    max(high, float(np.max(values, where=~nan, initial=-np.inf)))
            missing, total = missing + n, total + values.size
            valid[items] = self._valid_counts(values) if n else self.grid.num_points
        self._valid = valid
        if missing:
            warnings.warn(f"{self.variable!r} in {self._name}: {missing} of {total} values are missing (NaN or the "
                          "file's _FillValue, e.g. sea-surface temperature over land); they are left out of each "
                          "field's point cloud and of the normalisation", stacklevel=3)
        return (low, high) if missing < total else (float("nan"), float("nan"))

    def fit_normalizer(self, max_bytes: int = _BLOCK_BYTES) -> MinMaxNormalizer:
        r"""The :class:`MinMaxNormalizer` of this dataset's time steps, in one streaming pass; also set as
        ``normalizer``.

        Equal to ``MinMaxNormalizer.fit(load_era5(...))`` of the same steps (minimum and maximum are exact; missing
        values are ignored), but the steps are read a block of whole file chunks at a time, at most ``max_bytes`` of
        values in memory. Fit it on the training split only and pass it to the others
        (:meth:`~pcfunc.data.MinMaxNormalizer.to_dict` keeps it: ``MinMaxNormalizer(**saved)``). The pass also
        counts each step's valid points, for :meth:`drop_sparse_steps`.

        Args:
            max_bytes (int): Largest block of float32 values read at once; the pass's temporaries take a few times
                this. (default: 64 MiB)

        Returns:
            MinMaxNormalizer: ``low`` the smallest value, ``high`` the largest.

        Raises:
            ValueError: ``max_bytes`` is not a positive integer; a step holds infinite values; every value is
                missing, or all are equal.
        """
        low, high = self._scan(max_bytes)
        if not np.isfinite(low):
            raise ValueError(f"{self._name} has no value to fit the bounds to: every value of the {len(self)} steps "
                             "is missing")
        self.normalizer = MinMaxNormalizer(low, high)
        return self.normalizer

    def valid_points(self, max_bytes: int = _BLOCK_BYTES) -> np.ndarray:
        """The valid (not missing) points of each item, as counted by the last streaming pass (:meth:`fit_normalizer`)
        or by one pass now (at most ``max_bytes`` of values in memory).

        Returns:
            numpy.ndarray: ``(len(self),)`` integers; the grid's ``num_points`` where nothing is missing.
        """
        if self._valid is None:
            self._scan(max_bytes)
        return self._valid.copy()

    def drop_sparse_steps(self, max_bytes: int = _BLOCK_BYTES) -> "LazyERA5Dataset":
        """This dataset without the steps with fewer than ``min_points`` valid points, which
        :class:`~pcfunc.data.ERA5Dataset` skips; one warning names their times. Items keep their ``time_index``.

        Counts come from the last streaming pass (:meth:`fit_normalizer`) or from one pass now.

        Returns:
            LazyERA5Dataset: The usable steps (``self`` when all are).

        Raises:
            ValueError: No step has ``min_points`` valid points.
        """
        counts = self.valid_points(max_bytes)
        ok = counts >= self.min_points
        if ok.all():
            return self
        bad = np.nonzero(~ok)[0]
        times = ", ".join(f"{self.time[j]} ({int(counts[j])} points)" for j in bad[:5])
        warnings.warn(f"{bad.size} of {ok.size} time steps have fewer than {self.min_points} valid points and are "
                      f"skipped: {times}{', ...' if bad.size > 5 else ''}", stacklevel=2)
        if not ok.any():
            raise ValueError(f"no time step of {self._name} has {self.min_points} valid points: the data are missing "
                             "(NaN) almost everywhere, or min_points is larger than the grid")
        return self._select(np.nonzero(ok)[0], renumber=False)

    def load(self, max_bytes: int = _BLOCK_BYTES) -> ERA5Field:
        """This dataset's time steps in memory, as :func:`~pcfunc.data.load_era5` returns them (read in blocks of at
        most ``max_bytes``, so only the result itself grows with the selection): take a :meth:`subset` first.

        Returns:
            ERA5Field: ``values`` of shape ``(len(self), n_lat, n_lon)``, float32 (NaN where missing), with the
            same axes, times, variable and units as the items.
        """
        out = np.empty((len(self),) + self.grid.shape, dtype=np.float32)
        for items, values in self._blocks(max_bytes):
            out[items] = values
        return ERA5Field(values=out, lat=self.lat.copy(), lon=self.lon.copy(), time=self.time.copy(),
                         variable=self.variable, units=self.units)

    # -- selections -------------------------------------------------------------------------------------------------
    def _select(self, picked: np.ndarray, renumber: bool) -> "LazyERA5Dataset":
        out = copy.copy(self)
        out._handle = None
        out._steps, out.time = self._steps[picked], self.time[picked]
        out._index = np.arange(picked.size) if renumber else self._index[picked]
        out._valid = None if self._valid is None else self._valid[picked]
        return out

    def subset(self, index: Union[slice, Sequence[int], np.ndarray]) -> "LazyERA5Dataset":
        """The items at ``index`` (a slice, integer indices or a boolean mask), without reading values.

        The result keeps ``normalizer``, ``transform``, ``clip`` and ``min_points`` and numbers its items from 0
        (their ``time_index``), as ``ERA5Dataset(field.select_time(index))`` does.

        Raises:
            IndexError: An index is out of range, or a mask has the wrong length.
            ValueError: The selection is empty.
        """
        positions = np.arange(len(self))
        try:
            picked = positions[index] if isinstance(index, slice) else positions[np.asarray(index)]
        except IndexError as err:
            raise IndexError(f"index selects outside the {len(self)} time steps ({err})") from None
        picked = np.atleast_1d(picked)
        if picked.dtype.kind not in "iu":
            raise IndexError(f"index must be a slice, integers or a boolean mask, got dtype {picked.dtype}")
        if picked.size == 0:
            raise ValueError(f"index {index!r} selects no time step of {len(self)}")
        return self._select(picked, renumber=True)

    def split(self, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Tuple["LazyERA5Dataset", ...]:
        """Chronological, contiguous parts of the time steps (e.g. train / validation / test), as
        :func:`~pcfunc.data.split_by_time` makes them of a loaded field; nothing is read.

        Raises:
            ValueError: ``fractions`` are not positive or do not sum to 1, or a part would get no step.
        """
        f = np.asarray(fractions, dtype=np.float64)
        if f.ndim != 1 or f.size < 1 or np.any(f <= 0) or abs(f.sum() - 1.0) > 1e-6:
            raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)!r}")
        T = len(self)
        ends = np.round(np.cumsum(f) * T).astype(int)
        starts = np.concatenate(([0], ends[:-1]))
        if np.any(ends - starts < 1):
            raise ValueError(f"{T} time steps cannot be split into {tuple(fractions)!r} with a step in each part")
        order = _time_order(np.asarray(self.time), self._name)
        return tuple(self.subset(order[s:e]) for s, e in zip(starts, ends))

    # -- Dataset ----------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._steps.size)

    def __getitem__(self, i: int) -> Any:
        if self.normalizer is None:
            raise RuntimeError("LazyERA5Dataset has no normalizer: call fit_normalizer() (one streaming pass over the "
                               "time steps; on the training split) or pass normalizer=, e.g. "
                               "MinMaxNormalizer(**saved) of a saved MinMaxNormalizer.to_dict()")
        if not isinstance(self.normalizer, MinMaxNormalizer):
            raise TypeError(f"normalizer must be a MinMaxNormalizer, got {type(self.normalizer).__name__}")
        values = self.read(i)
        data = self.grid.to_data(self.normalizer.transform(values, clip=self.clip), drop_missing=True)
        if data.pos.size(0) < self.min_points:
            raise ValueError(f"time step {self.time[int(i)]} (item {int(i)}) has {data.pos.size(0)} valid points, "
                             f"fewer than min_points={self.min_points}: leave such steps out first with "
                             "data = data.drop_sparse_steps() (after fit_normalizer(), it reads nothing more)")
        data.time_index = torch.tensor([int(self._index[int(i)])])
        return self.transform(data) if self.transform is not None else data

    def __repr__(self) -> str:
        return (f"LazyERA5Dataset({self._name!r}, variable={self.variable!r}, steps={len(self)}, "
                f"grid={self.grid.shape}, normalizer={self.normalizer!r})")


def _signature(source: Any) -> Any:
    """What identifies a file's state: its size and modification time (for a Zarr directory, those of every file
    in it); ``None`` for an in-memory dataset."""
    if not isinstance(source, Path):
        return None
    if source.is_dir():
        return tuple(sorted((str(p.relative_to(source)), p.stat().st_size, p.stat().st_mtime_ns)
                            for p in source.rglob("*") if p.is_file()))
    st = source.stat()
    return st.st_size, st.st_mtime_ns


def _as_source(source: Any) -> Tuple[Any, str]:
    """``(Path or xarray.Dataset, name for messages)``."""
    import xarray as xr

    if isinstance(source, xr.DataArray):
        return source.to_dataset(name=source.name if source.name is not None else "variable"), "dataarray"
    if isinstance(source, xr.Dataset):
        return source, "dataset"
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path to a NetCDF file or Zarr store, or an xarray Dataset/DataArray, "
                        f"got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"source {str(path)!r} does not exist")
    return path, str(path)


def _sorted_positions(da: Any, dim: str, ascending: bool) -> np.ndarray:
    """Positions along ``dim`` in the order ``da.sortby(dim, ascending)`` gives (computed on the coordinate alone)."""
    import xarray as xr

    proxy = xr.DataArray(np.arange(da.sizes[dim]), dims=[dim], coords={dim: da[dim].variable})
    return np.asarray(proxy.sortby(dim, ascending=ascending).values, dtype=np.int64)


def _cyclic_columns(lon: np.ndarray, name: str) -> Tuple[Optional[np.ndarray], List[Tuple[int, int]]]:
    """Columns to keep of increasing longitudes without repeats modulo 360 (``None``: all), and the ``(first,
    repeat)`` pairs, checked as each step is read; warns once as ``load_era5`` does."""
    wrapped = np.round(np.remainder(lon, 360.0), 6) % 360.0
    first: Dict[float, int] = {}
    pairs = []
    for j, w in enumerate(wrapped):
        i = first.setdefault(float(w), j)
        if i != j:
            pairs.append((i, j))
    if not pairs:
        return None, []
    warnings.warn(f"{name}: dropped {len(pairs)} repeated longitude column(s) "
                  f"({', '.join(f'{lon[j]:g}' for _, j in pairs)}, the same meridian as another column: a cyclic "
                  "point; checked equal to it as each time step is read)", stacklevel=4)
    return np.setdiff1d(np.arange(lon.size), [j for _, j in pairs]), pairs


def _time_chunk(variable: Any, t: str) -> Optional[int]:
    """The length of the file's chunks along time (``None``: not chunked, or unknown)."""
    enc = getattr(variable, "encoding", {}) or {}
    preferred = enc.get("preferred_chunks") or {}
    if t in preferred:
        return int(preferred[t])
    for key in ("chunks", "chunksizes"):
        sizes = enc.get(key)
        if sizes is not None and t in variable.dims and len(sizes) == variable.ndim:
            return int(sizes[list(variable.dims).index(t)])
    return None
