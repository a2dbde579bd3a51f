"""The spherical-harmonic power spectrum of fields on a regular latitude/longitude grid, and the log-spectral distance:
whether a super-resolved field or a sample has the small-scale variance of the real thing."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import Tensor

__all__ = ["power_spectrum", "log_spectral_distance"]


def _legendre(lmax: int, mmax: int, colat: Tensor) -> Tensor:
    r"""Orthonormal associated Legendre functions :math:`\bar P_l^m(\cos\theta)`, :math:`(m_\max + 1, l_\max + 1,
    R)`, zero for :math:`l < m`: :math:`Y_l^m = \bar P_l^m(\cos\theta)\, e^{i m \lambda}` has unit norm on the
    sphere (standard three-term recurrences in :math:`l`, stable to high degree)."""
    x, s = torch.cos(colat), torch.sin(colat)
    out = torch.zeros(mmax + 1, lmax + 1, colat.numel(), dtype=torch.float64)
    pmm = torch.full_like(x, 1.0 / math.sqrt(4.0 * math.pi))
    for m in range(mmax + 1):
        if m > 0:
            pmm = -math.sqrt((2.0 * m + 1.0) / (2.0 * m)) * s * pmm
        out[m, m] = pmm
        if m + 1 <= lmax:
            out[m, m + 1] = math.sqrt(2.0 * m + 3.0) * x * pmm
        for l in range(m + 2, lmax + 1):  # noqa: E741
            a = math.sqrt((4.0 * l * l - 1.0) / (l * l - m * m))
            b = math.sqrt(((l - 1.0) ** 2 - m * m) / (4.0 * (l - 1.0) ** 2 - 1.0))
            out[m, l] = a * (x * out[m, l - 1] - b * out[m, l - 2])
    return out


def power_spectrum(values: Tensor, lat: "np.ndarray | Tensor", lon: "np.ndarray | Tensor",
                   lmax: Optional[int] = None) -> Tensor:
    r"""The angular power spectrum of fields on a regular global latitude/longitude grid.

    With the orthonormal spherical harmonics :math:`Y_l^m` and the field's coefficients
    :math:`f_l^m = \int f\, \overline{Y_l^m}\, d\Omega` (a Fourier transform along each row, then a quadrature in
    latitude with each row's cell area :math:`\Delta(\sin\varphi)` as its weight), the power at degree :math:`l`
    (wavelength about :math:`2\pi R / (l + \tfrac12)`) is

    .. math::
        S_l = \sum_{m=-l}^{l} |f_l^m|^2, \qquad \sum_l S_l = \int f^2\, d\Omega \quad\text{(Parseval)}.

    The quadrature is exact for band-limited fields only up to the grid's resolution; degrees near
    ``lmax`` carry some leakage, the same for every field on the grid, so spectra on one grid compare fairly.

    Args:
        values (Tensor): Fields :math:`(B, n_\text{lat}, n_\text{lon})`, finite.
        lat (array): Latitudes in degrees, evenly spaced from pole to pole (either order), at least 3.
        lon (array): Longitudes in degrees, evenly spaced round the globe, at least 4.
        lmax (int, optional): Highest degree. (default: :math:`\min(n_\text{lat} - 1, \lfloor n_\text{lon} / 2
            \rfloor)`)

    Returns:
        Tensor: :math:`S_l`, float64, :math:`(B, l_\max + 1)`.
    """
    lat_t = torch.as_tensor(np.asarray(lat, dtype=np.float64)).reshape(-1)
    lon_t = torch.as_tensor(np.asarray(lon, dtype=np.float64)).reshape(-1)
    if not isinstance(values, Tensor) or values.dim() != 3 or values.shape[1:] != (lat_t.numel(), lon_t.numel()):
        raise ValueError(f"values must have shape [B, {lat_t.numel()}, {lon_t.numel()}] (fields on lat x lon), got "
                         f"{tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__}")
    if lat_t.numel() < 3 or lon_t.numel() < 4:
        raise ValueError("power_spectrum needs at least 3 latitudes and 4 longitudes")
    srt = lat_t.sort().values
    steps = srt.diff()
    if abs(float(srt[0]) + 90.0) > 1e-6 or abs(float(srt[-1]) - 90.0) > 1e-6 or float(
            (steps - steps.mean()).abs().max()) > 1e-6:
        raise ValueError("lat must be evenly spaced from pole to pole (e.g. 90, 89, ..., -90)")
    dlon = torch.remainder(lon_t.diff(), 360.0)
    if float((dlon - 360.0 / lon_t.numel()).abs().max()) > 1e-6:
        raise ValueError("lon must be evenly spaced round the globe, in increasing order (e.g. 0, 1, ..., 359)")
    v = values.detach().double().cpu()
    if not bool(torch.isfinite(v).all()):
        raise ValueError("values must be finite (fill missing values first)")
    n_lat, n_lon = lat_t.numel(), lon_t.numel()
    top = min(n_lat - 1, n_lon // 2)
    if lmax is None:
        lmax = top
    if isinstance(lmax, bool) or not isinstance(lmax, int) or not 0 <= lmax <= top:
        raise ValueError(f"lmax must be an integer in 0..{top} on this grid, got {lmax!r}")
    # Row weights: the cells' latitude extent, as sin(upper edge) - sin(lower edge), edges midway between rows.
    rad = torch.deg2rad(lat_t)
    order = torch.argsort(rad)
    r = rad[order]
    edges = torch.cat((r.new_tensor([-math.pi / 2]), (r[1:] + r[:-1]) / 2, r.new_tensor([math.pi / 2])))
    dsin = torch.empty_like(rad)
    dsin[order] = torch.sin(edges[1:]) - torch.sin(edges[:-1])
    # Along each row: a_m = sum over longitudes of f exp(-i m lambda) * (2 pi / n_lon), lambda from the first column.
    phase = torch.deg2rad(lon_t[0])
    fm = torch.fft.rfft(v, dim=-1)[..., : lmax + 1] * (2.0 * math.pi / n_lon)  # (B, n_lat, M)
    m = torch.arange(fm.size(-1), dtype=torch.float64)
    fm = fm * torch.exp(-1j * m * phase)
    legendre = _legendre(lmax, lmax, (math.pi / 2 - rad))  # (M, L, n_lat)
    # f_lm = sum over rows of w_row * P_lm(row) * a_m(row)
    coef = torch.einsum("mlr,brm->blm", legendre.to(torch.complex128), fm * dsin[None, :, None])
    power = coef.abs().pow(2)
    weight = torch.full((lmax + 1,), 2.0, dtype=torch.float64)
    weight[0] = 1.0  # m = 0 once, m > 0 for +m and -m
    if n_lon % 2 == 0 and lmax >= n_lon // 2:
        weight[n_lon // 2] = 1.0  # the Nyquist column is its own mirror
    return (power * weight).sum(-1)


def log_spectral_distance(spectrum: Tensor, reference: Tensor, lmin: int = 1) -> Tensor:
    r"""The log-spectral distance between power spectra, in dB:

    .. math::
        \text{LSD} = \sqrt{\frac{1}{L} \sum_{l = l_\min}^{l_\max} \Big(10 \log_{10} \frac{S_l}{S^\text{ref}_l}\Big)^2},

    0 for equal spectra, 3 dB when every degree is off by a factor of two. Degrees where either spectrum is 0 are
    skipped; the mean (:math:`l = 0`) is left out by default.

    Args:
        spectrum (Tensor): :math:`(*, L)`, from :func:`power_spectrum`.
        reference (Tensor): Broadcastable to ``spectrum`` (e.g. the truth's, or the mean of the true fields').
        lmin (int): First degree counted. (default: ``1``)

    Returns:
        Tensor: :math:`(*)`.
    """
    s, r = torch.as_tensor(spectrum).double(), torch.as_tensor(reference).double()
    s, r = torch.broadcast_tensors(s, r)
    s, r = s[..., lmin:], r[..., lmin:]
    ok = (s > 0) & (r > 0)
    d = torch.where(ok, 10.0 * torch.log10(torch.where(ok, s, 1.0) / torch.where(ok, r, 1.0)), 0.0)
    return (d.pow(2).sum(-1) / ok.sum(-1).clamp_min(1)).sqrt()
