import math

import pytest
import torch

from pcfunc.metrics import crps_ensemble, crps_gaussian, fit_std_scale, interval_coverage


def _crps_by_quadrature(mu: float, sigma: float, y: float) -> float:
    """CRPS from its definition, the integral of (F(x) - 1[x >= y])^2 over x, by the trapezoidal rule."""
    x = torch.linspace(mu - 12 * sigma - abs(y - mu), mu + 12 * sigma + abs(y - mu), 400001, dtype=torch.float64)
    F = 0.5 * (1 + torch.erf((x - mu) / (sigma * math.sqrt(2))))
    H = (x >= y).double()
    return float(torch.trapezoid((F - H) ** 2, x))


@pytest.mark.parametrize("mu,sigma,y", [(0.0, 1.0, 0.3), (2.0, 0.5, -1.0), (-1.0, 3.0, 4.0)])
def test_crps_gaussian_matches_its_definition(mu, sigma, y):
    got = crps_gaussian(torch.tensor([mu]), torch.tensor([sigma]), torch.tensor([y]))
    assert float(got) == pytest.approx(_crps_by_quadrature(mu, sigma, y), rel=1e-4)


def test_crps_gaussian_point_forecast_and_ensemble_agree():
    mean, y = torch.tensor([0.5, -1.0]), torch.tensor([1.5, -1.0])
    torch.testing.assert_close(crps_gaussian(mean, torch.zeros(2), y), (y - mean).abs())
    # The ensemble score of many Gaussian draws tends to the closed form.
    g = torch.Generator().manual_seed(0)
    mu, sd, t = torch.tensor([0.0, 1.0, -2.0]), torch.tensor([1.0, 0.3, 2.0]), torch.tensor([0.4, 2.0, -2.5])
    draws = mu + sd * torch.randn(200000, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(crps_ensemble(draws, t.double()), crps_gaussian(mu, sd, t).double(), rtol=1e-2,
                               atol=1e-3)


def test_crps_ensemble_matches_brute_force_pairs():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 4, 5, generator=g, dtype=torch.float64), torch.randn(4, 5, generator=g, dtype=torch.float64)
    ref = (x - y).abs().mean(0) - 0.5 * (x[:, None] - x[None]).abs().mean((0, 1))
    torch.testing.assert_close(crps_ensemble(x, y), ref)


def test_interval_coverage_of_exact_gaussians():
    g = torch.Generator().manual_seed(2)
    mu, sd = torch.randn(100000, generator=g), torch.rand(100000, generator=g) + 0.1
    y = mu + sd * torch.randn(100000, generator=g)
    for level in (0.5, 0.9):
        assert float(interval_coverage(mu, sd, y, level).float().mean()) == pytest.approx(level, abs=0.01)
    # Too narrow intervals cover less.
    assert float(interval_coverage(mu, sd / 2, y, 0.9).float().mean()) < 0.7


def test_fit_std_scale_recovers_the_true_spread():
    g = torch.Generator().manual_seed(3)
    mu, sd = torch.randn(50000, generator=g), torch.rand(50000, generator=g) + 0.1
    y = mu + 2.5 * sd * torch.randn(50000, generator=g)  # predictions 2.5 times over-confident
    s = fit_std_scale(mu, sd, y)
    assert s == pytest.approx(2.5, rel=0.03)
    # It minimises the mean CRPS: a little either way is worse.
    crps = lambda k: float(crps_gaussian(mu, k * sd, y).mean())  # noqa: E731
    assert crps(s) <= min(crps(s * 1.05), crps(s / 1.05))
    # The mask selects the points used.
    y2 = torch.where(torch.arange(50000) < 25000, y, mu + 0.5 * sd * torch.randn(50000, generator=g))
    assert fit_std_scale(mu, sd, y2, torch.arange(50000) < 25000) == pytest.approx(s, rel=0.05)


def test_fit_std_scale_for_a_level_covers_it_on_the_calibration_data():
    torch.manual_seed(4)
    mu, sd = torch.zeros(20001), torch.ones(20001)
    y = torch.distributions.StudentT(2.0).sample((20001,))  # heavy tails: one factor cannot fit every level
    for level in (0.5, 0.9):
        s = fit_std_scale(mu, sd, y, level=level)
        assert float(interval_coverage(mu, s * sd, y, level).float().mean()) == pytest.approx(level, abs=1e-3)
        # The Student-t(2) quantile over the Gaussian one, in closed form.
        q = {0.5: 0.816497, 0.9: 2.919986}[level]
        z = {0.5: 0.674490, 0.9: 1.644854}[level]
        assert s == pytest.approx(q / z, rel=0.05)


def test_errors_name_the_argument():
    a = torch.zeros(3)
    with pytest.raises(ValueError, match="std must be finite and non-negative"):
        crps_gaussian(a, -torch.ones(3), a)
    with pytest.raises(ValueError, match="mean and target"):
        crps_gaussian(torch.zeros(2), a, a)
    with pytest.raises(ValueError, match="level"):
        interval_coverage(a, a, a, 1.5)
    with pytest.raises(ValueError, match="samples must have shape"):
        crps_ensemble(torch.zeros(4, 2), a)
    with pytest.raises(ValueError, match="std must be positive"):
        fit_std_scale(a, a, a)
    with pytest.raises(ValueError, match="level"):
        fit_std_scale(a, torch.ones(3), a, level=0.0)
    with pytest.raises(TypeError, match="mask"):
        fit_std_scale(a, torch.ones(3), a, torch.ones(3))
