import math

import pytest
import torch

from pcfunc.data import LatLonGrid
from pcfunc.evaluation import Covariance, PCABaseline, ResidualKriging, kriging_weights, score

GRID = LatLonGrid.regular(19, 36)  # 10-degree globe, 614 points


def gp_fields(num, length, nugget, seed=0, pos=GRID.pos):
    """Zero-mean fields with the exponential covariance exp(-h / length) plus a nugget, by Cholesky."""
    p = pos.double()
    cov = torch.exp(-torch.cdist(p, p) / length) + nugget * torch.eye(p.size(0), dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(seed)
    return (chol @ torch.randn(p.size(0), num, generator=g, dtype=torch.float64)).T.unsqueeze(-1)  # [num, N, 1]


def test_local_kriging_with_every_observed_point_is_the_dense_simple_kriging_predictor():
    values = gp_fields(3, 0.4, 0.05)
    observed = torch.rand(GRID.num_points, generator=torch.Generator().manual_seed(1)) < 0.3
    prediction = torch.zeros_like(values)
    n_obs = int(observed.sum())
    out = ResidualKriging(num_neighbors=n_obs, covariance=Covariance(0.4, 0.05))(GRID.pos, prediction, values, observed)
    p = GRID.pos.double()
    o, h = p[observed], p[~observed]
    dense = torch.exp(-torch.cdist(h, o) / 0.4) @ torch.linalg.solve(
        torch.exp(-torch.cdist(o, o) / 0.4) + 0.05 * torch.eye(n_obs, dtype=torch.float64), values[:, observed, 0].T)
    torch.testing.assert_close(out[:, ~observed, 0], dense.T)
    torch.testing.assert_close(out[:, observed], prediction[:, observed])  # observed points as they were
    # The weights alone: a query on a centre with no nugget takes that centre's value.
    w = kriging_weights(o[:1], o[None, :5], Covariance(0.4, 0.0))
    torch.testing.assert_close(w, torch.tensor([[1.0, 0, 0, 0, 0]], dtype=torch.float64), atol=1e-9, rtol=0)


def test_the_variogram_fit_recovers_the_length_and_nugget_of_known_fields():
    for length, nugget in ((0.3, 0.0), (0.5, 0.25)):
        values = gp_fields(24, length, nugget, seed=2)
        observed = torch.ones(24, GRID.num_points, dtype=torch.bool)
        (got,) = ResidualKriging().fit(GRID.pos, values, observed)
        assert got.length == pytest.approx(length, rel=0.35)
        assert got.nugget == pytest.approx(nugget, abs=0.1)
    # Residuals without spatial correlation: all nugget, nothing kriged.
    noise = torch.randn(8, GRID.num_points, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    observed = torch.rand(GRID.num_points, generator=torch.Generator().manual_seed(4)) < 0.5
    (white,) = ResidualKriging().fit(GRID.pos, noise, observed.expand(8, -1))
    assert ResidualKriging().fit(GRID.pos, noise, observed) == [white]  # one mask for every field, the same
    spacing = torch.cdist(GRID.pos.double(), GRID.pos.double()).fill_diagonal_(math.inf).min(1).values.median()
    assert float(white.correlation(spacing)) / (1 + white.nugget) < 0.1  # no correlation between neighbours
    out = ResidualKriging()(GRID.pos, torch.zeros_like(noise), noise, observed)
    assert float(out[:, ~observed].abs().max()) < 0.3 * float(noise.abs().max())


def test_kriging_a_pca_in_painting_lowers_its_error_near_the_observed_region():
    # A low-rank trend plus correlated small-scale anomalies: PCA's least squares finds the trend, kriging the rest.
    g = torch.Generator().manual_seed(5)
    trend = torch.randn(40, 3, generator=g, dtype=torch.float64) @ torch.randn(3, GRID.num_points, generator=g,
                                                                              dtype=torch.float64)
    fields = trend.unsqueeze(-1) + 0.5 * gp_fields(40, 0.3, 0.0, seed=6)
    train, test = fields[:30], fields[30:]
    lat = torch.rad2deg(torch.asin(GRID.pos[:, 2].double().clamp(-1, 1)))
    observed = lat < 20  # the north hidden
    pca = PCABaseline(train, 3)
    ls = pca.reconstruct(test, observed)
    kriged = ResidualKriging()(GRID.pos, ls, test, observed)
    near = (~observed) & (lat < 40)
    assert score(kriged, test, near, data_range=10.0)["psnr"] > score(ls, test, near, data_range=10.0)["psnr"] + 0.5
    assert score(kriged, test, ~observed, data_range=10.0)["psnr"] > score(ls, test, ~observed, data_range=10.0)["psnr"]
    # Two channels: each kriged on its own, as each alone.
    two = torch.cat([test, 2 * test.flip(0)], -1)
    both = ResidualKriging()(GRID.pos, torch.cat([ls, 2 * ls.flip(0)], -1), two, observed)
    torch.testing.assert_close(both[..., :1], kriged)
    # Fields observed on different points in one call: each as when kriged alone.
    per_field = torch.stack([observed, lat < 0, observed, lat > -30])
    together = ResidualKriging(covariance=Covariance(0.3, 0.01))(GRID.pos, ls[:4], test[:4], per_field)
    for b in range(4):
        alone = ResidualKriging(covariance=Covariance(0.3, 0.01))(GRID.pos, ls[b:b + 1], test[b:b + 1], per_field[b])
        torch.testing.assert_close(together[b:b + 1], alone)
    # Missing values are never used as observations.
    gap = test.clone()
    gap[:, observed.nonzero()[:5, 0]] = float("nan")
    out = ResidualKriging()(GRID.pos, ls, gap, observed)
    assert bool(torch.isfinite(out).all())


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="num_neighbors"):
        ResidualKriging(num_neighbors=0)
    with pytest.raises(ValueError, match="covariance"):
        ResidualKriging(covariance=Covariance(-1.0, 0.0))
    with pytest.raises(ValueError, match="covariance"):
        ResidualKriging(covariance=Covariance(1.0, math.nan))
    with pytest.raises(TypeError, match="covariance"):
        ResidualKriging(covariance=(1.0, 0.0))
    v = torch.zeros(2, GRID.num_points, 1)
    with pytest.raises(ValueError, match="same shape"):
        ResidualKriging()(GRID.pos, v[:1], v, torch.ones(GRID.num_points, dtype=torch.bool))
    with pytest.raises(ValueError, match="pos"):
        ResidualKriging()(GRID.pos[:-1], v, v, torch.ones(GRID.num_points, dtype=torch.bool))
    with pytest.raises(ValueError, match="observed"):
        ResidualKriging()(GRID.pos, v, v, torch.ones(3, dtype=torch.bool))
