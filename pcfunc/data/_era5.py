"""Reading ERA5 fields as users download them from the Copernicus Climate Data Store (NetCDF or Zarr)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._cf import (_choose_entries, _find_variable, _grid_axes, _in_degrees, _open, _time_axis, _time_kind,
                  _time_order)

__all__ = ["ERA5_ATTRIBUTION", "ERA5Field", "load_era5", "load_era5_sample", "MinMaxNormalizer", "split_by_time"]


@dataclass(frozen=True)
class ERA5Field:
    """One variable of ERA5 (or of any CF file on a regular lat/lon grid) in physical units, or several on one grid as
    the channels of one function (winds ``u10`` and ``v10``, temperature with pressure).

    Times are kept as xarray decodes them, so that every CF calendar works:

    * ``numpy.datetime64`` for the ``standard``/``gregorian`` and ``proleptic_gregorian`` calendars (ERA5, most
      observations) when the dates fit ``datetime64[ns]`` (years 1678 to 2262);
    * a 1-D ``object`` array of :class:`cftime.datetime` of one calendar otherwise: ``360_day``,
      ``noleap``/``365_day``, ``all_leap``, ``julian`` (climate models), or standard dates outside that range;
    * the file's numbers (int or float) when the time axis is not decoded (no CF ``units`` such as
      ``"days since 2000-01-01"``).

    Each kind sorts, compares and prints (``str(field.time[0])``) on its own; :attr:`calendar` names it.

    Attributes:
        values (numpy.ndarray): Shape ``(T, n_lat, n_lon)`` for one variable, ``(T, n_lat, n_lon, C)`` for ``C``
            variables (channels last), float32, in ``units``.
        lat (numpy.ndarray): Latitudes in degrees, north first.
        lon (numpy.ndarray): Longitudes in degrees, as in the file (0..360 or -180..180), increasing.
        time (numpy.ndarray): The ``T`` times, in time order when read by :func:`load_era5`: ``datetime64``,
            ``cftime`` datetimes or numbers (see above).
        variable (str or tuple of str): The variable's name in the file, e.g. ``"t2m"`` or ``"tas"``; a tuple of
            ``C`` names, one per channel, for several.
        units (str or tuple of str): Units from the file's attributes (``""`` if absent); a tuple, one per channel,
            for several variables.
    """

    values: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    time: np.ndarray
    variable: Union[str, Tuple[str, ...]]
    units: Union[str, Tuple[str, ...]] = ""

    def __post_init__(self) -> None:
        several = not isinstance(self.variable, str)
        if several:
            object.__setattr__(self, "variable", tuple(str(v) for v in self.variable))
            units = (self.units,) * len(self.variable) if isinstance(self.units, str) else tuple(self.units)
            object.__setattr__(self, "units", tuple(str(u) for u in units))
            if len(self.units) != len(self.variable):
                raise ValueError(f"units must give one entry per variable ({len(self.variable)}), got {self.units!r}")
        expected = 4 if several else 3
        if np.ndim(self.values) != expected or (several and np.shape(self.values)[-1] != len(self.variable)):
            raise ValueError(f"values must have shape (T, n_lat, n_lon{', C' if several else ''})"
                             f"{f' with C = {len(self.variable)} variables' if several else ''}, got "
                             f"{np.shape(self.values)} for variable={self.variable!r}")

    @property
    def variables(self) -> Tuple[str, ...]:
        """tuple of str: The names of the channels, ``(variable,)`` for one variable."""
        return (self.variable,) if isinstance(self.variable, str) else tuple(self.variable)

    @property
    def channel_units(self) -> Tuple[str, ...]:
        """tuple of str: The units of each channel."""
        return (self.units,) if isinstance(self.units, str) else tuple(self.units)

    @property
    def num_channels(self) -> int:
        """int: ``C``, 1 for one variable and the number of variables otherwise."""
        return len(self.variables)

    @property
    def shape(self) -> Tuple[int, int]:
        """``(n_lat, n_lon)``."""
        return int(self.lat.size), int(self.lon.size)

    @property
    def calendar(self) -> str:
        """The CF calendar of ``time``: ``"proleptic_gregorian"`` for ``datetime64`` (NumPy's calendar, equal
        to ``standard`` after 1582-10-15), the calendar of ``cftime`` datetimes (e.g. ``"360_day"``,
        ``"noleap"``), ``""`` for numbers or no steps."""
        t = np.asarray(self.time)
        if t.dtype.kind == "M":
            return "proleptic_gregorian"
        if t.dtype == object and t.size:
            return str(getattr(t.flat[0], "calendar", "") or "")
        return ""

    def subsample(self, stride: Union[int, Tuple[int, int]]) -> "ERA5Field":
        """Every ``stride``-th latitude and longitude, keeping both poles when the grid has them.

        GASP and VaMoH use ``stride=16`` on the 0.25° grid (721 x 1440 -> 46 x 90); ``stride=4`` on
        the 1° grid gives the same 4° grid.
        """
        s_lat, s_lon = (stride, stride) if isinstance(stride, int) else stride
        for name, s in (("stride", s_lat), ("stride", s_lon)):
            if isinstance(s, bool) or not isinstance(s, int) or s < 1:
                raise ValueError(f"{name} must be a positive integer or a pair of them, got {stride!r}")
        if (self.lat.size - 1) % s_lat:
            raise ValueError(f"stride {s_lat} does not divide the {self.lat.size - 1} latitude intervals: "
                             "the last latitude (a pole on global grids) would be lost")
        if self.lon.size % s_lon:
            raise ValueError(f"stride {s_lon} does not divide the {self.lon.size} longitudes")
        return replace(self, values=np.ascontiguousarray(self.values[:, ::s_lat, ::s_lon]),
                       lat=self.lat[::s_lat].copy(), lon=self.lon[::s_lon].copy())

    def regrid(self, lat: Any, lon: Any, method: str = "bilinear") -> "ERA5Field":
        """The field on another lat/lon grid, of any resolution (e.g. 0.25° to 3°, which no stride reaches).

        Every time step goes through :func:`pcfunc.data.regrid` (computed in float64): ``"bilinear"`` or
        ``"nearest"`` interpolation, or ``"conservative"`` area-weighted remapping (meant for coarsening;
        keeps the area-weighted global mean). The new axes are stored as an :class:`ERA5Field` keeps them,
        latitudes north first and longitudes increasing, whatever their order in the arguments.

        Args:
            lat (array): New latitudes in degrees, strictly monotone, in [-90, 90].
            lon (array): New longitudes in degrees, distinct modulo 360.
            method (str): ``"bilinear"``, ``"nearest"`` or ``"conservative"``. (default: ``"bilinear"``)

        Returns:
            ERA5Field: ``values`` of shape ``(T, len(lat), len(lon)[, C])``, float32; same time, variables and units.
        """
        from ._regrid import regrid

        new_lat, new_lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
        v = torch.as_tensor(self.values, dtype=torch.float64)
        channels = v.dim() == 4
        if channels:  # (T, lat, lon, C) -> (T, C, lat, lon): every channel its own field
            v = v.permute(0, 3, 1, 2)
        out = regrid(v, self.lat, self.lon, new_lat, new_lon, method)
        if channels:
            out = out.permute(0, 2, 3, 1)
        rows, cols = np.argsort(-new_lat, kind="stable"), np.argsort(new_lon, kind="stable")
        values = out.numpy()[:, rows][:, :, cols].astype(np.float32)
        return replace(self, values=np.ascontiguousarray(values), lat=new_lat[rows].copy(), lon=new_lon[cols].copy())

    def region(self, lat: Optional[Tuple[float, float]] = None,
               lon: Optional[Tuple[float, float]] = None) -> "ERA5Field":
        """The points inside a latitude/longitude box (edges included), e.g. North America from a global file.

        Args:
            lat (pair of float, optional): ``(south, north)`` in degrees; all latitudes by default.
            lon (pair of float, optional): ``(west, east)`` in degrees, the box running east from ``west`` to
                ``east`` (``(350, 10)`` or ``(-10, 10)`` crosses 0°, ``(150, 210)`` or ``(150, -150)`` crosses
                180°); all longitudes by default. Longitudes are kept as the file writes them (0..360 or
                -180..180), or in the other convention when the box crosses the first one's seam, so that
                they increase.

        Returns:
            ERA5Field: The box's values ``(T, n_lat', n_lon')`` with its axes; same times, variable and units.

        Raises:
            ValueError: if a bound is not finite, ``south > north``, or the box holds no grid point.
        """
        from ._latlon_axes import _in_convention

        rows = np.ones(self.lat.size, dtype=bool)
        if lat is not None:
            south, north = (float(v) for v in lat)
            if not (np.isfinite(south) and np.isfinite(north)) or south > north:
                raise ValueError(f"lat must be (south, north) with south <= north, got {lat!r}")
            rows = (self.lat >= south - 1e-9) & (self.lat <= north + 1e-9)
        cols = np.arange(self.lon.size)
        new_lon = self.lon.astype(np.float64)
        if lon is not None:
            west, east = (float(v) for v in lon)
            if not (np.isfinite(west) and np.isfinite(east)):
                raise ValueError(f"lon must be (west, east) in degrees, got {lon!r}")
            width = east - west if 0 < east - west <= 360 else np.mod(east - west, 360.0)
            offset = np.mod(self.lon.astype(np.float64) - west, 360.0)
            offset = np.where(offset > 360.0 - 1e-9, 0.0, offset)
            cols = np.nonzero(offset <= width + 1e-9)[0]
            cols = cols[np.argsort(offset[cols], kind="stable")]
            new_lon = _in_convention(west + offset[cols], self.lon) if cols.size else offset[cols]
        if not rows.any() or cols.size == 0:
            raise ValueError(f"the box lat={lat!r}, lon={lon!r} holds no point of the grid (latitudes "
                             f"{float(self.lat.min()):g} to {float(self.lat.max()):g}, longitudes "
                             f"{float(self.lon.min()):g} to {float(self.lon.max()):g})")
        values = self.values[:, rows][:, :, cols]
        return replace(self, values=np.ascontiguousarray(values), lat=self.lat[rows].copy(), lon=new_lon.copy())

    def to_xarray(self) -> Any:
        """The field as an :class:`xarray.DataArray` named ``variable``, with dimensions ``time``,
        ``latitude`` and ``longitude``, their coordinates (CF ``units`` and ``standard_name``), and ``units``;
        :func:`load_era5` reads it back unchanged. With several variables, an :class:`xarray.Dataset` of one such
        array per variable (``load_era5(ds, variable=field.variable)`` reads it back)."""
        import xarray as xr

        coords = {"time": ("time", np.asarray(self.time), {"standard_name": "time"}),
                  "latitude": ("latitude", self.lat, {"units": "degrees_north", "standard_name": "latitude"}),
                  "longitude": ("longitude", self.lon, {"units": "degrees_east", "standard_name": "longitude"})}
        dims = ("time", "latitude", "longitude")
        values = self.values if isinstance(self.variable, str) else np.moveaxis(self.values, -1, 0)
        arrays = [xr.DataArray(v, dims=dims, coords=coords, name=name, attrs={"units": u} if u else {})
                  for v, name, u in zip(values[None] if isinstance(self.variable, str) else values, self.variables,
                                        self.channel_units)]
        return arrays[0] if isinstance(self.variable, str) else xr.merge(arrays)

    def select_time(self, index: Union[slice, Sequence[int], np.ndarray]) -> "ERA5Field":
        """The steps at ``index`` (a slice, integer indices or a boolean mask)."""
        return replace(self, values=self.values[index], time=self.time[index])


def load_era5(
    source: Union[str, Path, Any],
    variable: Optional[Union[str, Sequence[str]]] = None,
    time: Optional[slice] = None,
    select: Optional[Mapping[str, Any]] = None,
    time_dim: Optional[str] = None,
) -> ERA5Field:
    """Read one variable of an ERA5 file from the Climate Data Store, or of any CF NetCDF/Zarr on a lat/lon grid; or
    several variables of one grid as the channels of one field (``variable=["u10", "v10"]``).

    Accepts NetCDF files (``.nc``; the new CDS names the time dimension
    ``valid_time``, the old one ``time``), Zarr stores (a ``.zarr`` directory)
    or an opened :class:`xarray.Dataset`. Latitudes may be north- or
    south-first and longitudes 0..360 or -180..180, at any resolution; the
    result is north-first with increasing longitudes, and in time order. Size-1
    extra dimensions (e.g. ``expver``, ``number``, ``height``) are dropped; of a
    longer one (``pressure_level``, ensemble ``number``) ``select`` picks one
    entry by label, and without it the error lists each with its labels. A
    repeated meridian (the cyclic point many tools add: 360 beside 0, 180
    beside -180) is dropped with one warning when its values equal the first
    column's; with other values it is an error naming both longitudes.

    Files from other sources (CMIP, CORDEX on regular grids, reanalyses, observations) work too:

    * Axes are found by name (``latitude``/``lat``, ``longitude``/``lon``, ``valid_time``/``time``, any case) or,
      under other names, by CF attributes: ``standard_name`` (``"latitude"``, ``"longitude"``, ``"time"``),
      ``units`` (``"degrees_north"``, ``"degrees_east"``, ``"days since ..."``) or ``axis`` (``"Y"``, ``"X"``,
      ``"T"``). A scalar time coordinate (one step) becomes a time axis of size 1.
    * Times in every CF calendar (``standard``/``gregorian``, ``proleptic_gregorian``, ``julian``, ``360_day``,
      ``noleap``/``365_day``, ``all_leap``): ``datetime64`` or ``cftime`` datetimes, see :class:`ERA5Field`.
      Times xarray cannot decode are kept as numbers, with a warning.
    * ``variable`` is a short name, a CF ``standard_name`` or a ``long_name`` (exact, ignoring case; short names
      first). Without it, the only variable on a latitude/longitude grid is read (cell bounds such as
      ``lat_bnds`` do not count), else ``t2m``.

    Args:
        source: Path to a NetCDF file or Zarr store, an :class:`xarray.Dataset`, or an :class:`xarray.DataArray`
            (the variable itself; ``variable`` then names it if it has no name).
        variable (str, optional): Short name (``"t2m"``, ``"tas"``, ``"msl"``, ...), CF standard name
            (``"air_temperature"``) or long name (``"2 metre temperature"``) of the variable. By default the
            file's only variable on a latitude/longitude grid, else ``"t2m"``. A list of names reads each (with
            the same ``time``, ``select`` and ``time_dim``) as one channel of the field; they must share the grid
            and the time steps. (default: ``None``)
        time (slice, optional): Selection along time, by label, in the file's calendar (e.g.
            ``slice("2020-01", "2020-06")``; ``"2000-02-30"`` is a date of the ``360_day`` calendar), or by number
            when the times are not decoded.
        select (dict, optional): One entry of each extra dimension by label, e.g.
            ``{"pressure_level": 500, "number": 0}`` (by position for a dimension without coordinate values).
        time_dim (str, optional): The dimension that counts time when it is not a CF time axis, e.g. a ``month``
            numbered 1..12; its labels become ``ERA5Field.time`` (numbers). (default: found by name or CF
            attributes)

    Returns:
        ERA5Field: The values ``(T, n_lat, n_lon)`` in the file's units; ``variable`` is the name in the file. For
        a list of variables, ``(T, n_lat, n_lon, C)``, and ``variable`` and ``units`` are tuples of the ``C``
        names and units.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        TypeError: ``variable`` is neither a string, a list of strings nor ``None``.
        ValueError: The file is not readable; ``variable`` matches no variable (the message lists what the file
            has) or several (it lists them); ``variable`` is ``None`` and several variables are on a lat/lon grid
            (it lists each with its standard_name, long_name and units); the variable has no lat/lon/time
            coordinates, is on a rotated or curvilinear grid (2-D latitude/longitude), has extra dimensions with
            several entries that ``select`` does not choose (the message lists them with their labels), ``select``
            names a dimension the variable lacks or a label it lacks, or the variable contains infinite values
            (NaN, or the file's ``_FillValue``, marks a missing point: kept as NaN, with a warning); ``time``
            cannot select along the file's time axis; or the file repeats a meridian with different values. For a
            list of variables: it is empty or names one variable twice, or the variables differ in grid or time
            steps (the message names the two and what differs).
    """
    import xarray as xr

    several = variable is not None and not isinstance(variable, str)
    if several:
        if not isinstance(variable, (list, tuple)) or not all(isinstance(v, str) for v in variable):
            raise TypeError(f"variable must be a string, a list of strings or None, got {variable!r}")
        if not variable:
            raise ValueError("variable is an empty list: name at least one variable")
        if isinstance(source, xr.DataArray):
            raise ValueError("variable lists several variables, but source is one DataArray: pass the Dataset")
    if isinstance(source, xr.DataArray):
        key = str(source.name) if source.name is not None else (variable or "values")
        if variable is not None and variable != key:
            # A name given for an unnamed or differently named array: it is the array itself.
            key = variable
        source, variable = source.to_dataset(name=key), key
    opened = not isinstance(source, xr.Dataset)
    if not opened:
        ds, name = source, "dataset"
    else:
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise FileNotFoundError(f"source {name!r} does not exist")
        ds = _open(path, name)
    try:
        if not several:
            return _read(ds, _find_variable(ds, variable, name), time, name, select, time_dim)
        keys = [_find_variable(ds, v, name) for v in variable]
        if len(set(keys)) < len(keys):
            raise ValueError(f"variable {list(variable)!r} names one variable of {name} twice ({keys})")
        return _stack([_read(ds, k, time, name, select, time_dim) for k in keys], name)
    finally:
        if opened:
            ds.close()


def _stack(fields: Sequence[ERA5Field], name: str) -> ERA5Field:
    """Fields of one grid and time steps as the channels of one :class:`ERA5Field`."""
    from ._cf import _same_times

    first = fields[0]
    for f in fields[1:]:
        what = ("latitudes" if f.lat.shape != first.lat.shape or not np.allclose(f.lat, first.lat, atol=1e-6) else
                "longitudes" if f.lon.shape != first.lon.shape or not np.allclose(f.lon, first.lon, atol=1e-6) else
                "time steps" if not _same_times(f.time, first.time) else None)
        if what is not None:
            raise ValueError(f"{first.variable!r} and {f.variable!r} in {name} have different {what} "
                             f"({len(getattr(first, what[:3] if what != 'time steps' else 'time'))} against "
                             f"{len(getattr(f, what[:3] if what != 'time steps' else 'time'))}, or other values): "
                             "variables of one field must share the grid and the times; regrid or select first")
    return ERA5Field(values=np.ascontiguousarray(np.stack([f.values for f in fields], axis=-1)), lat=first.lat,
                     lon=first.lon, time=first.time, variable=tuple(f.variable for f in fields),
                     units=tuple(f.units for f in fields))


def _read(ds: Any, variable: str, time: Optional[slice], name: str, select: Optional[Mapping[str, Any]] = None,
          time_dim: Optional[str] = None) -> ERA5Field:
    """The :class:`ERA5Field` of ``ds[variable]`` (see :func:`load_era5`)."""
    da, t = _time_axis(ds[variable], variable, name, time_dim)
    la, lo = _grid_axes(da, variable, name)
    da = _in_degrees(da, la, lo, variable, name)
    da = da.isel(_choose_entries(da, select, (t, la, lo), variable, name)).transpose(t, la, lo)
    times = np.asarray(da[t].values)
    order = _time_order(times, name)
    if np.any(order != np.arange(order.size)):
        da = da.isel({t: order})
    ordered = times[order]
    if ordered.size > 1 and (repeated := np.flatnonzero(np.asarray(ordered[1:] == ordered[:-1], dtype=bool))).size:
        shown = ", ".join(str(ordered[i]) for i in repeated[:3]) + (", ..." if repeated.size > 3 else "")
        raise ValueError(f"{variable!r} in {name} repeats {repeated.size} time step(s) ({shown}): a file "
                         f"concatenated twice? Keep one of each, e.g. ds = ds.drop_duplicates({t!r})")
    if time is not None:
        labels = [time.start, time.stop] if isinstance(time, slice) else list(np.atleast_1d(np.asarray(time)))
        try:
            if times.dtype.kind in "iuf" and any(x is not None and not isinstance(x, (int, float, np.number))
                                                 for x in labels):
                raise TypeError("dates given for times that are numbers")  # pandas may select nothing instead
            da = da.sel({t: time})
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"time={time!r} cannot select along {t!r} of {name}, whose times are "
                             f"{_time_kind(times)} ({type(err).__name__}: {str(err)[:160]})") from None
        if t not in da.dims:  # a single label
            da = da.expand_dims(t)
        if da.sizes[t] == 0:
            raise ValueError(f"time={time!r} selects no time step of {name}, whose times run from {ordered[0]} to "
                             f"{ordered[-1]}")
    da = da.sortby(la, ascending=False).sortby(lo)
    values = np.array(da.values, dtype=np.float32)  # a writable copy (torch refuses read-only arrays)
    # NetCDF's default fill value (9.97e36) stored as data, not masked (no _FillValue attribute): it would become
    # the normalisation's upper bound.
    huge = np.isfinite(values) & (np.abs(values) >= 9.9e36)
    if (fill := int(huge.sum())):
        top = float(np.abs(values[huge]).max())
        raise ValueError(f"{variable!r} in {name} holds {fill} value(s) of about {top:.4g}, NetCDF's default fill "
                         "value stored as data: mark them missing, e.g. "
                         f"ds[{variable!r}] = ds[{variable!r}].where(abs(ds[{variable!r}]) < 9.9e36)")
    if np.isinf(values).any():
        raise ValueError(f"{variable!r} in {name} contains {int(np.isinf(values).sum())} infinite values; mask them "
                         "(NaN marks a missing point) or fill them first")
    missing = int(np.isnan(values).sum())
    if missing:
        warnings.warn(f"{variable!r} in {name}: {missing} of {values.size} values are missing (NaN or the file's "
                      "_FillValue, e.g. sea-surface temperature over land); they are left out of each field's point "
                      "cloud and of the normalisation (ERA5Dataset, MinMaxNormalizer)", stacklevel=3)
    lon = np.asarray(da[lo].values, dtype=np.float64)
    values, lon = _drop_cyclic_columns(values, lon, name)
    return ERA5Field(values=values, lat=np.asarray(da[la].values, dtype=np.float64),
                     lon=lon, time=np.asarray(da[t].values),
                     variable=variable, units=str(da.attrs.get("units", "")))


def _drop_cyclic_columns(values: np.ndarray, lon: np.ndarray, name: str) -> Tuple[np.ndarray, np.ndarray]:
    """Longitudes (increasing) without columns repeated modulo 360: the cyclic point many tools add (-180 and 180,
    0 and 360), dropped with one warning when its values equal the first column's; an error naming both
    longitudes when they differ (two different fields at one place)."""
    wrapped = np.round(np.remainder(lon, 360.0), 6) % 360.0
    first: Dict[float, int] = {}
    drop = []
    for j, w in enumerate(wrapped):
        i = first.setdefault(float(w), j)
        if i == j:
            continue
        a, b = values[..., i], values[..., j]
        tol = 1e-5 * max(1.0, float(np.abs(a).max()))
        if not np.allclose(a, b, rtol=0.0, atol=tol, equal_nan=True):
            raise ValueError(f"{name} has longitudes {lon[i]:g} and {lon[j]:g}, the same meridian, with different "
                             f"values (largest difference {float(np.abs(a - b).max()):g}); keep one of them")
        drop.append(j)
    if not drop:
        return values, lon
    warnings.warn(f"{name}: dropped {len(drop)} repeated longitude column(s) "
                  f"({', '.join(f'{lon[j]:g}' for j in drop)}, equal to the same meridian's first column: a cyclic "
                  "point)", stacklevel=4)
    keep = np.setdiff1d(np.arange(lon.size), drop)
    return np.ascontiguousarray(values[..., keep]), lon[keep]


#: The attribution ERA5's licence (CC-BY 4.0) asks for; put it on figures and reports made from ERA5 data.
ERA5_ATTRIBUTION = ("Contains modified Copernicus Climate Change Service information (ERA5, Hersbach et al. 2020, "
                    "doi:10.1002/qj.3803), CC-BY 4.0")

_SAMPLE = Path(__file__).resolve().parent / "assets" / "era5_t2m_1deg.npz"


def load_era5_sample() -> ERA5Field:
    """The real ERA5 sample shipped with pcfunc: 2 m temperature, 1°, 24 steps of one week (2026-03-25..31).

    Global 181 x 360 grid (both poles), stored to 0.0025 K. Everything in pcfunc runs on it without a
    download. Contains modified Copernicus Climate Change Service information (ERA5, Hersbach et al.
    2020, doi:10.1002/qj.3803), CC-BY 4.0; see ``pcfunc/data/assets/ERA5_ATTRIBUTION.txt``.

    Returns:
        ERA5Field: ``values`` of shape ``(24, 181, 360)`` in kelvin.
    """
    with np.load(_SAMPLE) as z:
        values = (z["offset"] + z["scale"] * z["t2m"].astype(np.float64)).astype(np.float32)
        time = np.datetime64("1940-01-01T00", "h") + z["time_hours_since_1940"].astype("timedelta64[h]")
        return ERA5Field(values=values, lat=z["latitude"].astype(np.float64), lon=z["longitude"].astype(np.float64),
                         time=time.astype("datetime64[ns]"), variable="t2m", units="K")


@dataclass(frozen=True)
class MinMaxNormalizer:
    r"""Affine map of physical values to :math:`[0, 1]`: :math:`(v - \text{low}) / (\text{high} - \text{low})`.

    GASP and VaMoH map the lowest temperature of the data to 0 and the highest to 1; fit the bounds on
    the training split (:meth:`fit`) and keep them (:meth:`~pcfunc.data.MinMaxNormalizer.to_dict`) to report
    outputs in kelvin with :meth:`inverse`. A field of several variables (channels) gets bounds per channel:
    ``low`` and ``high`` are then tuples, applied along the last axis of the values.

    Attributes:
        low (float or tuple of float): Value mapped to 0 (one per channel for several).
        high (float or tuple of float): Value mapped to 1 (one per channel for several).
    """

    low: Union[float, Tuple[float, ...]]
    high: Union[float, Tuple[float, ...]]

    def __post_init__(self) -> None:
        per_channel = np.ndim(self.low) > 0 or np.ndim(self.high) > 0
        low, high = np.atleast_1d(np.asarray(self.low, np.float64)), np.atleast_1d(np.asarray(self.high, np.float64))
        if per_channel:
            if low.ndim != 1 or low.shape != high.shape or low.size == 0:
                raise ValueError(f"low and high must be numbers or sequences of one number per channel, of one "
                                 f"length, got low={self.low!r}, high={self.high!r}")
            object.__setattr__(self, "low", tuple(float(v) for v in low))
            object.__setattr__(self, "high", tuple(float(v) for v in high))
        if not (np.isfinite(low).all() and np.isfinite(high).all()) or not (high > low).all():
            raise ValueError(f"need finite low < high, got low={self.low!r}, high={self.high!r}")

    @property
    def range(self) -> Union[float, Tuple[float, ...]]:
        """float or tuple of float: ``high - low``, by which a normalised difference is in physical units (one per
        channel for several)."""
        if isinstance(self.low, tuple):
            return tuple(h - lo for lo, h in zip(self.low, self.high))
        return self.high - self.low

    @classmethod
    def fit(cls, values: Any, per_channel: Optional[bool] = None) -> "MinMaxNormalizer":
        """Bounds from the minimum and maximum of ``values`` (an array, a tensor or an :class:`ERA5Field`); missing
        values (NaN) are ignored.

        Args:
            values: The data; channels last when ``per_channel``.
            per_channel (bool, optional): One pair of bounds per channel (the last axis). By default, for an
                :class:`ERA5Field` of several variables, and one pair for everything otherwise.

        Raises:
            ValueError: if every value (of a channel) is missing.
        """
        if per_channel is None:
            per_channel = isinstance(values, ERA5Field) and not isinstance(values.variable, str)
        v = values.values if isinstance(values, ERA5Field) else np.asarray(values)
        if not per_channel:
            if v.size == 0 or bool(np.isnan(v).all()):
                raise ValueError("values has no value to fit the bounds to (every value is missing or there are none)")
            return cls(float(np.nanmin(v)), float(np.nanmax(v)))
        flat = v.reshape(-1, v.shape[-1]) if v.ndim else v.reshape(0, 1)
        if flat.shape[0] == 0 or bool(np.isnan(flat).all(0).any()):
            raise ValueError("values has a channel with no value to fit the bounds to (every value of it is missing "
                             "or there are none)")
        return cls(tuple(float(x) for x in np.nanmin(flat, 0)), tuple(float(x) for x in np.nanmax(flat, 0)))

    def _bounds(self, values: Any) -> Tuple[Any, Any]:
        if not isinstance(self.low, tuple):
            return self.low, self.high
        if isinstance(values, torch.Tensor):
            as_t = lambda b: torch.tensor(b, dtype=values.dtype if values.is_floating_point() else torch.float64,  # noqa: E731
                                          device=values.device)
            return as_t(self.low), as_t(self.high)
        v = np.asarray(values)
        dtype = v.dtype if v.dtype.kind == "f" else np.float64  # float32 values stay float32, as with scalar bounds
        return np.asarray(self.low, dtype), np.asarray(self.high, dtype)

    def transform(self, values: Any, clip: bool = False) -> Any:
        """Physical values to the normalised range (works on NumPy arrays and tensors; channels last with
        per-channel bounds).

        ``clip=True`` clips the result to :math:`[0, 1]`: values of other splits can fall outside the
        training range, which a likelihood on :math:`[0, 1]` (continuous Bernoulli) cannot score.
        """
        low, high = self._bounds(values)
        out = (values - low) / (high - low)
        if clip:
            out = out.clip(0.0, 1.0)
        return out

    def inverse(self, values: Any) -> Any:
        """Normalised values back to physical units."""
        low, high = self._bounds(values)
        return values * (high - low) + low

    def to_dict(self) -> dict:
        """``{"low": ..., "high": ...}`` (lists for per-channel bounds), to keep (e.g. as JSON) and rebuild with
        ``MinMaxNormalizer(**saved)``."""
        if isinstance(self.low, tuple):
            return {"low": list(self.low), "high": list(self.high)}
        return {"low": self.low, "high": self.high}


def split_by_time(field: ERA5Field, fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Tuple[ERA5Field, ...]:
    """Chronological, contiguous splits (e.g. train / validation / test) of a field's time steps.

    Contiguous blocks keep the strongly correlated neighbouring steps of a reanalysis in one split.

    Args:
        field (ERA5Field): The field; its steps are ordered by time (``datetime64``, ``cftime`` datetimes of
            any calendar, or numbers; ties keep their order).
        fractions (sequence of float): Positive fractions summing to 1.

    Returns:
        tuple of ERA5Field: One per fraction, earliest first; every step is in exactly one.

    Raises:
        ValueError: ``fractions`` are not positive or do not sum to 1, a part would get no step, or the times
            cannot be compared (e.g. ``cftime`` datetimes of two calendars).
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.ndim != 1 or f.size < 1 or np.any(f <= 0) or abs(f.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1, got {tuple(fractions)!r}")
    T = field.values.shape[0]
    ends = np.round(np.cumsum(f) * T).astype(int)
    starts = np.concatenate(([0], ends[:-1]))
    if np.any(ends - starts < 1):
        raise ValueError(f"{T} time steps cannot be split into {tuple(fractions)!r} with a step in each part")
    order = _time_order(np.asarray(field.time), "field")
    return tuple(field.select_time(order[s:e]) for s, e in zip(starts, ends))
