"""A lat/lon field arranged for drawing: validated axes, rows south to north, columns west to east, cell edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

ArrayLike = Union[Tensor, np.ndarray, Sequence[float]]


@dataclass
class _Field:
    """A field arranged for drawing: rows south to north, columns west to east, with cell edges."""

    values: np.ma.MaskedArray  # [rows, cols], non-finite values masked
    hidden: Optional[np.ndarray]  # bool [rows, cols], True where unobserved
    x: np.ndarray  # longitude edges, cols + 1
    y: np.ndarray  # latitude edges, rows + 1
    xlim: Tuple[float, float]
    observed: np.ndarray  # finite values of the observed cells (for colour ranges)


def _to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, Tensor):
        t = a.detach().cpu()
        return (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()
    return np.asarray(a)


def _axis(a: ArrayLike, name: str) -> np.ndarray:
    t = _to_numpy(a)
    if t.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of degrees, got shape {tuple(t.shape)}")
    if t.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not (np.issubdtype(t.dtype, np.integer) or np.issubdtype(t.dtype, np.floating)):
        raise TypeError(f"{name} must be real numbers (degrees), got dtype {t.dtype}")
    t = t.astype(np.float64)
    if not np.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return t


def _lat_edges(lat: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Row order (south to north) and the ``n + 1`` edges: midpoints, half a step beyond the ends, within ±90."""
    from ..data._latlon_axes import _lat_axis  # the one latitude check (monotone, within [-90, 90])

    lat = _lat_axis(lat, "lat").numpy()
    order = np.argsort(lat)
    c = lat[order]
    if c.size == 1:
        edges = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        edges = np.concatenate([[1.5 * c[0] - 0.5 * c[1]], (c[1:] + c[:-1]) / 2, [1.5 * c[-1] - 0.5 * c[-2]]])
    return order, np.clip(edges, -90.0, 90.0)


def _lon_edges(lon: np.ndarray) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float]]:
    """Column order (west to east), the edges and the x range of the map.

    A global axis (no gap much wider than the others) is re-centred to [-180, 180) and periodic: the cell
    across the antimeridian is cut there and drawn at both sides, so one column may appear twice. A regional
    axis runs eastwards from the western end of its largest gap, its ends half a step beyond the outer
    centres; a region across the antimeridian keeps going past 180.
    """
    w = np.mod(lon, 360.0)
    n = w.size
    if np.unique(np.round(w * 1e6)).size != n:
        raise ValueError("lon has values equal modulo 360 (e.g. both 0 and 360); drop the repeated column")
    regional = False
    if n > 1:
        s_order = np.argsort(w, kind="stable")
        s = w[s_order]
        gaps = np.diff(np.append(s, s[0] + 360.0))
        k = int(np.argmax(gaps))
        regional = bool(gaps[k] > 2.0 * np.median(np.delete(gaps, k)))
    if regional:
        idx = np.roll(s_order, -(k + 1))
        run = w[idx[0]] + np.mod(w[idx] - w[idx[0]], 360.0)  # increasing, possibly past 360
        x = run - run[0] + (np.mod(run[0] + 180.0, 360.0) - 180.0)
        edges = np.concatenate([[1.5 * x[0] - 0.5 * x[1]], (x[1:] + x[:-1]) / 2, [1.5 * x[-1] - 0.5 * x[-2]]])
        return idx, edges, (float(edges[0]), float(edges[-1]))
    centred = np.mod(lon + 180.0, 360.0) - 180.0
    idx = np.argsort(centred, kind="stable")
    x = centred[idx]
    seam = (x[-1] + x[0] + 360.0) / 2  # the edge between the easternmost and (wrapped) westernmost cells
    edges = np.concatenate([[seam - 360.0], (x[1:] + x[:-1]) / 2, [seam]])
    if edges[0] < -180.0 - 1e-9:  # the seam cell sticks out in the west: draw its part east of 180 as well
        idx, edges = np.append(idx, idx[0]), np.append(edges, edges[1] + 360.0)
    elif edges[-1] > 180.0 + 1e-9:
        idx, edges = np.concatenate([[idx[-1]], idx]), np.concatenate([[edges[-2] - 360.0], edges])
    return idx, edges, (-180.0, 180.0)


def _prepare(values: ArrayLike, lat: ArrayLike, lon: ArrayLike, mask: Optional[ArrayLike]) -> _Field:
    v = _to_numpy(values)
    if v.ndim != 2:
        hint = " (take one channel, e.g. values[..., 0])" if v.ndim == 3 else ""
        raise ValueError(f"values must be a 2-D array [n_lat, n_lon], got shape {tuple(v.shape)}{hint}")
    if not (v.dtype == np.bool_ or np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise TypeError(f"values must be real numbers, got dtype {v.dtype}")
    v = v.astype(np.float64)
    lat_a, lon_a = _axis(lat, "lat"), _axis(lon, "lon")
    if v.shape != (lat_a.size, lon_a.size):
        raise ValueError(f"values must have shape (len(lat), len(lon)) = {(lat_a.size, lon_a.size)}, "
                         f"got {tuple(v.shape)}")
    rows, y = _lat_edges(lat_a)
    cols, x, xlim = _lon_edges(lon_a)
    observed = np.ones(v.shape, dtype=bool)
    hidden = None
    if mask is not None:
        m = _to_numpy(mask)
        if m.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean array (True = observed), got dtype {m.dtype}")
        if m.shape != v.shape:
            raise ValueError(f"mask must have the shape of values {tuple(v.shape)}, got {tuple(m.shape)}")
        observed = m
        hidden = ~m[rows][:, cols]
    finite = np.isfinite(v)
    return _Field(values=np.ma.masked_invalid(v[rows][:, cols]), hidden=hidden, x=x, y=y, xlim=xlim,
                  observed=v[finite & observed])
