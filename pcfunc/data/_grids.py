"""Grids that own a layout of points: images, voxels and latitude/longitude grids, with their dense <-> point
converters."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from .._validation import check_finite
from ..manifolds import Euclidean, Manifold, Sphere
from ..manifolds._sphere import latlon_to_xyz
from ._arrays import ArrayLike, _as_tensor
from ._cell_area import latlon_cell_area
from ._latlon_axes import _lat_axis

__all__ = ["Grid", "ImageGrid", "VoxelGrid", "LatLonGrid"]


class Grid:
    r"""A fixed set of sample locations with an array layout: array :math:`\leftrightarrow` point cloud.

    A grid knows its points ``pos`` (shape :math:`(N, D)`, in the manifold's
    ambient coordinates) and how array values of spatial shape :attr:`shape`
    map onto them. Batches of clouds on one grid share their coordinates, so
    :mod:`pcfunc.ops` computes their neighbour hierarchy once.
    """

    #: The manifold the points live on.
    manifold: Manifold
    #: Spatial shape of the arrays (e.g. ``(H, W)`` or ``(n_lat, n_lon)``).
    shape: Tuple[int, ...]
    #: The points, shape :math:`(N, D)`.
    pos: Tensor

    @property
    def num_points(self) -> int:
        """Number of points :math:`N` (fewer than array cells when poles are collapsed)."""
        return self.pos.size(0)

    # -- subclasses map array cells to points ---------------------------------------
    @property
    def is_global(self) -> bool:
        """Whether the grid covers the globe (longitudes all round,
        :attr:`LatLonGrid.is_global_lon <pcfunc.data.LatLonGrid.is_global_lon>`, and latitudes from pole to pole, or
        nearly: a span over 150 degrees)."""
        return self.is_global_lon and float(self.lat.max()) - float(self.lat.min()) > 150.0

    def _gather(self, values: Tensor) -> Tensor:
        """Values of shape ``[*lead, *shape, C]`` to point values ``[*lead, N, C]``."""
        return values.reshape(*values.shape[: values.dim() - len(self.shape) - 1], self.num_points, values.size(-1))

    def _scatter(self, x: Tensor) -> Tensor:
        """Point values ``[*lead, N, C]`` to array values ``[*lead, *shape, C]``."""
        return x.reshape(*x.shape[:-2], *self.shape, x.size(-1))

    # -- public -----------------------------------------------------------------------
    def _values(self, values: ArrayLike, lead: int, allow_nan: bool = False) -> Tuple[Tensor, bool]:
        v = _as_tensor(values)
        squeeze = v.dim() == lead + len(self.shape)
        if squeeze:
            v = v.unsqueeze(-1)
        if v.dim() != lead + len(self.shape) + 1 or tuple(v.shape[lead:lead + len(self.shape)]) != self.shape:
            want = ("B, " if lead else "") + ", ".join(map(str, self.shape))
            raise ValueError(f"values must have shape [{want}] or [{want}, C], got {tuple(v.shape)}")
        check_finite(torch.where(torch.isnan(v), 0.0, v) if allow_nan else v, "values")
        return v, squeeze

    def to_data(self, values: ArrayLike, drop_missing: bool = False) -> Data:
        r"""One array to a :class:`~torch_geometric.data.Data` with ``pos`` :math:`(N, D)` and ``x`` :math:`(N, C)`.

        Args:
            values: Shape :attr:`shape` (one channel) or ``(*shape, C)``.
            drop_missing (bool): Leave out the points whose value is missing (NaN in any channel or, for a
                point standing for several cells such as a collapsed pole, any cell); otherwise NaN is an
                error. (default: ``False``)
        """
        v, _ = self._values(values, 0, allow_nan=drop_missing)
        pos, x = self.pos.to(v.dtype), self._gather(v)
        if drop_missing:
            keep = ~torch.isnan(x).any(-1)
            if not bool(keep.all()):
                pos, x = pos[keep], x[keep]
        return Data(pos=pos, x=x)

    def to_points(self, values: ArrayLike) -> Tensor:
        r"""Arrays ``(*lead, *shape[, C])`` to point values :math:`(*lead, N, C)`, the layout of
        :mod:`pcfunc.evaluation`; a missing value (NaN) stays NaN (a point standing for several cells, such as a
        collapsed pole, is NaN if any of them is)."""
        v = _as_tensor(values)
        k = len(self.shape)
        if v.dim() >= k and tuple(v.shape[v.dim() - k:]) == self.shape:
            v = v.unsqueeze(-1)
        if v.dim() < k + 1 or tuple(v.shape[v.dim() - k - 1:-1]) != self.shape:
            raise ValueError(f"values must have shape [..., {', '.join(map(str, self.shape))}] or [..., "
                             f"{', '.join(map(str, self.shape))}, C], got {tuple(v.shape)}")
        check_finite(torch.where(torch.isnan(v), 0.0, v), "values")
        lead = v.shape[:v.dim() - k - 1]
        flat = v.reshape(-1, *self.shape, v.size(-1))
        return self._gather(flat).reshape(*lead, self.num_points, v.size(-1))

    def to_batch(self, values: ArrayLike) -> Batch:
        r"""A stack of arrays ``(B, *shape[, C])`` to one packed PyG :class:`~torch_geometric.data.Batch`."""
        v, _ = self._values(values, 1)
        B = v.size(0)
        x = self._gather(v).reshape(B * self.num_points, v.size(-1))
        pos = self.pos.to(v.dtype).repeat(B, 1)
        batch = torch.arange(B).repeat_interleave(self.num_points)
        ptr = torch.arange(B + 1) * self.num_points
        return Batch(pos=pos, x=x, batch=batch, ptr=ptr)

    def to_array(self, x: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        r"""Point values back to arrays.

        Args:
            x (Tensor): Shape :math:`(N, C)` for one cloud, :math:`(B N, C)` packed with ``batch``, or
                :math:`(B, N, C)` for ``B`` clouds (the layout of :meth:`to_points`).
            batch (Tensor, optional): Cloud index of each row of ``x`` (clouds of equal size, in order).

        Returns:
            Tensor: ``(*shape, C)``, or ``(B, *shape, C)`` when ``batch`` is given or ``x`` is 3-D.
        """
        if x.dim() == 3 and batch is None:
            if x.size(1) != self.num_points:
                raise ValueError(f"x has {x.size(1)} points per cloud but the grid has {self.num_points}")
            return self._scatter(x)
        if x.dim() != 2:
            raise ValueError(f"x must have shape [N, C] or [B, N, C], got {tuple(x.shape)}")
        if batch is None:
            if x.size(0) != self.num_points:
                raise ValueError(f"x has {x.size(0)} rows but the grid has {self.num_points} points")
            return self._scatter(x)
        if batch.numel() != x.size(0):
            raise ValueError(f"batch has {batch.numel()} entries but x has {x.size(0)} rows")
        if x.size(0) % self.num_points:
            raise ValueError(f"x has {x.size(0)} rows, not a multiple of the grid's {self.num_points} points")
        return self._scatter(x.view(-1, self.num_points, x.size(1)))

    def super_resolution(self, factor: int = 2) -> "Grid":
        """A finer grid containing every point of this one."""
        raise NotImplementedError(f"{type(self).__name__} has no super-resolution grid")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, num_points={self.num_points})"


def _check_factor(factor: int) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    return factor


class ImageGrid(Grid):
    r"""The pixel grid of an image of ``height`` x ``width``, on :math:`[-1, 1]^2`.

    Point :math:`(i, j)` (row, column) has coordinates
    :math:`(-1 + 2i/(H-1),\ -1 + 2j/(W-1))`, rows varying slowest, as
    :meth:`pcfunc.manifolds.Euclidean.grid`. Values are channel-last arrays
    ``(H, W)`` or ``(H, W, C)``.
    """

    def __init__(self, height: int, width: int) -> None:
        self.manifold = Euclidean(2)
        self.shape = (int(height), int(width))
        self.pos = self.manifold.grid(self.shape)

    def super_resolution(self, factor: int = 2) -> "ImageGrid":
        r"""The grid with :math:`f(H-1)+1` rows and :math:`f(W-1)+1` columns; it contains this grid's points."""
        f = _check_factor(factor)
        return type(self)(*(f * (n - 1) + 1 for n in self.shape))


class VoxelGrid(Grid):
    r"""The voxel grid ``depth`` x ``height`` x ``width`` on :math:`[-1, 1]^3` (see :class:`ImageGrid`)."""

    def __init__(self, depth: int, height: int, width: int) -> None:
        self.manifold = Euclidean(3)
        self.shape = (int(depth), int(height), int(width))
        self.pos = self.manifold.grid(self.shape)

    def super_resolution(self, factor: int = 2) -> "VoxelGrid":
        f = _check_factor(factor)
        return type(self)(*(f * (n - 1) + 1 for n in self.shape))


class LatLonGrid(Grid):
    r"""A latitude/longitude grid on the sphere, with each pole a single point.

    Built from the coordinate axes of the data (degrees; latitude north-first
    or south-first, longitude 0..360 or -180..180), e.g. the ``latitude`` and
    ``longitude`` of an ERA5 file. A row at latitude :math:`\pm 90` holds
    ``n_lon`` copies of one location: with ``collapse_poles=True`` (default) it
    becomes **one** point whose value is the mean of the row, and
    :meth:`~pcfunc.data.Grid.to_array` writes that value back to every cell of the row. Points
    are ordered row by row (longitude fastest), a pole row contributing its
    single point, so :meth:`regular` gives the order of
    :meth:`pcfunc.manifolds.Sphere.grid`.

    Args:
        lat (array): Latitudes in degrees, strictly monotone, in :math:`[-90, 90]`.
        lon (array): Longitudes in degrees, distinct modulo 360 (any order, e.g. 0..360 or -180..180).
        collapse_poles (bool): Merge each pole row into one point. (default: ``True``)
    """

    def __init__(self, lat: ArrayLike, lon: ArrayLike, collapse_poles: bool = True) -> None:
        lat_t = _as_tensor(lat, torch.float64).reshape(-1)
        lon_t = _as_tensor(lon, torch.float64).reshape(-1)
        for name, a in (("lat", lat_t), ("lon", lon_t)):
            if a.numel() < 1:
                raise ValueError(f"{name} must not be empty")
            check_finite(a, name)

        lat_t = _lat_axis(lat_t, "lat")
        wrapped = torch.remainder(lon_t, 360.0)
        if torch.unique(torch.round(wrapped * 1e6)).numel() != lon_t.numel():
            raise ValueError("lon has values equal modulo 360 (e.g. both 0 and 360); drop the repeated column")
        self.manifold = Sphere()
        self.lat, self.lon = lat_t, lon_t
        self.shape = (lat_t.numel(), lon_t.numel())
        self.collapse_poles = bool(collapse_poles)
        self._pole = (lat_t.abs() - 90.0).abs() < 1e-9 if collapse_poles else torch.zeros_like(lat_t, dtype=torch.bool)
        # cell -> point map: pole rows map all their cells to one point.
        row_points = torch.where(self._pole, 1, lon_t.numel())
        start = torch.cumsum(row_points, 0) - row_points
        cols = torch.arange(lon_t.numel())
        cell = start[:, None] + torch.where(self._pole[:, None], torch.zeros_like(cols)[None, :], cols[None, :])
        self._cell_to_point = cell.reshape(-1)
        n = int(row_points.sum())
        first_cell = torch.full((n,), -1, dtype=torch.long)
        first_cell.scatter_reduce_(0, self._cell_to_point, torch.arange(cell.numel()), "amin", include_self=False)
        self._cells_per_point = torch.bincount(self._cell_to_point, minlength=n)
        lat_cells = lat_t[:, None].expand(self.shape).reshape(-1)
        lon_cells = lon_t[None, :].expand(self.shape).reshape(-1)
        xyz = latlon_to_xyz(lat_cells[first_cell], lon_cells[first_cell])
        pole_pts = self._pole[:, None].expand(self.shape).reshape(-1)[first_cell]
        xyz[pole_pts] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) * torch.sign(lat_cells[first_cell][pole_pts])[:, None]
        self.pos = xyz.to(torch.get_default_dtype())

    @property
    def point_areas(self) -> Tensor:
        r"""The area each point stands for on the unit sphere (steradians, float64, :math:`(N,)`): its cell's
        :func:`~pcfunc.data.latlon_cell_area`, a collapsed pole the whole row's. The weights of area-weighted
        scores (:func:`pcfunc.metrics.weighted_scores`); a global grid's add up to :math:`4\pi`. Needs at least
        two latitudes and two longitudes."""

        cells = latlon_cell_area(self.lat, self.lon).reshape(-1)
        return torch.zeros(self.num_points, dtype=torch.float64).index_add_(0, self._cell_to_point, cells)

    @classmethod
    def regular(cls, n_lat: int, n_lon: int, collapse_poles: bool = True) -> "LatLonGrid":
        r"""``n_lat`` latitudes from 90 to -90 (poles included) and ``n_lon`` longitudes from 0, step :math:`360/n_\text{lon}`."""
        if n_lat < 2 or n_lon < 1:
            raise ValueError(f"need n_lat >= 2 and n_lon >= 1, got n_lat={n_lat}, n_lon={n_lon}")
        lat = torch.linspace(90.0, -90.0, n_lat, dtype=torch.float64)
        lon = torch.arange(n_lon, dtype=torch.float64) * (360.0 / n_lon)
        return cls(lat, lon, collapse_poles=collapse_poles)

    @property
    def is_global_lon(self) -> bool:
        """Whether the longitudes are evenly spaced and wrap around the globe."""
        if self.lon.numel() < 2:
            return False
        step = self.lon[1] - self.lon[0]
        d = self.lon.diff()
        return bool(((d - step).abs() < 1e-6).all()) and abs(abs(float(step)) * self.lon.numel() - 360.0) < 1e-6

    def _gather(self, values: Tensor) -> Tensor:
        lead = values.shape[:-3]
        flat = values.reshape(*lead, -1, values.size(-1))
        n = self.num_points
        out = flat.new_zeros(*lead, n, values.size(-1))
        idx = self._cell_to_point.to(values.device).view(*([1] * len(lead)), -1, 1).expand_as(flat)
        out.scatter_add_(-2, idx, flat)
        return out / self._cells_per_point.to(values.device, values.dtype).view(-1, 1)

    def _scatter(self, x: Tensor) -> Tensor:
        cells = x.index_select(-2, self._cell_to_point.to(x.device))
        return cells.reshape(*x.shape[:-2], *self.shape, x.size(-1))

    def super_resolution(self, factor: int = 2) -> "LatLonGrid":
        r"""The grid with :math:`f(H-1)+1` latitudes and :math:`fW` longitudes (global) or :math:`f(W-1)+1` (regional).

        Requires evenly spaced axes; the result contains every point of this grid.
        """
        f = _check_factor(factor)

        def refine(a: Tensor, periodic: bool) -> Tensor:
            if a.numel() < 2:
                return a.clone()
            step = a[1] - a[0]
            if not bool(((a.diff() - step).abs() < 1e-6).all()):
                raise ValueError("super_resolution needs evenly spaced lat and lon axes")
            n = f * a.numel() if periodic else f * (a.numel() - 1) + 1
            return a[0] + torch.arange(n, dtype=torch.float64) * (step / f)

        return type(self)(refine(self.lat, False), refine(self.lon, self.is_global_lon), self.collapse_poles)

    def __repr__(self) -> str:
        return f"LatLonGrid(n_lat={self.shape[0]}, n_lon={self.shape[1]}, num_points={self.num_points})"


