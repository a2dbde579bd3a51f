"""Interpolation and regridding of fields on latitude/longitude grids (bilinear, nearest, conservative)."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .._validation import check_finite, check_points
from ..manifolds import xyz_to_latlon
from ._grids import ArrayLike
from ._grids import _as_tensor as _grid_tensor

__all__ = ["interpolate_latlon", "interpolate_to_points", "regrid", "latlon_cell_area"]

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
def _as_tensor(a: ArrayLike, dtype: Optional[torch.dtype] = None) -> Tensor:
    """As the grids' conversion, also for NumPy arrays with negative strides (e.g. ``lat[::-1]``)."""
    return _grid_tensor(a if isinstance(a, Tensor) else np.ascontiguousarray(a), dtype)


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


def _inside(q: Tensor, lo: float, hi: float, name: str, what: str) -> Tensor:
    bad = (q < lo - _EDGE_TOL) | (q > hi + _EDGE_TOL)
    if bool(bad.any()):
        raise ValueError(f"{name} has {int(bad.sum())} points outside the grid's {what} "
                         "(a regional grid: its longitudes do not go round the globe, and it is not extrapolated)")
    return q.clamp(lo, hi)


def _interpolate(values: Tensor, src: _SourceGrid, qlat: Tensor, qlon: Tensor, method: str,
                 names: Tuple[str, str]) -> Tensor:
    """Values ``[..., n_lat, n_lon]`` at the flat queries ``[M]`` (float64 degrees) -> ``[..., M]``."""
    dev = values.device
    qlat, qlon = qlat.to(dev), qlon.to(dev)
    lat_nodes, lon_nodes = src.lat_nodes.to(dev), src.lon_nodes.to(dev)
    rows, cols, virtual = src.rows.to(dev), src.cols.to(dev), src.virtual.to(dev)
    # Longitudes into [first node, first node + 360).
    start = float(lon_nodes[0])
    qlon = start + torch.remainder(qlon - start, 360.0)
    if not src.periodic:
        end = float(lon_nodes[-1])
        # just west of the first column (within the tolerance) wrapped to the far end: bring it back
        qlon = torch.where((qlon > end + _EDGE_TOL) & (qlon - 360.0 >= start - _EDGE_TOL), qlon - 360.0, qlon)
        qlon = _inside(qlon, start, end, names[1], f"longitudes (east from {start % 360:g} to {end % 360:g})")
        lat_lo, lat_hi = float(lat_nodes[0]), float(lat_nodes[-1])
        qlat = _inside(qlat, lat_lo, lat_hi, names[0], f"latitudes ({lat_lo:g} to {lat_hi:g})")
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
    return (corners * weights).sum(-2)


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
    qlat, qlon = _queries(query_lat, query_lon, ("query_lat", "query_lon"))
    out = _interpolate(v, src, qlat.reshape(-1), qlon.reshape(-1), method, ("query_lat", "query_lon"))
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
    return _interpolate(v, src, qlat, qlon, method, ("pos", "pos"))


def _lat_edges(lat: Tensor, name: str) -> Tuple[Tensor, Tensor]:
    """Southern and northern cell edge of each latitude (entries in the order of ``lat``)."""
    if lat.numel() < 2:
        raise ValueError(f"{name} needs at least 2 latitudes for cell edges, got {lat.numel()}")
    order = torch.argsort(lat)
    s = lat[order]
    mid = (s[1:] + s[:-1]) / 2
    lo = torch.cat((2 * s[:1] - mid[:1], mid)).clamp(-90.0, 90.0)
    hi = torch.cat((mid, 2 * s[-1:] - mid[-1:])).clamp(-90.0, 90.0)
    return torch.empty_like(lo).index_copy_(0, order, lo), torch.empty_like(hi).index_copy_(0, order, hi)


def _lon_edges(lon: Tensor, name: str) -> Tuple[Tensor, Tensor]:
    """Western and eastern cell edge of each longitude (unwrapped: east > west; in the order of ``lon``)."""
    if lon.numel() < 2:
        raise ValueError(f"{name} needs at least 2 longitudes for cell edges, got {lon.numel()}")
    s, order, periodic = _lon_circle(lon, name)
    mid = (s[1:] + s[:-1]) / 2
    if periodic:
        first = (s[:1] + s[-1:] - 360.0) / 2
        last = first + 360.0
    else:
        first, last = 2 * s[:1] - mid[:1], 2 * s[-1:] - mid[-1:]
    lo, hi = torch.cat((first, mid)), torch.cat((mid, last))
    return torch.empty_like(lo).index_copy_(0, order, lo), torch.empty_like(hi).index_copy_(0, order, hi)


def latlon_cell_area(lat: ArrayLike, lon: ArrayLike) -> Tensor:
    r"""Area of each cell of a lat/lon grid on the unit sphere (steradians).

    Cells are bounded by the midpoints between neighbouring latitudes and
    longitudes. On the outside, a cell extends half a grid step beyond its
    centre, clipped at the poles (so a row at :math:`\pm 90°` has half-height
    cells); on a global grid (see :func:`interpolate_latlon`) the first and last
    columns meet halfway across the wrap. The area of the cell
    :math:`[\varphi_-, \varphi_+] \times [\lambda_-, \lambda_+]` is

    .. math::
        A = (\sin\varphi_+ - \sin\varphi_-)\,(\lambda_+ - \lambda_-),

    with :math:`\lambda` in radians, so the cells of a global grid add up to
    :math:`4\pi`, and :math:`A \approx \cos\varphi\,\Delta\varphi\,\Delta\lambda`:
    the weights of area-weighted means (as kept by ``regrid(..., method="conservative")``).

    Args:
        lat (array): Latitudes in degrees, strictly monotone, at least 2.
        lon (array): Longitudes in degrees, distinct modulo 360, at least 2.

    Returns:
        Tensor: float64 areas, one per cell.

    Shapes:
        - **output:** :math:`(n_\text{lat}, n_\text{lon})`
    """
    lat_lo, lat_hi = _lat_edges(_lat_axis(lat, "lat"), "lat")
    lon_lo, lon_hi = _lon_edges(_axis(lon, "lon"), "lon")
    dsin = torch.sin(torch.deg2rad(lat_hi)) - torch.sin(torch.deg2rad(lat_lo))
    return dsin[:, None] * torch.deg2rad(lon_hi - lon_lo)[None, :]


def _lat_overlap(t_lo: Tensor, t_hi: Tensor, s_lo: Tensor, s_hi: Tensor) -> Tensor:
    """``[T, S]``: the :math:`\\Delta\\sin\\varphi` shared by target cell rows and source cell rows."""
    lo = torch.maximum(t_lo[:, None], s_lo[None, :])
    hi = torch.minimum(t_hi[:, None], s_hi[None, :])
    return (torch.sin(torch.deg2rad(hi)) - torch.sin(torch.deg2rad(lo))).clamp(min=0.0)


def _lon_overlap(t_lo: Tensor, t_hi: Tensor, s_lo: Tensor, s_hi: Tensor) -> Tensor:
    """``[T, S]``: the longitude span (degrees) shared by target and source cell columns, on the circle."""
    base = float(s_lo.min())
    shifted_lo = base + torch.remainder(t_lo - base, 360.0)  # each target cell from [base, base + 360)
    shifted_hi = shifted_lo + (t_hi - t_lo)
    out = torch.zeros(t_lo.numel(), s_lo.numel(), dtype=torch.float64)
    for k in (-1, 0, 1):  # both intervals are at most 360° long: these copies cover every overlap
        lo = torch.maximum(shifted_lo[:, None] + 360.0 * k, s_lo[None, :])
        hi = torch.minimum(shifted_hi[:, None] + 360.0 * k, s_hi[None, :])
        out += (hi - lo).clamp(min=0.0)
    return out


def _conservative(values: Tensor, lat: Tensor, lon: Tensor, new_lat: Tensor, new_lon: Tensor) -> Tensor:
    s_lat, s_lon = _lat_edges(lat, "lat"), _lon_edges(lon, "lon")
    t_lat, t_lon = _lat_edges(new_lat, "new_lat"), _lon_edges(new_lon, "new_lon")
    w_lat = _lat_overlap(*t_lat, *s_lat)
    w_lon = _lon_overlap(*t_lon, *s_lon)
    for w, name, axis in ((w_lat, "new_lat", new_lat), (w_lon, "new_lon", new_lon)):
        empty = w.sum(1) <= 0
        if bool(empty.any()):
            raise ValueError(f"{name} has {int(empty.sum())} cells that no cell of the source grid overlaps "
                             f"(first at {float(axis[empty][0])} degrees)")
    # Overlaps are products of a latitude and a longitude factor, so the remap is separable; each row of the
    # normalised weights sums to 1 (the covered part of a target cell).
    w_lat = (w_lat / w_lat.sum(1, keepdim=True)).to(values.device, values.dtype)
    w_lon = (w_lon / w_lon.sum(1, keepdim=True)).to(values.device, values.dtype)
    return torch.matmul(torch.matmul(w_lat, values), w_lon.T)


def regrid(
    values: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    new_lat: ArrayLike,
    new_lon: ArrayLike,
    method: str = "bilinear",
) -> Tensor:
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

    Args:
        values (Tensor): The field on the source grid; float32 or float64, on any device.
        lat (array): Source latitudes in degrees, strictly monotone (north- or south-first), in :math:`[-90, 90]`.
        lon (array): Source longitudes in degrees, distinct modulo 360 (0..360, -180..180, ...).
        new_lat (array): Latitudes of the new grid, same rules.
        new_lon (array): Longitudes of the new grid, same rules; the output columns follow their order.
        method (str): ``"bilinear"``, ``"nearest"`` or ``"conservative"``. (default: ``"bilinear"``)

    Returns:
        Tensor: The field on the new grid, with the dtype and device of ``values``.

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
