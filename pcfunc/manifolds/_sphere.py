"""The unit sphere embedded in three dimensions, and conversions between latitude/longitude and xyz."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .._random import randn
from ._base import Manifold, Resolution, _chord_to_angle, _per_axis

__all__ = ["Sphere", "latlon_to_xyz", "xyz_to_latlon"]


def latlon_to_xyz(lat: Tensor, lon: Tensor) -> Tensor:
    r"""Unit vectors from latitude and longitude in degrees.

    .. math::
        (x, y, z) = (\cos\varphi\cos\lambda,\ \cos\varphi\sin\lambda,\ \sin\varphi),

    so :math:`z` points to the north pole and :math:`\lambda = 0` to :math:`+x`.

    Args:
        lat (Tensor): Latitudes :math:`\varphi` in degrees, shape :math:`(*)`.
        lon (Tensor): Longitudes :math:`\lambda` in degrees, broadcastable with ``lat``.

    Returns:
        Tensor: Shape :math:`(*, 3)`.
    """
    phi, lam = torch.deg2rad(lat), torch.deg2rad(lon)
    phi, lam = torch.broadcast_tensors(phi, lam)
    cos_phi = torch.cos(phi)
    return torch.stack((cos_phi * torch.cos(lam), cos_phi * torch.sin(lam), torch.sin(phi)), dim=-1)


def xyz_to_latlon(xyz: Tensor) -> Tuple[Tensor, Tensor]:
    r"""Latitude in :math:`[-90, 90]` and longitude in :math:`(-180, 180]` (degrees) of ``xyz``.

    The inverse of :func:`latlon_to_xyz`; points need not be exactly unit norm.
    At the poles the longitude is 0.
    """
    x, y, z = xyz.unbind(-1)
    lat = torch.rad2deg(torch.atan2(z, torch.hypot(x, y)))
    lon = torch.rad2deg(torch.atan2(y, x))
    return lat, lon


class Sphere(Manifold):
    r"""The unit sphere :math:`S^2 \subset \mathbb{R}^3` with the great-circle distance.

    Points are unit vectors (see :func:`latlon_to_xyz` for the lat/lon
    convention: :math:`z` is the north pole). The distance is

    .. math::
        d(x, y) = \arccos(x^\top y) = 2 \arcsin\big(\tfrac12 \lVert x - y \rVert_2\big),

    evaluated in the second form (argument clamped to :math:`[0, 1]` before
    :math:`\arcsin`), which keeps full precision for nearby points where
    :math:`\arccos` of a dot product close to 1 loses half the digits. As a
    strictly increasing function of the chord length it orders neighbours like
    the ambient Euclidean distance, so :mod:`pcfunc.ops` uses the compiled
    :math:`\ell_2` kernels when they are installed.

    Chart coordinates (:meth:`embed`/:meth:`unembed`) are ``(lat, lon)`` in degrees.
    """

    name = "sphere"
    ambient_dim = 3
    intrinsic_dim = 2  # type: ignore[assignment]
    ambient_euclidean_order = True

    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        return _chord_to_angle(torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist"))

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        # atan2(|x × y|, x·y) is accurate at every angle.
        x, y = torch.broadcast_tensors(x, y)
        cross = torch.linalg.vector_norm(torch.linalg.cross(x, y, dim=-1), dim=-1)
        return torch.atan2(cross, (x * y).sum(-1))

    def random(
        self,
        n: int,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> Tensor:
        """Points uniform on the sphere (normalised Gaussian vectors), shape :math:`(n, 3)`."""
        v = randn((n, 3), generator, device=device, dtype=dtype)
        return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)

    def grid(self, resolution: Resolution) -> Tensor:
        r"""The regular lat/lon grid with ``n_lat`` latitudes and ``n_lon`` longitudes.

        Latitudes run from 90 to -90 (north first, both poles included, as in
        ERA5), longitudes from 0 in steps of :math:`360 / n_\text{lon}`
        (periodic: 360 is not repeated). Each pole is **one** point, so the grid
        has :math:`(n_\text{lat} - 2)\, n_\text{lon} + 2` points ordered north
        pole, interior rows north to south (longitude fastest), south pole.
        :class:`pcfunc.data.LatLonGrid` uses the same order.

        Args:
            resolution (int or (int, int)): ``(n_lat, n_lon)``, ``n_lat >= 2``;
                an int ``n`` means ``(n, 2 n)``.

        Returns:
            Tensor: Shape :math:`((n_\text{lat} - 2) n_\text{lon} + 2, 3)`.
        """
        if isinstance(resolution, int) and not isinstance(resolution, bool):
            resolution = (resolution, 2 * resolution)
        n_lat, n_lon = _per_axis(resolution, 2)
        if n_lat < 2:
            raise ValueError(f"resolution needs n_lat >= 2 (both poles), got {resolution!r}")
        lat = torch.linspace(90.0, -90.0, n_lat, dtype=torch.float64)[1:-1]
        lon = torch.arange(n_lon, dtype=torch.float64) * (360.0 / n_lon)
        interior = latlon_to_xyz(lat[:, None], lon[None, :]).reshape(-1, 3)
        poles = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
        return torch.cat((poles, interior, -poles)).to(torch.get_default_dtype())

    def embed(self, u: Tensor) -> Tensor:
        """``(lat, lon)`` in degrees, shape :math:`(*, 2)`, to unit vectors :math:`(*, 3)`."""
        if u.size(-1) != 2:
            raise ValueError(f"u must have shape [..., 2] (lat, lon in degrees), got {tuple(u.shape)}")
        return latlon_to_xyz(u[..., 0], u[..., 1])

    def unembed(self, x: Tensor) -> Tensor:
        """Unit vectors :math:`(*, 3)` to ``(lat, lon)`` in degrees, lon in :math:`(-180, 180]`."""
        return torch.stack(xyz_to_latlon(x), dim=-1)

    def projx(self, x: Tensor) -> Tensor:
        return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)

    def check_point(self, x: Tensor, atol: Optional[float] = None) -> Tuple[bool, Optional[str]]:
        ok, reason = super().check_point(x, atol)
        if not ok:
            return ok, reason
        atol = self.tolerance(x.dtype) if atol is None else atol
        err = (torch.linalg.vector_norm(x, dim=-1) - 1.0).abs()
        if x.numel() and bool((err > atol).any()):
            return False, f"points must have unit norm; max | |x| - 1 | = {float(err.max()):.3g} > atol={atol:g}"
        return True, None


