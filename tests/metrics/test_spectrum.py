"""The spherical-harmonic power spectrum against SciPy's spherical harmonics, Parseval and single harmonics."""

import math

import numpy as np
import pytest
import torch

from pcfunc.metrics import log_spectral_distance, power_spectrum
from pcfunc.metrics._spectrum import _legendre

special = pytest.importorskip("scipy.special")


def test_legendre_matches_scipys_orthonormal_spherical_harmonics():
    colat = torch.linspace(0.01, math.pi - 0.01, 37, dtype=torch.float64)
    ours = _legendre(12, 12, colat)
    for m in range(13):
        for l in range(m, 13):  # noqa: E741
            ref = special.sph_harm_y(l, m, colat.numpy(), 0.0).real
            np.testing.assert_allclose(ours[m, l].numpy(), ref, atol=1e-12, rtol=1e-10, err_msg=f"l={l} m={m}")
        assert float(ours[m, :m].abs().max() if m else 0.0) == 0.0


def _grid(step):
    return np.linspace(90.0, -90.0, int(180 / step) + 1), np.arange(0.0, 360.0, step)


@pytest.mark.parametrize("l, m", [(0, 0), (3, 0), (5, 3), (12, 7)])
def test_a_single_harmonic_puts_its_power_at_its_degree(l, m):  # noqa: E741
    lat, lon = _grid(2.0)
    theta, phi = np.deg2rad(90 - lat)[:, None], np.deg2rad(lon)[None, :]
    f = np.sqrt(2 if m else 1) * special.sph_harm_y(l, m, theta, phi).real  # unit norm on the sphere
    s = power_spectrum(torch.tensor(f)[None], lat, lon, lmax=20)[0]
    assert float(s[l]) == pytest.approx(1.0, rel=2e-3)
    assert float(s.sum() - s[l]) < 2e-3


def test_parseval_and_the_default_degree():
    lat, lon = _grid(4.0)
    g = np.random.default_rng(0)
    theta, phi = np.deg2rad(90 - lat)[:, None], np.deg2rad(lon)[None, :]
    f = sum(g.normal() * special.sph_harm_y(l, m, theta, phi).real for l in range(8) for m in range(l + 1))
    s = power_spectrum(torch.tensor(np.stack([f, 2 * f])), lat, lon)
    assert s.shape == (2, 45 + 1) and float(s[1].sum() / s[0].sum()) == pytest.approx(4.0)
    edges = np.clip(np.r_[90.0, (lat[1:] + lat[:-1]) / 2, -90.0], -90, 90)
    area = (np.sin(np.deg2rad(edges[:-1])) - np.sin(np.deg2rad(edges[1:])))[:, None] * (2 * np.pi / lon.size)
    assert float(s[0].sum()) == pytest.approx(float((area * f ** 2).sum()), rel=1e-2)  # the integral of f^2
    assert float(s[0, 8:].sum()) < 1e-2 * float(s[0].sum())  # band-limited to degree 7


def test_log_spectral_distance_and_errors():
    ref = torch.tensor([5.0, 1.0, 1.0, 1.0])
    assert float(log_spectral_distance(ref, ref)) == 0.0
    assert float(log_spectral_distance(torch.tensor([9.0, 2.0, 2.0, 2.0]), ref)) == pytest.approx(
        10 * math.log10(2))  # the mean (l = 0) left out
    lat, lon = _grid(10.0)
    with pytest.raises(ValueError, match=r"values must have shape \[B, 19, 36\]"):
        power_spectrum(torch.zeros(2, 18, 36), lat, lon)
    with pytest.raises(ValueError, match="pole to pole"):
        power_spectrum(torch.zeros(1, 18, 36), lat[:-1], lon)
    with pytest.raises(ValueError, match="lmax must be an integer in 0..18"):
        power_spectrum(torch.zeros(1, 19, 36), lat, lon, lmax=30)
    with pytest.raises(ValueError, match="finite"):
        power_spectrum(torch.full((1, 19, 36), math.nan), lat, lon)
