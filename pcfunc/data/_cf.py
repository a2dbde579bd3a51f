"""Reading CF NetCDF/Zarr and GRIB files from any source: axes found by name or CF attributes, variables by short name,
``standard_name`` or ``long_name``, times in every CF calendar (used by :func:`pcfunc.data.load_era5`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

# Dimension names recognised as they are; other names count when their coordinate carries CF attributes.
_TIME_NAMES = ("valid_time", "time")
_LAT_NAMES = ("latitude", "lat")
_LON_NAMES = ("longitude", "lon")
_AXIS_NAMES = {"latitude": _LAT_NAMES, "longitude": _LON_NAMES, "time": _TIME_NAMES}
_AXIS_LETTER = {"latitude": "Y", "longitude": "X", "time": "T"}
# The spellings of latitude and longitude units the CF conventions allow (sections 4.1 and 4.2), lower case.
_AXIS_UNITS = {"latitude": ("degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"),
               "longitude": ("degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"),
               "time": ()}
# Attributes naming auxiliary variables (cell bounds, grid mappings), which are never the field to load.
_AUXILIARY_ATTRS = ("bounds", "climatology", "grid_mapping", "cell_measures", "ancillary_variables")


def _attr(obj: Any, key: str) -> str:
    """An attribute of a variable as a stripped string, also where xarray moved it to ``encoding`` on decoding."""
    value = obj.attrs.get(key, getattr(obj, "encoding", {}).get(key))
    return "" if value is None else str(value).strip()


def _is_cftime(values: np.ndarray) -> bool:
    return values.dtype == object and values.size > 0 and type(values.flat[0]).__module__.startswith("cftime")


def _axis_score(dim: str, coord: Optional[Any], kind: str) -> int:
    """How surely a dimension (with its coordinate, if any) is the ``kind`` axis; 0: it is not.

    A known name wins (``valid_time`` before ``time``); then CF ``standard_name``; then units (``degrees_north``,
    ``degrees_east``; decoded dates or ``"... since ..."`` for time); then ``axis`` (``Y``, ``X``, ``T``). Another
    standard name (``grid_latitude`` of a rotated grid, ``projection_y_coordinate``, ...) rules the dimension out.
    """
    names = _AXIS_NAMES[kind]
    if dim.lower() in names:
        return 10 - names.index(dim.lower())
    if coord is None:
        return 0
    standard_name, units = _attr(coord, "standard_name").lower(), _attr(coord, "units").lower()
    if standard_name == kind:
        return 4
    if standard_name:
        return 0
    values = np.asarray(coord.values) if kind == "time" else None
    if kind == "time" and (values.dtype.kind == "M" or _is_cftime(values) or " since " in units):
        return 3
    if units in _AXIS_UNITS[kind]:
        return 3
    if _attr(coord, "axis").upper() == _AXIS_LETTER[kind] and (kind == "time" or not units
                                                               or units.startswith("degree")):
        return 2
    return 0


def _find_axes(da: Any) -> Dict[str, str]:
    """The dimensions of ``da`` that are its ``"latitude"``, ``"longitude"`` and ``"time"`` axes (those it has)."""
    found: Dict[str, str] = {}
    for kind in ("latitude", "longitude", "time"):
        best, best_score = None, 0
        for d in map(str, da.dims):
            if d in found.values():
                continue
            score = _axis_score(d, da.coords[d] if d in da.coords else None, kind)
            if score > best_score:
                best, best_score = d, score
        if best is not None:
            found[kind] = best
    return found


def _grid_axes(da: Any, variable: str, name: str) -> Tuple[str, str]:
    """The latitude and longitude dimensions of ``da``, or an error saying why it has none."""
    axes, dims = _find_axes(da), [str(d) for d in da.dims]
    for kind in ("latitude", "longitude"):
        if kind in axes:
            continue
        rotated = [str(c) for c in da.coords if da[c].ndim >= 2 and _axis_score(str(c), da[c], kind)]
        rotated += [d for d in dims if d in da.coords and _attr(da[d], "standard_name").lower() == "grid_" + kind]
        if rotated:
            raise ValueError(f"{variable!r} in {name} is on a rotated or curvilinear grid (dimensions {dims}; "
                             f"{kind} in {rotated[0]!r}): only regular latitude/longitude grids with 1-D latitude and "
                             "longitude axes are supported; regrid it first (e.g. with xESMF or `cdo remapbil`)")
        units = " or ".join(repr(u) for u in _AXIS_UNITS[kind][:2])
        raise ValueError(f"{name} has no {kind} coordinate for {variable!r} (looked for a dimension named "
                         f"{list(_AXIS_NAMES[kind])} or with the CF attribute standard_name={kind!r}, units={units} "
                         f"or axis={_AXIS_LETTER[kind]!r}; found dimensions {dims})")
    for kind in ("latitude", "longitude"):
        if axes[kind] not in da.coords:
            raise ValueError(f"the {kind} dimension {axes[kind]!r} of {variable!r} in {name} has no coordinate "
                             "values; add them in degrees (e.g. ds.assign_coords(...))")
    return axes["latitude"], axes["longitude"]


_RADIANS = ("radians", "radian", "rad")


def _in_degrees(da: Any, lat: str, lon: str, variable: str, name: str) -> Any:
    """``da`` with its latitude and longitude in degrees: CF ``units`` in radians are converted (with a warning);
    units that are neither degrees nor radians are an error naming them; no units means degrees."""
    out = {}
    for kind, dim in (("latitude", lat), ("longitude", lon)):
        units = _attr(da[dim], "units").lower()
        if units in _RADIANS:
            out[dim] = np.rad2deg(np.asarray(da[dim].values, dtype=np.float64))
        elif units and not units.startswith("degree") and units not in _AXIS_UNITS[kind]:
            raise ValueError(f"the {kind} {dim!r} of {variable!r} in {name} is in {units!r}: give it in degrees "
                             "(or radians, which are converted)")
    if out:
        warnings.warn(f"{name}: {', '.join(out)} converted from radians to degrees (their CF units)", stacklevel=4)
        da = da.assign_coords({d: (d, v, {**da[d].attrs, "units": "degrees"}) for d, v in out.items()})
    return da


def _auxiliary_names(ds: Any) -> set:
    """Variables other variables name as their cell bounds, grid mapping, cell measures or ancillary data."""
    out = set()
    for v in list(ds.variables.values()):
        for key in _AUXILIARY_ATTRS:
            out.update(w.rstrip(":") for w in _attr(v, key).split())
    return out


def _describe(ds: Any, v: str) -> str:
    a = ds[v].attrs
    about = ", ".join(f"{k}={str(a[k])!r}" for k in ("standard_name", "long_name", "units") if a.get(k))
    return f"  {v} ({', '.join(map(str, ds[v].dims))})" + (f": {about}" if about else "")


def _find_variable(ds: Any, variable: Optional[str], name: str) -> str:
    """The name of the data variable to load: by short name, CF standard_name or long_name, or the only field."""
    aux = _auxiliary_names(ds)
    names = [str(v) for v in ds.data_vars if str(v) not in aux]
    on_grid = [v for v in names if {"latitude", "longitude"} <= set(_find_axes(ds[v]))]
    if variable is None:
        if len(on_grid) == 1:
            return on_grid[0]
        if "t2m" in ds.data_vars:
            return "t2m"
        fields = [v for v in names if ds[v].ndim >= 2]
        if not on_grid and len(fields) == 1:
            return fields[0]  # its axes are checked (and explained) later
        if on_grid:
            raise ValueError(f"{name} has {len(on_grid)} variables on a latitude/longitude grid:\n"
                             + "\n".join(_describe(ds, v) for v in on_grid)
                             + "\npass variable= with one of their names (or a standard_name or long_name)")
        raise ValueError(f"{name} has no variable on a latitude/longitude grid; it has "
                         f"{sorted(map(str, ds.data_vars))}: pass variable= to choose one")
    if not isinstance(variable, str):
        raise TypeError(f"variable must be a string or None, got {type(variable).__name__}")
    if variable in ds.data_vars:
        return variable
    key = variable.strip().lower()
    for what in ("name", "standard_name", "long_name"):
        hits = [v for v in names if (v if what == "name" else _attr(ds[v], what)).lower() == key]
        if len(hits) > 1 and what != "name" and any(v in on_grid for v in hits):
            hits = [v for v in hits if v in on_grid]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise ValueError(f"{name} has {len(hits)} variables whose {what} is {variable!r}:\n"
                             + "\n".join(_describe(ds, v) for v in hits) + "\npass variable= with one of their names")
    listing = "".join("\n" + _describe(ds, v) for v in on_grid)
    raise ValueError(f"{name} has no variable {variable!r}; it has {sorted(map(str, ds.data_vars))} (looked up by "
                     "name, CF standard_name and long_name, ignoring case)"
                     + (f"; on a latitude/longitude grid:{listing}" if listing else ""))


def _time_kind(times: np.ndarray) -> str:
    if times.dtype.kind == "M":
        return "numpy datetime64 (standard calendar)"
    if _is_cftime(times):
        return f"cftime datetimes ({getattr(times.flat[0], 'calendar', '?')} calendar)"
    return ("numbers, not dates (not decoded: no CF units such as 'days since 2000-01-01', or units xarray cannot "
            "decode; select by number, or fix the units)")


def _same_times(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two time axes are equal (``False``, not an error, for times of different kinds or calendars)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    try:
        return bool(np.all(a == b))
    except TypeError:
        return False


def _time_order(times: np.ndarray, name: str) -> np.ndarray:
    """Indices sorting ``times`` (stable), or a clear error when they cannot be compared."""
    try:
        return np.argsort(times, kind="stable")
    except TypeError as err:
        raise ValueError(f"the times of {name} cannot be ordered ({err}): they must be all datetime64, all cftime "
                         "datetimes of one calendar, or all numbers") from None


def _time_axis(da: Any, variable: str, name: str, time_dim: Optional[str] = None) -> Tuple[Any, str]:
    """``da`` with a time dimension (a scalar time coordinate becomes one of size 1), and that dimension:
    ``time_dim`` when given (e.g. a ``month`` numbered 1..12)."""
    if time_dim is not None:
        if not isinstance(time_dim, str) or time_dim not in map(str, da.dims):
            raise ValueError(f"time_dim={time_dim!r} is not a dimension of {variable!r} in {name} (dimensions "
                             f"{[str(d) for d in da.dims]})")
        return da, time_dim
    t = _find_axes(da).get("time")
    if t is not None:
        return da, t
    scalar = [str(c) for c in da.coords if da[c].ndim == 0 and _axis_score(str(c), da[c], "time")]
    if scalar:
        return da.expand_dims(scalar[0]), scalar[0]
    raise ValueError(f"{variable!r} in {name} has no time dimension or scalar time coordinate (looked for "
                     f"{list(_TIME_NAMES)} or CF standard_name='time', axis='T' or units '... since ...'; found "
                     f"dimensions {[str(d) for d in da.dims]}); if one of those counts time (e.g. a 'month' "
                     "numbered 1..12), name it: time_dim='month' (examples: --time-dim month); for a single field add "
                     f"one, e.g. load_era5(ds[[{variable!r}]].expand_dims(time=[0]))")


_GRIB_SUFFIXES = (".grib", ".grb", ".grib1", ".grib2", ".grb1", ".grb2")


def _is_grib(path: Path) -> bool:
    """A GRIB file, by its suffix or by its first bytes (every GRIB message starts with ``GRIB``)."""
    if path.suffix.lower() in _GRIB_SUFFIXES:
        return True
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"GRIB"


def _open_grib(path: Path, name: str) -> Any:
    """A GRIB file through cfgrib (ecCodes), without the ``.idx`` index files cfgrib would write beside it."""
    import xarray as xr

    try:
        import cfgrib  # noqa: F401  (imports ecCodes' bindings, which find the library)
    except Exception as err:  # ImportError, or ecCodes' RuntimeError when its library is missing
        raise ImportError(f"{name} is a GRIB file: reading it needs cfgrib and ecCodes (pip install cfgrib eccodes, "
                          "or pip install 'pcfunc[data]'; the eccodes wheels bundle the library): "
                          f"{type(err).__name__}: {err}") from None
    try:
        return xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""}, decode_timedelta=True)
    except Exception as err:  # cfgrib's DatasetBuildError (several level types or grids) and ecCodes' errors
        hint = ""
        if "filter_by_keys" in str(err) or "multiple values for unique key" in str(err):
            hint = (": the file mixes fields that do not fit one dataset (e.g. surface and pressure-level variables); "
                    "open the part you want with xarray.open_dataset(path, engine='cfgrib', backend_kwargs="
                    "{'filter_by_keys': {'typeOfLevel': 'surface'}}) and pass that dataset")
        raise ValueError(f"source {name!r} is a GRIB file that cfgrib cannot read as one dataset "
                         f"({type(err).__name__}: {str(err)[:200]}){hint}") from None


def _open(path: Path, name: str) -> Any:
    """An xarray Dataset of a NetCDF file, Zarr store or GRIB file; with undecoded times (and a warning) when xarray
    cannot decode them (e.g. ``"months since ..."`` in the standard calendar)."""
    import xarray as xr

    if _is_grib(path):
        return _open_grib(path, name)
    opener = xr.open_zarr if (path.is_dir() or path.suffix == ".zarr") else xr.open_dataset
    try:
        return opener(path)
    except (ValueError, OSError, TypeError, OverflowError) as err:
        first = err
    try:
        ds = opener(path, decode_times=False)
    except (ValueError, OSError, TypeError, OverflowError):
        raise ValueError(f"source {name!r} is not a NetCDF file, Zarr store or GRIB file that xarray can read "
                         f"({type(first).__name__}: {str(first)[:160]})") from None
    reason = str(first).split(". Try")[0][:200]
    warnings.warn(f"{name}: xarray cannot decode its times ({reason}); they are kept as the file's numbers",
                  stacklevel=3)
    return ds


def _show_values(index: Any, limit: int = 6) -> str:
    """A dimension's labels for a message: ``3: 1000, 850, 500`` or ``37: 1, 2, 3, ..., 1000``."""
    labels = [str(v) for v in np.asarray(index)]
    shown = labels if len(labels) <= limit else labels[: limit - 2] + ["...", labels[-1]]
    return f"{len(labels)}: " + ", ".join(shown)


def _choose_entries(da: Any, select: Optional[Mapping[str, Any]], axes: Tuple[str, str, str], variable: str,
                    name: str) -> Dict[str, int]:
    """The position along each extra dimension of ``da`` (not time, latitude or longitude) to read: ``select``'s
    label (a position where the dimension has no coordinate), or 0 for a dimension of size 1; an error listing the
    extra dimensions with their labels when one of several entries has not been chosen."""
    dims = [str(d) for d in da.dims]
    extra = [d for d in dims if d not in axes]
    select = dict(select or {})
    for key in select:
        if key in axes:
            what = "time" if key == axes[0] else "latitude" if key == axes[1] else "longitude"
            hint = "time=..." if what == "time" else "a region (ERA5Field.region, --region)"
            raise ValueError(f"select={{{key!r}: ...}}: {key!r} is the {what} axis of {variable!r} in {name}; select "
                             f"picks one entry of another dimension (use {hint})")
        if key not in extra:
            raise ValueError(f"select={{{key!r}: ...}}: {variable!r} in {name} has no dimension {key!r}; its extra "
                             f"dimensions are {extra or 'none'} (all dimensions: {dims})")
    chosen: Dict[str, int] = {}
    for d in extra:
        if d in select:
            label = select[d]
            if d not in da.coords:  # no labels: a position
                if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < da.sizes[d]:
                    raise ValueError(f"select={{{d!r}: {label!r}}}: {d!r} of {variable!r} in {name} has no coordinate "
                                     f"values, so give a position in 0..{da.sizes[d] - 1}")
                chosen[d] = int(label)
                continue
            index = da.indexes[d]
            try:
                found = index.get_loc(label)
            except (KeyError, TypeError, ValueError):
                found = None
            if not isinstance(found, (int, np.integer)):
                raise ValueError(f"select={{{d!r}: {label!r}}}: no single entry of {d!r} of {variable!r} in {name} "
                                 f"has that label; its labels are ({_show_values(index)})")
            chosen[d] = int(found)
        elif da.sizes[d] == 1:
            chosen[d] = 0
    open_dims = [d for d in extra if d not in chosen]
    if "expver" in open_dims:
        raise ValueError(f"{variable!r} in {name} mixes final ERA5 and preliminary ERA5T data along 'expver' (each "
                         "time step is in one of them, NaN in the other): combine them first, e.g. "
                         f"da = ds[{variable!r}].sel(expver=1).combine_first(ds[{variable!r}].sel(expver=5)), "
                         "and pass da.to_dataset() (selecting one entry alone leaves NaN time steps)")
    if open_dims:
        listed = "; ".join(f"{d} ({_show_values(da.indexes[d]) if d in da.coords else f'{da.sizes[d]} entries'})"
                           for d in open_dims)
        example = {d: (np.asarray(da.indexes[d])[0].item() if d in da.coords else 0) for d in open_dims}
        flags = " ".join(f"--select {d}={v}" for d, v in example.items())
        raise ValueError(f"{variable!r} in {name} has extra dimensions with several entries: {listed}. Choose one "
                         f"entry of each by label: select={example!r} (examples: {flags})")
    return chosen
