"""Gridded fields in physical units (:class:`ERA5Field`: one variable, or several as channels), their
normalisation to the models' range (:class:`MinMaxNormalizer`) and chronological splits (:func:`split_by_time`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._cf import _time_order

__all__ = ["ERA5Field", "MinMaxNormalizer", "split_by_time"]


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
        channels = self.values[..., None] if isinstance(self.variable, str) else self.values
        arrays = [xr.DataArray(channels[..., c], dims=dims, coords=coords, name=name, attrs={"units": u} if u else {})
                  for c, (name, u) in enumerate(zip(self.variables, self.channel_units))]
        return arrays[0] if isinstance(self.variable, str) else xr.merge(arrays)

    def select_time(self, index: Union[slice, Sequence[int], np.ndarray]) -> "ERA5Field":
        """The steps at ``index`` (a slice, integer indices or a boolean mask)."""
        return replace(self, values=self.values[index], time=self.time[index])


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
