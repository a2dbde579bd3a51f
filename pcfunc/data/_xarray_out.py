"""Predictions on a latitude/longitude grid as xarray: coordinates, times, units, names and attribution, ready for
``to_netcdf`` (the layout :func:`~pcfunc.data.load_era5` reads back)."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ._grids import LatLonGrid

__all__ = ["predictions_to_xarray"]

ArrayLike = Union[Tensor, np.ndarray]


def _fields(name: str, value: ArrayLike, grid: LatLonGrid) -> Tuple[np.ndarray, bool]:
    """Point values ``(N,)``, ``(N, 1)``, ``(B, N)`` or ``(B, N, 1)`` to arrays ``(B, n_lat, n_lon)``, and whether
    they were boolean."""
    v = value.detach().cpu() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    n = grid.num_points
    if v.dim() == 3 and v.size(-1) == 1:
        v = v[..., 0]
    elif v.dim() == 2 and v.shape == (n, 1):
        v = v[:, 0]
    if v.dim() == 1:
        v = v[None]
    if v.dim() != 2 or v.size(1) != n:
        raise ValueError(f"predictions[{name!r}] must hold point values of one channel on the grid's {n} points, "
                         f"shaped [N], [N, 1], [B, N] or [B, N, 1]; got {tuple(value.shape)}")
    is_bool = v.dtype == torch.bool
    return grid.to_array(v[..., None].to(torch.float64))[..., 0].numpy(), is_bool


def predictions_to_xarray(grid: LatLonGrid, predictions: Mapping[str, ArrayLike], *,
                          time: Optional[Sequence[Any]] = None, units: Union[str, Sequence[str]] = "",
                          long_name: Optional[str] = None, attribution: Optional[str] = None,
                          dims: Tuple[str, str, str] = ("time", "latitude", "longitude"),
                          attrs: Optional[Mapping[str, Mapping[str, str]]] = None,
                          channels: Optional[Sequence[str]] = None) -> Any:
    r"""Predictions on a latitude/longitude grid as one :class:`xarray.Dataset`.

    Every entry of ``predictions`` (a sample, a reconstruction, a super-resolved field, a predictive mean or
    standard deviation, an in-painted field, a component map) becomes a data variable of that name on
    ``(time, latitude, longitude)``, with the grid's coordinates (CF ``units`` and ``standard_name``; latitudes
    north first, as ``LatLonGrid.lat`` has them), ``units`` and a ``long_name`` (``"<long_name>: <entry>"``).
    A collapsed pole (one point for a whole row) fills its row. The dataset carries ``attribution`` (e.g.
    ``pcfunc.data.ERA5_ATTRIBUTION``) and ``source`` (pcfunc and its version); ``.to_netcdf(path)`` writes a
    file that :func:`~pcfunc.data.load_era5` and any CF tool read back.

    Values are written as given: pass them in the data's units (e.g. ``normalizer.inverse(pred)`` for values,
    ``std * normalizer.range`` for spreads).

    A field of several variables (``channels``, e.g. ``("u10", "v10")``) gives one data variable per entry and
    channel, ``<entry>_<channel>`` (``reconstruction_u10``, ``reconstruction_v10``), each with its channel's units
    and long name ``"<channel>: <entry>"``; entries of one channel (a mask, the mixture's entropy) stay as they are.

    Args:
        grid (LatLonGrid): The grid the points are on.
        predictions (dict): Name to point values: ``(N,)`` or ``(N, 1)`` for one field, ``(B, N)`` or
            ``(B, N, 1)`` for ``B`` (every entry the same ``B``); with ``channels``, also ``(N, C)`` or
            ``(B, N, C)``. Boolean entries (masks) are kept boolean.
        time (sequence, optional): The ``B`` times (``datetime64``, ``cftime`` or numbers) of the fields; without
            it the first dimension is numbered from 0.
        units (str or sequence of str): Units of every entry, unless ``attrs`` says otherwise; with ``channels``,
            one per channel (or one for all). (default: ``""``)
        long_name (str, optional): The variable's long name, e.g. ``"2 metre temperature"``.
        attribution (str, optional): Written as the dataset's ``attribution`` attribute.
        dims (tuple of str): Names of the three dimensions. (default: ``("time", "latitude", "longitude")``)
        attrs (dict, optional): Per entry, attributes that replace the defaults (e.g. ``{"entropy": {"units":
            "nats"}}``).
        channels (sequence of str, optional): Names of the channels of a field of several variables.

    Returns:
        xarray.Dataset: One variable per entry, ``(B, n_lat, n_lon)``.

    Example:
        >>> import torch
        >>> from pcfunc.data import LatLonGrid, predictions_to_xarray
        >>> grid = LatLonGrid.regular(5, 8)
        >>> ds = predictions_to_xarray(grid, {"reconstruction": torch.rand(2, grid.num_points)},
        ...                            units="K", long_name="2 metre temperature")
        >>> ds["reconstruction"].dims, ds["reconstruction"].attrs["units"]
        (('time', 'latitude', 'longitude'), 'K')
    """
    import sys

    import xarray as xr

    # The package's version (pcfunc is imported whenever pcfunc.data is; the data layer does not import upward).
    version = getattr(sys.modules.get("pcfunc"), "__version__", "unknown")
    if not isinstance(grid, LatLonGrid):
        raise TypeError(f"grid must be a LatLonGrid, got {type(grid).__name__}")
    if not isinstance(predictions, Mapping) or not predictions:
        raise ValueError("predictions must be a non-empty dict of name -> point values")
    if len(dims) != 3 or len(set(dims)) != 3:
        raise ValueError(f"dims must be three distinct names, got {dims!r}")
    meta_of: dict = {}  # entry -> (units, long name) of a channel's own entry
    if channels is not None:
        channels = [str(c) for c in channels]
        per = [units] * len(channels) if isinstance(units, str) else [str(u) for u in units]
        if len(per) != len(channels) or not channels:
            raise ValueError(f"units must be one string or one per channel ({channels}), got {units!r}")
        split = {}
        for k, v in predictions.items():
            shape = tuple(v.shape)
            if len(shape) >= 2 and shape[-1] == len(channels) > 1 and shape[-2] == grid.num_points:
                for c, (name, u) in enumerate(zip(channels, per)):
                    split[f"{k}_{name}"] = v[..., c]
                    meta_of[f"{k}_{name}"] = (u, f"{name}: {k}" if long_name is None else f"{long_name} {name}: {k}")
            else:
                split[k] = v
        predictions = split
        units = per[0] if len(set(per)) == 1 else ""
    elif not isinstance(units, str):
        raise ValueError(f"units must be a string without channels, got {units!r}")
    arrays = {str(k): _fields(str(k), v, grid) for k, v in predictions.items()}
    counts = {k: a.shape[0] for k, (a, _) in arrays.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"every entry of predictions must hold the same number of fields, got {counts}")
    n = next(iter(counts.values()))
    t, la, lo = dims
    if time is None:
        t_coord: Any = (t, np.arange(n))
    else:
        times = np.asarray(time)
        if times.ndim == 0:
            times = times[None]
        if times.shape != (n,):
            raise ValueError(f"time must hold one entry per field ({n}), got shape {times.shape}")
        t_coord = (t, times, {"standard_name": "time"})
    coords = {t: t_coord,
              la: (la, grid.lat.numpy().astype(np.float64), {"units": "degrees_north", "standard_name": "latitude"}),
              lo: (lo, grid.lon.numpy().astype(np.float64), {"units": "degrees_east", "standard_name": "longitude"})}
    variables = {}
    for name, (a, is_bool) in arrays.items():
        u, ln = meta_of.get(name, (units, f"{long_name}: {name}" if long_name else name))
        meta = {"long_name": ln}
        if u and not is_bool:
            meta["units"] = u
        meta.update(dict((attrs or {}).get(name, {})))
        data = a > 0.5 if is_bool else a.astype(np.float32)
        variables[name] = ((t, la, lo), data, meta)
    ds_attrs = {"source": f"pcfunc {version}", "Conventions": "CF-1.8"}
    if attribution:
        ds_attrs["attribution"] = attribution
    return xr.Dataset(variables, coords=coords, attrs=ds_attrs)
