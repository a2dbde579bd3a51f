"""The field's scorecard against independent implementations: NumPy for area weights and weighted means, scoringrules
for the (fair) ensemble CRPS, brute-force loops for the spread-skill ratio and the rank histogram."""

import math

import numpy as np
import pytest
import torch

from pcfunc.data import LatLonGrid
from pcfunc.metrics import crps_ensemble, rank_histogram, spread_skill, weighted_scores


def _numpy_areas(lat, lon):
    """Cell areas of a global grid with both poles: edges at the midpoints, the pole rows half-height caps."""
    edges = np.clip(np.r_[90.0, (lat[1:] + lat[:-1]) / 2, -90.0], -90, 90)
    band = np.sin(np.deg2rad(edges[:-1])) - np.sin(np.deg2rad(edges[1:]))  # north first
    return band[:, None] * np.full((1, lon.size), 2 * np.pi / lon.size)


def test_point_areas_are_cell_areas_with_each_pole_one_point():
    lat, lon = np.linspace(90, -90, 7), np.arange(0.0, 360.0, 30.0)
    grid = LatLonGrid(lat, lon)
    areas = _numpy_areas(lat, lon)
    w = grid.point_areas
    assert w.shape == (grid.num_points,) and float(w.sum()) == pytest.approx(4 * math.pi)
    assert float(w[0]) == pytest.approx(areas[0].sum()) and float(w[-1]) == pytest.approx(areas[-1].sum())
    np.testing.assert_allclose(w[1:-1].numpy(), areas[1:-1].reshape(-1))


def test_weighted_scores_against_numpy_with_missing_values():
    g = np.random.default_rng(0)
    pred, target = g.normal(size=(3, 40, 2)), g.normal(size=(3, 40, 2))
    target[0, :5, 0] = np.nan
    w = g.uniform(0.1, 2.0, 40)
    out = weighted_scores(torch.tensor(pred), torch.tensor(target), torch.tensor(w))
    for b in range(3):
        for c in range(2):
            ok = np.isfinite(target[b, :, c])
            err, ww = pred[b, ok, c] - target[b, ok, c], w[ok]
            assert float(out["rmse"][b, c]) == pytest.approx(np.sqrt(np.average(err ** 2, weights=ww)))
            assert float(out["bias"][b, c]) == pytest.approx(np.average(err, weights=ww))
            assert float(out["mae"][b, c]) == pytest.approx(np.average(np.abs(err), weights=ww))
    plain = weighted_scores(torch.tensor(pred[..., 0]), torch.tensor(np.nan_to_num(target[..., 0])))
    assert float(plain["rmse"][1, 0]) == pytest.approx(np.sqrt(np.mean((pred[1, :, 0] - target[1, :, 0]) ** 2)))
    with pytest.raises(ValueError, match=r"weights must have shape \[N\] = \[40\]"):
        weighted_scores(torch.tensor(pred), torch.tensor(target), torch.ones(39))
    with pytest.raises(ValueError, match="same shape"):
        weighted_scores(torch.tensor(pred), torch.tensor(target[:2]))
    with pytest.raises(ValueError, match="non-negative"):
        weighted_scores(torch.tensor(pred), torch.tensor(target), -torch.ones(40))


def test_area_weighting_counts_a_polar_error_by_its_area():
    lat, lon = np.linspace(90, -90, 19), np.arange(0.0, 360.0, 10.0)
    grid = LatLonGrid(lat, lon)
    polar = torch.zeros(1, grid.num_points)  # an error of 1 on the rows poleward of 70 degrees
    lat_of_point = torch.rad2deg(torch.asin(grid.pos[:, 2].double().clamp(-1, 1)))
    polar[0, lat_of_point.abs() > 70] = 1.0
    weighted = float(weighted_scores(polar, torch.zeros_like(polar), grid.point_areas)["mae"])
    plain = float(weighted_scores(polar, torch.zeros_like(polar))["mae"])
    exact = 1 - math.sin(math.radians(75))  # the caps beyond the cell edges at 75 degrees: 3.4% of the sphere
    assert weighted == pytest.approx(exact, rel=1e-9) and plain > 3 * weighted


@pytest.mark.parametrize("fair, estimator", [(False, "nrg"), (True, "fair")])
def test_crps_ensemble_against_scoringrules(fair, estimator):
    sr = pytest.importorskip("scoringrules")
    g = np.random.default_rng(1)
    samples, target = g.normal(size=(7, 50)), g.normal(size=50)
    ours = crps_ensemble(torch.tensor(samples), torch.tensor(target), fair=fair).numpy()
    theirs = np.asarray(sr.crps_ensemble(target, samples, m_axis=0, estimator=estimator))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10)
    with pytest.raises(ValueError, match="at least two"):
        crps_ensemble(torch.zeros(1, 3), torch.zeros(3), fair=True)


def test_spread_skill_by_brute_force_and_calibrated_on_average():
    g = np.random.default_rng(2)
    S, B, N = 5, 2, 30
    x, y, w = g.normal(size=(S, B, N)), g.normal(size=(B, N)), g.uniform(0.5, 1.5, N)
    out = spread_skill(torch.tensor(x), torch.tensor(y), torch.tensor(w))
    for b in range(B):
        mean = x[:, b].mean(0)
        skill = math.sqrt(sum(w[n] * (mean[n] - y[b, n]) ** 2 for n in range(N)) / w.sum())
        var = [sum((x[s, b, n] - mean[n]) ** 2 for s in range(S)) / (S - 1) for n in range(N)]
        spread = math.sqrt(sum(w[n] * var[n] for n in range(N)) / w.sum())
        assert float(out["skill"][b, 0]) == pytest.approx(skill)
        assert float(out["spread"][b, 0]) == pytest.approx(spread)
        assert float(out["ratio"][b, 0]) == pytest.approx(math.sqrt((S + 1) / S) * spread / skill)
    # The truth drawn like a member: the corrected ratio is 1 on average (here over 20,000 points).
    x, y = g.normal(size=(4, 1, 20000)), g.normal(size=(1, 20000))
    assert float(spread_skill(torch.tensor(x), torch.tensor(y))["ratio"]) == pytest.approx(1.0, abs=0.03)
    with pytest.raises(ValueError, match="S >= 2"):
        spread_skill(torch.zeros(1, 2, 3), torch.zeros(2, 3))


def test_rank_histogram_by_brute_force_ties_and_calibration():
    g = np.random.default_rng(3)
    x, y = g.normal(size=(4, 100)), g.normal(size=100)
    y[0] = np.nan
    counts = rank_histogram(torch.tensor(x), torch.tensor(y))
    expected = np.zeros(5, dtype=int)
    for n in range(1, 100):
        expected[sum(x[s, n] < y[n] for s in range(4))] += 1
    np.testing.assert_array_equal(counts.numpy(), expected)
    # Ties are shared out at random over the ranks they span: a truth equal to all members, every rank.
    tied = rank_histogram(torch.zeros(3, 40000), torch.zeros(40000), generator=torch.Generator().manual_seed(0))
    assert tied.sum() == 40000 and (tied.float() / 40000 - 0.25).abs().max() < 0.01
    # A calibrated ensemble: flat to sampling noise.
    x, y = g.normal(size=(9, 50000)), g.normal(size=50000)
    flat = rank_histogram(torch.tensor(x), torch.tensor(y)).double() / 50000
    assert float((flat - 0.1).abs().max()) < 0.01


def test_pit_histogram_matches_scipy_and_is_flat_for_calibrated_gaussians():
    from scipy.stats import norm

    from pcfunc.metrics import pit_histogram

    g = torch.Generator().manual_seed(0)
    mean, std = torch.randn(4000, generator=g), torch.rand(4000, generator=g) + 0.5
    truth = mean + std * torch.randn(4000, generator=g)
    truth[:5] = math.nan  # not counted
    h = pit_histogram(mean, std, truth)
    u = norm.cdf(truth[5:].numpy(), mean[5:].numpy(), std[5:].numpy())
    np.testing.assert_allclose(h.numpy(), np.histogram(u, bins=10, range=(0, 1))[0] / u.size, atol=1e-12)
    assert float(h.sum()) == pytest.approx(1.0) and float((h - 0.1).abs().max()) < 0.03
    narrow = pit_histogram(mean, std / 3, truth, bins=4)  # over-confident: a U shape
    assert narrow[0] > 0.3 and narrow[-1] > 0.3 and narrow[1] < 0.2
    with pytest.raises(ValueError, match="std must be positive"):
        pit_histogram(mean, -std, truth)
    with pytest.raises(ValueError, match="bins"):
        pit_histogram(mean, std, truth, bins=0)
