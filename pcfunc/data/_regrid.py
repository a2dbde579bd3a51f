"""Interpolation and regridding of fields on latitude/longitude grids (bilinear, nearest, conservative)."""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .._validation import check_finite, check_points
from ..manifolds import xyz_to_latlon
from ._arrays import ArrayLike
from ._cell_area import _conservative, latlon_cell_area
from ._latlon_axes import (_EDGE_TOL, _INTERPOLATION_METHODS, _POLE_TOL, _REGRID_METHODS, _as_tensor, _axis,
                           _check_lat_range, _check_method, _lat_axis, _lon_circle, _values)

__all__ = ["interpolate_latlon", "interpolate_to_points", "regrid", "latlon_cell_area"]


class _SourceGrid:
    """The axes of the data grid, sorted for interval search, with maps back to rows/columns of ``values``.

    Latitudes ascend (``rows[k]`` is the row of node ``k``); on grids global in longitude, a virtual
    node at each pole the grid lacks is added (``virtual`` 1 = south pole, 2 = north pole, 0 = data).
    Longitudes ascend from the start of the grid's interval; global grids repeat their first column
    at +360° so the last interval wraps to it.
    """

    def __init__(self, lat: ArrayLike, lon: ArrayLike) -> None:
        lat_t = _lat_axis(lat, "lat")
        lon_t = _axis(lon, "lon")
        self.n_lat, self.n_lon = lat_t.numel(), lon_t.numel()
        lon_s, cols, self.periodic = _lon_circle(lon_t, "lon")
        if self.periodic:
            lon_s = torch.cat((lon_s, lon_s[:1] + 360.0))
            cols = torch.cat((cols, cols[:1]))
        self.lon_nodes, self.cols = lon_s, cols
        order = torch.argsort(lat_t)
        lat_s, rows = lat_t[order], order
        virtual = torch.zeros_like(rows)
        self.south_row, self.north_row = int(order[0]), int(order[-1])
        if self.periodic and float(lat_s[0]) > -90.0 + _POLE_TOL:
            lat_s = torch.cat((lat_s.new_tensor([-90.0]), lat_s))
            rows, virtual = torch.cat((rows[:1], rows)), torch.cat((virtual.new_tensor([1]), virtual))
        if self.periodic and float(lat_s[-1]) < 90.0 - _POLE_TOL:
            lat_s = torch.cat((lat_s, lat_s.new_tensor([90.0])))
            rows, virtual = torch.cat((rows, rows[-1:])), torch.cat((virtual, virtual.new_tensor([2])))
        self.lat_nodes, self.rows, self.virtual = lat_s, rows, virtual
        self.has_virtual = bool((virtual > 0).any())

    def check_values(self, values: ArrayLike) -> Tensor:
        return _values(values, self.n_lat, self.n_lon)


def _queries(query_lat: ArrayLike, query_lon: ArrayLike, names: Tuple[str, str]) -> Tuple[Tensor, Tensor]:
    qlat = _as_tensor(query_lat, torch.float64)
    qlon = _as_tensor(query_lon, torch.float64)
    if qlat.shape != qlon.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(qlat.shape)} and "
                         f"{tuple(qlon.shape)}")
    check_finite(qlat, names[0])
    check_finite(qlon, names[1])
    return _check_lat_range(qlat, names[0]), qlon


def _locate(nodes: Tensor, q: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Left and right node of the interval of the ascending ``nodes`` holding each ``q``, and the fraction in it."""
    if nodes.numel() == 1:
        zero = torch.zeros(q.shape, dtype=torch.long, device=q.device)
        return zero, zero, torch.zeros_like(q)
    i1 = torch.searchsorted(nodes, q.contiguous(), right=True).clamp(1, nodes.numel() - 1)
    i0 = i1 - 1
    w = ((q - nodes[i0]) / (nodes[i1] - nodes[i0])).clamp(0.0, 1.0)
    return i0, i1, w


def _edge_tol(dtype: torch.dtype, magnitude: float = 360.0) -> float:
    """Degrees a query may lie outside a regional grid and still count as on its edge: a few units in the last
    place of ``dtype`` (the queries' own precision) at ``magnitude`` degrees, at least ``_EDGE_TOL``."""
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    return max(_EDGE_TOL, 8.0 * eps * magnitude)


def _inside(q: Tensor, lo: float, hi: float, name: str, what: str, tol: Union[float, Tensor]) -> Tensor:
    bad = (q < lo - tol) | (q > hi + tol)
    if bool(bad.any()):
        raise ValueError(f"{name} has {int(bad.sum())} points outside the grid's {what} "
                         "(a regional grid: its longitudes do not go round the globe, and it is not extrapolated)")
    return q.clamp(lo, hi)


def _interpolate(values: Tensor, src: _SourceGrid, qlat: Tensor, qlon: Tensor, method: str,
                 names: Tuple[str, str], tol: float = _EDGE_TOL) -> Tensor:
    """Values ``[..., n_lat, n_lon]`` at the flat queries ``[M]`` (float64 degrees) -> ``[..., M]``; a query within
    ``tol`` degrees (of arc: longitudes ``tol / cos(lat)``) outside a regional grid is on its edge."""
    dev = values.device
    qlat, qlon = qlat.to(dev), qlon.to(dev)
    lat_nodes, lon_nodes = src.lat_nodes.to(dev), src.lon_nodes.to(dev)
    rows, cols, virtual = src.rows.to(dev), src.cols.to(dev), src.virtual.to(dev)
    # Longitudes into [first node, first node + 360).
    start = float(lon_nodes[0])
    qlon = start + torch.remainder(qlon - start, 360.0)
    if not src.periodic:
        end = float(lon_nodes[-1])
        # a longitude's error grows as 1 / cos(latitude) (capped at the pole's neighbourhood)
        lon_tol = tol / torch.cos(torch.deg2rad(qlat)).clamp_min(1e-3)
        # just west of the first column (within the tolerance) wrapped to the far end: bring it back
        qlon = torch.where((qlon > end + lon_tol) & (qlon - 360.0 >= start - lon_tol), qlon - 360.0, qlon)
        qlon = _inside(qlon, start, end, names[1], f"longitudes (east from {start % 360:g} to {end % 360:g})",
                       lon_tol)
        lat_lo, lat_hi = float(lat_nodes[0]), float(lat_nodes[-1])
        qlat = _inside(qlat, lat_lo, lat_hi, names[0], f"latitudes ({lat_lo:g} to {lat_hi:g})", tol)
    r0, r1, wy = _locate(lat_nodes, qlat)
    c0, c1, wx = _locate(lon_nodes, qlon)
    if method == "nearest":  # ties go to the lower node, as scipy's RegularGridInterpolator
        r = torch.where(wy > 0.5, r1, r0)[None]
        c = torch.where(wx > 0.5, c1, c0)[None]
        weights = None
    else:
        r = torch.stack((r0, r0, r1, r1))
        c = torch.stack((c0, c1, c0, c1))
        weights = torch.stack(((1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx)).to(values.dtype)
    flat = values.reshape(*values.shape[:-2], src.n_lat * src.n_lon)
    index = rows[r] * src.n_lon + cols[c]
    corners = flat.index_select(-1, index.reshape(-1)).reshape(*flat.shape[:-1], *index.shape)
    if src.has_virtual:
        south = values[..., src.south_row, :].mean(-1)[..., None, None]
        north = values[..., src.north_row, :].mean(-1)[..., None, None]
        kind = virtual[r]
        corners = torch.where(kind == 1, south, torch.where(kind == 2, north, corners))
    if weights is None:
        return corners[..., 0, :]
    # A corner with weight 0 is not read (a missing value there, NaN, must not reach the result); one with a
    # positive weight is: a missing corner makes the result missing.
    return torch.where(weights > 0, corners * weights, torch.zeros((), dtype=corners.dtype)).sum(-2)


# -- public ----------------------------------------------------------------------------------
def interpolate_latlon(
    values: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    query_lat: ArrayLike,
    query_lon: ArrayLike,
    method: str = "bilinear",
) -> Tensor:
    r"""Values of a field on a latitude/longitude grid at arbitrary points of the sphere.

    The grid is rectilinear: ``values[..., i, j]`` is the field at latitude
    :math:`\varphi_i` = ``lat[i]`` and longitude :math:`\lambda_j` = ``lon[j]``
    (degrees). Latitudes may be north-first or south-first and need not reach
    the poles; longitudes may come in any order (0..360, -180..180, ...).
    ``"bilinear"`` interpolates linearly in latitude and in longitude within the
    grid cell :math:`[\varphi_i, \varphi_{i+1}] \times [\lambda_j, \lambda_{j+1}]`
    holding the query :math:`(\varphi, \lambda)`:

    .. math::
        f(\varphi, \lambda) = (1 - t)(1 - u) f_{i,j} + (1 - t)\,u\, f_{i,j+1}
            + t\,(1 - u) f_{i+1,j} + t\,u\, f_{i+1,j+1},
        \qquad t = \frac{\varphi - \varphi_i}{\varphi_{i+1} - \varphi_i},\quad
        u = \frac{\lambda - \lambda_j}{\lambda_{j+1} - \lambda_j},

    so it returns the grid values at the grid points and reproduces any function
    linear in :math:`(\varphi, \lambda)` inside the grid. ``"nearest"`` takes
    the value of the corner nearest along each axis (ties go to the smaller
    latitude or longitude).

    **Global grids.** When the longitudes are evenly spaced all around the
    circle (:math:`n_\text{lon} \ge 2` gaps of :math:`360°/n_\text{lon}`, as
    :attr:`LatLonGrid.is_global_lon`), longitude is periodic: the cell between
    the last and the first column is interpolated like any other. A row at
    :math:`\pm 90°` is data like any other row. If the outermost row on a side
    is *not* a pole, the pole gets the mean of that row's values (the pole is
    one point, as with ``LatLonGrid(collapse_poles=True)``), and queries between
    that row and the pole interpolate linearly in latitude towards it.

    **Regional grids** (any other longitudes) are not extrapolated: every query
    must lie within the grid's latitude and longitude range.

    Args:
        values (Tensor): The field on the grid; float32 or float64, on any device.
        lat (array): Latitudes :math:`\varphi_i` in degrees, strictly monotone, in :math:`[-90, 90]`.
        lon (array): Longitudes :math:`\lambda_j` in degrees, distinct modulo 360.
        query_lat (array): Latitudes of the queries in degrees, in :math:`[-90, 90]`.
        query_lon (array): Longitudes of the queries in degrees (any range; taken modulo 360).
        method (str): ``"bilinear"`` or ``"nearest"``. (default: ``"bilinear"``)

    Returns:
        Tensor: The field at the queries, with the dtype and device of ``values``.

    Raises:
        ValueError: ``values`` does not end in ``(len(lat), len(lon))``; ``lat`` is not strictly
            monotone or leaves :math:`[-90, 90]`; ``lon`` repeats a longitude; ``values`` or a query
            contains NaN/Inf; ``query_lat`` and ``query_lon`` differ in shape; a query lies outside
            a regional grid; or ``method`` is unknown.

    Shapes:
        - **values:** :math:`(*, n_\text{lat}, n_\text{lon})`
        - **lat, lon:** :math:`(n_\text{lat})`, :math:`(n_\text{lon})`
        - **query_lat, query_lon:** :math:`(M)` (any shape :math:`Q`, the same for both)
        - **output:** :math:`(*, M)` (:math:`(*, Q)`)

    Example:
        >>> import torch
        >>> from pcfunc.data import interpolate_latlon
        >>> lat, lon = torch.tensor([10.0, 0.0]), torch.arange(0.0, 360.0, 90.0)
        >>> values = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
        >>> interpolate_latlon(values, lat, lon, torch.tensor([5.0, 10.0]), torch.tensor([315.0, -45.0]))
        tensor([4.5000, 2.5000])
    """
    method = _check_method(method, _INTERPOLATION_METHODS)
    src = _SourceGrid(lat, lon)
    v = src.check_values(values)
    dtypes = [t.dtype if isinstance(t, Tensor) else torch.as_tensor(np.asarray(t)).dtype
              for t in (query_lat, query_lon)]
    tol = max(_edge_tol(d) for d in dtypes)
    qlat, qlon = _queries(query_lat, query_lon, ("query_lat", "query_lon"))
    out = _interpolate(v, src, qlat.reshape(-1), qlon.reshape(-1), method, ("query_lat", "query_lon"), tol)
    return out.reshape(*v.shape[:-2], *qlat.shape)


def interpolate_to_points(
    values: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    pos: Tensor,
    method: str = "bilinear",
) -> Tensor:
    r"""A lat/lon field at points of the sphere given as unit vectors, e.g. the ``pos`` of a finer grid.

    The points :math:`(x, y, z) = (\cos\varphi\cos\lambda,\ \cos\varphi\sin\lambda,\ \sin\varphi)`
    are converted with :func:`pcfunc.manifolds.xyz_to_latlon` and the field is
    evaluated by :func:`interpolate_latlon` (see there for the rules at the
    poles and across the date line). This is the bilinear super-resolution
    baseline: values known on a coarse :class:`LatLonGrid`, predicted at the
    points of a finer one.

    Args:
        values (Tensor): The field on the grid (channels first: move a channel-last axis with
            ``values.movedim(-1, 0)``).
        lat (array): Latitudes of the grid in degrees, strictly monotone.
        lon (array): Longitudes of the grid in degrees, distinct modulo 360.
        pos (Tensor): The points; need not have exactly unit norm.
        method (str): ``"bilinear"`` or ``"nearest"``. (default: ``"bilinear"``)

    Returns:
        Tensor: The field at the points, with the dtype and device of ``values``.

    Shapes:
        - **values:** :math:`(*, n_\text{lat}, n_\text{lon})`
        - **pos:** :math:`(M, 3)`
        - **output:** :math:`(*, M)`

    Example:
        >>> import torch
        >>> from pcfunc.data import LatLonGrid, interpolate_to_points
        >>> coarse, fine = LatLonGrid.regular(46, 90), LatLonGrid.regular(181, 360)
        >>> x = torch.rand(coarse.num_points, 2)                    # point values on the coarse grid
        >>> arr = coarse.to_array(x)                                # (46, 90, 2)
        >>> pred = interpolate_to_points(arr.movedim(-1, 0), coarse.lat, coarse.lon, fine.pos).T
        >>> pred.shape                                              # (fine.num_points, 2)
        torch.Size([64442, 2])
    """
    method = _check_method(method, _INTERPOLATION_METHODS)
    src = _SourceGrid(lat, lon)
    v = src.check_values(values)
    if not isinstance(pos, Tensor):
        pos = _as_tensor(pos)
    check_points(pos, "pos", 3)
    qlat, qlon = xyz_to_latlon(pos.to(torch.float64))
    qlat = _check_lat_range(qlat, "pos")
    # Unit vectors carry an error of a few ulps of their dtype, in radians: a grid's own edge row comes back from
    # float32 xyz up to ~2e-6 degrees outside the box. Points are usually a grid's float32 ``pos``, even when handed
    # over in float64, so float32's precision is the least tolerance.
    precision = pos.dtype if pos.dtype.is_floating_point and torch.finfo(pos.dtype).eps > 1.2e-7 else torch.float32
    return _interpolate(v, src, qlat, qlon, method, ("pos", "pos"), _edge_tol(precision, math.degrees(1.0)))


def _regrid_dataarray(da: Any, new_lat: ArrayLike, new_lon: ArrayLike, method: str) -> Any:
    """:func:`regrid` of an :class:`xarray.DataArray` whose last two dimensions are latitude and longitude."""
    import xarray as xr

    if da.ndim < 2:
        raise ValueError(f"values: a DataArray needs latitude and longitude as its last two dimensions, got {da.dims}")
    la, lo = (str(d) for d in da.dims[-2:])
    for d in (la, lo):
        if d not in da.coords:
            raise ValueError(f"values: the DataArray's dimension {d!r} has no coordinate values (the last two "
                             "dimensions must be latitude and longitude, in degrees)")
    out = regrid(torch.as_tensor(np.asarray(da.values)), np.asarray(da[la].values), np.asarray(da[lo].values),
                 new_lat, new_lon, method)
    nlat = np.asarray(new_lat.cpu() if isinstance(new_lat, Tensor) else new_lat, dtype=np.float64).reshape(-1)
    nlon = np.asarray(new_lon.cpu() if isinstance(new_lon, Tensor) else new_lon, dtype=np.float64).reshape(-1)
    coords = {k: v for k, v in da.coords.items() if la not in v.dims and lo not in v.dims}
    coords[la] = xr.Variable(la, nlat, da[la].attrs)
    coords[lo] = xr.Variable(lo, nlon, da[lo].attrs)
    return xr.DataArray(out.numpy(), dims=da.dims, coords=coords, name=da.name,
                        attrs=dict(da.attrs, regrid_method=method))


def regrid(
    values: Any,
    lat: Optional[ArrayLike],
    lon: Optional[ArrayLike],
    new_lat: ArrayLike,
    new_lon: ArrayLike,
    method: str = "bilinear",
) -> Any:
    r"""A field on one lat/lon grid brought onto another (any resolutions; no stride relation needed).

    ``"bilinear"`` and ``"nearest"`` evaluate :func:`interpolate_latlon` at
    every point :math:`(\varphi'_k, \lambda'_l)` of the new grid (see there for
    the rules at the poles, across the date line and for regional grids).

    ``"conservative"`` is first-order area-weighted remapping, for coarsening
    (e.g. 0.25° to 3°): with the cells of :func:`latlon_cell_area` on both
    grids, a new cell :math:`T` gets the area-weighted mean of the source cells
    :math:`S` it overlaps,

    .. math::
        f'_T = \frac{\sum_S |T \cap S|\, f_S}{\sum_S |T \cap S|}, \qquad
        |T \cap S| = \Delta(\sin\varphi)_{T \cap S}\, \Delta\lambda_{T \cap S},

    which is exact for constant fields and, when both grids cover the sphere,
    keeps the area-weighted global mean :math:`\sum_T A_T f'_T / 4\pi =
    \sum_S A_S f_S / 4\pi`. A new cell only partly covered by a regional source
    grid takes the mean over the covered part; one not covered at all is an
    error. Conservative remapping needs at least 2 latitudes and 2 longitudes
    on each grid.

    Missing values (NaN: land in a sea-surface temperature field) are never
    filled: a bilinear or nearest value that reads a missing one (with a
    positive weight) is missing; a conservative cell takes the mean over its
    valid part (the sums above over the valid :math:`S` only), and is missing
    when none of it is valid.

    An :class:`xarray.DataArray` whose last two dimensions are latitude and longitude (with ``lat=None,
    lon=None``: its coordinates are the source axes) gives a DataArray back: the same dimensions, the new axes as
    their coordinates (attributes kept), the other coordinates, name and attributes kept, and ``regrid_method``.

    Args:
        values (Tensor or xarray.DataArray): The field on the source grid; float32 or float64, on any device.
        lat (array): Source latitudes in degrees, strictly monotone (north- or south-first), in :math:`[-90, 90]`
            (``None`` for a DataArray).
        lon (array): Source longitudes in degrees, distinct modulo 360 (0..360, -180..180, ...) (``None`` for a
            DataArray).
        new_lat (array): Latitudes of the new grid, same rules.
        new_lon (array): Longitudes of the new grid, same rules; the output columns follow their order.
        method (str): ``"bilinear"``, ``"nearest"`` or ``"conservative"``. (default: ``"bilinear"``)

    Returns:
        Tensor: The field on the new grid, with the dtype and device of ``values`` (a DataArray for a DataArray).

    Raises:
        ValueError: As :func:`interpolate_latlon`, with the new axes named ``new_lat`` and ``new_lon``.

    Shapes:
        - **values:** :math:`(*, n_\text{lat}, n_\text{lon})`
        - **output:** :math:`(*, n'_\text{lat}, n'_\text{lon})` with :math:`n'` the lengths of ``new_lat``, ``new_lon``

    Example:
        >>> import torch
        >>> from pcfunc.data import regrid
        >>> lat, lon = torch.linspace(90, -90, 181), torch.arange(360.0)              # 1°, poles included
        >>> new_lat, new_lon = torch.arange(-88.5, 90, 3.0), torch.arange(1.5, 360, 3.0)  # 3° cell centres
        >>> regrid(torch.rand(4, 181, 360), lat, lon, new_lat, new_lon, "conservative").shape
        torch.Size([4, 60, 120])
    """
    if type(values).__name__ == "DataArray" and type(values).__module__.startswith("xarray"):
        if lat is not None or lon is not None:
            raise ValueError("regrid of a DataArray reads lat and lon from its coordinates: pass lat=None, lon=None")
        return _regrid_dataarray(values, new_lat, new_lon, method)
    method = _check_method(method, _REGRID_METHODS)
    src = _SourceGrid(lat, lon)
    v = src.check_values(values)
    nlat = _lat_axis(new_lat, "new_lat")
    nlon = _axis(new_lon, "new_lon")
    _lon_circle(nlon, "new_lon")  # distinct modulo 360
    if method == "conservative":
        return _conservative(v, _lat_axis(lat, "lat"), _axis(lon, "lon"), nlat, nlon)
    qlat = nlat[:, None].expand(nlat.numel(), nlon.numel()).reshape(-1)
    qlon = nlon[None, :].expand(nlat.numel(), nlon.numel()).reshape(-1)
    out = _interpolate(v, src, qlat, qlon, method, ("new_lat", "new_lon"))
    return out.reshape(*v.shape[:-2], nlat.numel(), nlon.numel())

