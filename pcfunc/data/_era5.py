"""Reading ERA5 fields as users download them from the Copernicus Climate Data Store (NetCDF, Zarr or GRIB), or
any CF file on a regular latitude/longitude grid, and the ERA5 sample shipped with pcfunc."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ._cf import (_choose_entries, _find_variable, _grid_axes, _in_degrees, _open, _time_axis, _time_kind,
                  _time_order)
from ._field import ERA5Field

__all__ = ["ERA5_ATTRIBUTION", "load_era5", "load_era5_sample"]


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
        for what, a, b in (("latitudes", first.lat, f.lat), ("longitudes", first.lon, f.lon)):
            if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
                raise ValueError(f"{first.variable!r} and {f.variable!r} in {name} have different {what} ({a.size} "
                                 f"against {b.size}, or other values): variables of one field must share the grid; "
                                 "regrid first")
        if not _same_times(f.time, first.time):
            raise ValueError(f"{first.variable!r} and {f.variable!r} in {name} have different time steps "
                             f"({first.time.size} against {f.time.size}, or other times): select the same times first")
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
