"""Validation of latitude/longitude axes and of the values on them (shared by regridding and cell areas)."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .._validation import check_finite
from ._grids import ArrayLike
from ._grids import _as_tensor

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
    check_finite(v, "values")
    return v


