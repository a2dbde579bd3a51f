"""Cell areas of latitude/longitude grids and first-order conservative remapping."""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from ._arrays import ArrayLike
from ._latlon_axes import _axis, _lat_axis, _lon_circle

__all__ = ["latlon_cell_area"]


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
    missing = torch.isnan(values)
    if not bool(missing.any()):
        return torch.matmul(torch.matmul(w_lat, values), w_lon.T)
    # Missing values (NaN): the area-weighted mean of the valid part of each target cell; NaN where none is valid.
    total = torch.matmul(torch.matmul(w_lat, torch.where(missing, 0.0, values)), w_lon.T)
    covered = torch.matmul(torch.matmul(w_lat, (~missing).to(values.dtype)), w_lon.T)
    return torch.where(covered > 1e-12, total / covered.clamp_min(1e-12), torch.full_like(total, float("nan")))


