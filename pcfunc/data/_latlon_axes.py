"""Validation of latitude/longitude axes and of the values on them (shared by regridding and cell areas)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .._validation import check_finite
from ._arrays import ArrayLike, _as_tensor

_INTERPOLATION_METHODS = ("bilinear", "nearest")
_REGRID_METHODS = ("bilinear", "nearest", "conservative")
# Latitudes up to this far beyond ±90° (e.g. the rounding of unit vectors -> degrees) are accepted and clamped.
_LAT_TOL = 1e-6
# Longitudes count as evenly spaced around the globe when every gap is 360/n to this many degrees
# (coordinates read from float32 files carry errors of ~1e-5 degrees).
_LON_STEP_TOL = 1e-4
# A query this close to the edge of a regional grid is inside it.
_EDGE_TOL = 1e-6
_POLE_TOL = 1e-9


# -- validation ------------------------------------------------------------------------------
def _check_method(method: str, allowed: Tuple[str, ...]) -> str:
    if not isinstance(method, str) or method not in allowed:
        raise ValueError(f"method must be one of {allowed}, got {method!r}")
    return method


def _axis(a: ArrayLike, name: str) -> Tensor:
    """A non-empty, finite 1-D float64 CPU tensor of degrees."""
    t = _as_tensor(a, torch.float64)
    if t.dim() != 1:
        raise ValueError(f"{name} must be a 1-D array of degrees, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    check_finite(t, name)
    return t.cpu()


def _check_lat_range(t: Tensor, name: str) -> Tensor:
    if t.numel() and bool((t.abs() > 90.0 + _LAT_TOL).any()):
        raise ValueError(f"{name} must lie in [-90, 90] degrees, got range [{float(t.min())}, {float(t.max())}]")
    return t.clamp(-90.0, 90.0)


def _lat_axis(lat: ArrayLike, name: str) -> Tensor:
    t = _axis(lat, name)
    d = t.diff()
    if t.numel() > 1 and not (bool((d > 0).all()) or bool((d < 0).all())):
        raise ValueError(f"{name} must be strictly monotone (north-first or south-first)")
    return _check_lat_range(t, name)


def _lon_circle(lon: Tensor, name: str) -> Tuple[Tensor, Tensor, bool]:
    """Longitudes as an increasing, unwrapped axis, the column of each entry, and whether it is global.

    The axis starts after the widest gap between neighbouring longitudes on the circle, so a
    regional grid crossing 0° or 180° is one contiguous interval. A grid is global (periodic) when
    its ``n >= 2`` longitudes are evenly spaced all around the circle (every gap :math:`360/n`).
    """
    w = torch.remainder(lon, 360.0)
    w = torch.where(w >= 360.0, w - 360.0, w)
    order = torch.argsort(w)
    s = w[order]
    n = s.numel()
    gaps = torch.cat((s.diff(), s[:1] + 360.0 - s[-1:]))
    if n > 1 and float(gaps.min()) <= 1e-6:
        raise ValueError(f"{name} has values equal modulo 360 (e.g. both 0 and 360); drop the repeated column")
    periodic = n > 1 and bool(((gaps - 360.0 / n).abs() <= _LON_STEP_TOL).all())
    if not periodic and n > 1:
        cut = int(torch.argmax(gaps)) + 1
        if cut < n:
            s = torch.cat((s[cut:], s[:cut] + 360.0))
            order = torch.cat((order[cut:], order[:cut]))
    return s, order, periodic


def _values(values: ArrayLike, n_lat: int, n_lon: int) -> Tensor:
    v = _as_tensor(values)
    if v.dim() < 2 or tuple(v.shape[-2:]) != (n_lat, n_lon):
        raise ValueError(f"values must have shape [..., n_lat, n_lon] = [..., {n_lat}, {n_lon}] to match lat and lon, "
                         f"got {tuple(v.shape)}")
    check_finite(torch.where(torch.isnan(v), 0.0, v), "values")  # NaN marks a missing value; Inf is an error
    return v




# -- public ----------------------------------------------------------------------------------
def _in_convention(x: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Longitudes ``x`` (increasing, possibly unwrapped) written as ``like`` writes its own (-180..180 when it has
    negative values, else 0..360); a box across that convention's seam in the other one, so they increase."""
    conventions = (lambda v: np.mod(v + 180.0, 360.0) - 180.0, lambda v: np.mod(v, 360.0))
    if float(np.min(like)) >= 0:
        conventions = conventions[::-1]
    for convert in conventions:
        y = convert(x)
        if y.size < 2 or bool((np.diff(y) > 0).all()):
            return y
    return x


def regular_axes(step: float, lat: Optional[np.ndarray] = None,
                 lon: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    r"""The axes of a regular lat/lon grid of about ``step`` degrees over the globe, or over the box of ``lat`` and
    ``lon`` (e.g. a coarse training grid for a field on those axes).

    Without axes, or for axes reaching both poles, the latitudes run from 90 to -90 in
    :math:`\lfloor 180/\text{step} \rceil` intervals; otherwise from the northernmost to the southernmost
    latitude of ``lat``, both kept, in as many equal intervals as come closest to ``step``. Longitudes that go
    round the globe (evenly spaced, :math:`360/n` apart) give :math:`\lfloor 360/\text{step} \rceil` longitudes
    from 0; a regional box keeps its western and eastern edges (also across 0° or 180°), in equal intervals
    closest to ``step``. Longitudes are written as ``lon`` writes its own (0..360 or -180..180).

    Args:
        step (float): Spacing in degrees, positive.
        lat (array, optional): Latitudes of the data (strictly monotone).
        lon (array, optional): Longitudes of the data (any order, distinct modulo 360).

    Returns:
        (numpy.ndarray, numpy.ndarray): Latitudes north first and increasing longitudes, float64.

    Example:
        >>> lat, lon = regular_axes(4.0)
        >>> lat.size, lon.size
        (46, 90)
        >>> lat, lon = regular_axes(4.0, np.arange(15.0, 60.5), np.arange(225.0, 315.5))
        >>> float(lat[0]), float(lat[-1]), float(lon[0]), float(lon[-1]), lat.size, lon.size
        (60.0, 15.0, 225.0, 315.0, 12, 23)
    """
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not np.isfinite(step) or step <= 0:
        raise ValueError(f"step must be a positive number of degrees, got {step!r}")
    step = float(step)
    if lat is None:
        south, north = -90.0, 90.0
    else:
        t = _lat_axis(np.asarray(lat, dtype=np.float64).reshape(-1), "lat")
        south, north = float(t.min()), float(t.max())
    if north >= 90.0 - _POLE_TOL and south <= -90.0 + _POLE_TOL:
        new_lat = np.linspace(90.0, -90.0, int(round(180.0 / step)) + 1)
    elif north == south:
        new_lat = np.array([north])
    else:
        new_lat = np.linspace(north, south, max(2, int(round((north - south) / step)) + 1))
    if lon is None:
        return new_lat, np.arange(int(round(360.0 / step))) * (360.0 / int(round(360.0 / step)))
    lon_a = np.asarray(lon, dtype=np.float64).reshape(-1)
    s, _, periodic = _lon_circle(_axis(lon_a, "lon"), "lon")
    if periodic:
        n = int(round(360.0 / step))
        x = np.arange(n) * (360.0 / n)
        return new_lat, np.sort(np.mod(x + 180.0, 360.0) - 180.0 if float(lon_a.min()) < 0 else x)
    west, east = float(s[0]), float(s[-1])
    x = np.array([west]) if east == west else np.linspace(west, east, max(2, int(round((east - west) / step)) + 1))
    return new_lat, _in_convention(x, lon_a)
