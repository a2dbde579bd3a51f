"""LinearFactors: functional PCA as tables, against numpy's SVD; VaMoH started at PCA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pcfunc.manifolds import Sphere
from pcfunc.nn import LinearFactors


def _fields(T: int = 30, M: int = 0, rank: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    anchors = Sphere().grid((8, 16))
    M = anchors.size(0)
    basis = torch.randn(rank, M, 2, generator=g, dtype=torch.float64)
    coef = torch.randn(T, rank, generator=g, dtype=torch.float64)
    fields = 0.5 + 0.05 * torch.einsum("tk,kmc->tmc", coef, basis) + 1e-3 * torch.randn(T, M, 2, generator=g,
                                                                                           dtype=torch.float64)
    return anchors.double(), fields


def test_fit_pca_is_numpys_pca_with_whitened_coefficients():
    anchors, fields = _fields()
    T, M, C = fields.shape
    Z = 5
    lf = LinearFactors(anchors, Z, C).double()
    explained = lf.fit_pca_(fields)
    # numpy: the principal components of the fields as T x (M C) rows.
    Y = fields.reshape(T, -1).numpy()
    mean = Y.mean(0)
    _, s, vt = np.linalg.svd(Y - mean, full_matrices=False)
    np.testing.assert_allclose(explained.numpy(), (s[:Z] ** 2) / (s ** 2).sum(), rtol=1e-8)
    batch = torch.arange(T).repeat_interleave(M)
    z = lf.analysis(fields.reshape(-1, C), anchors.repeat(T, 1), batch, T)
    # Coefficients: PCA's scores, scaled to unit variance (up to each component's sign).
    scores = (Y - mean) @ vt[:Z].T
    np.testing.assert_allclose(np.abs(z.detach().numpy()), np.abs(scores / scores.std(0, ddof=1)), atol=1e-8)
    np.testing.assert_allclose(z.detach().numpy().var(0, ddof=1), np.ones(Z), rtol=1e-8)
    rec = (lf.synthesis(z, anchors) + fields.mean(0)).detach().reshape(T, -1).numpy()
    np.testing.assert_allclose(rec, (Y - mean) @ vt[:Z].T @ vt[:Z] + mean, atol=1e-10)
    # Per-field query points ([B, N, D]) give the same synthesis.
    np.testing.assert_allclose(lf.synthesis(z[:2], anchors.expand(2, -1, -1)).detach().numpy(),
                               lf.synthesis(z[:2], anchors).detach().numpy(), atol=1e-12)


def test_gain_divides_the_basis_and_rank_deficient_components_are_zero():
    anchors, fields = _fields(T=3)
    M, C = fields.shape[1:]
    plain, scaled = LinearFactors(anchors, 4, C).double(), LinearFactors(anchors, 4, C).double()
    plain.fit_pca_(fields)
    gain = torch.rand(M, C, dtype=torch.float64) + 0.1
    explained = scaled.fit_pca_(fields, gain=gain)
    z = torch.randn(2, 4, dtype=torch.float64)
    torch.testing.assert_close(scaled.synthesis(z, anchors) * gain, plain.synthesis(z, anchors))
    # The offset adds to every latent's synthesis.
    before = plain.synthesis(z, anchors).detach()
    with torch.no_grad():
        plain.offset.values.copy_(gain)
    torch.testing.assert_close(plain.synthesis(z, anchors), before + gain)
    # 3 fields have rank 2 after centring: components 3 and 4 are zero and explain nothing.
    assert explained[2:].abs().max() == 0 and float(explained.sum()) == pytest.approx(1.0)
    assert plain.basis.values.view(M, 4, C)[:, 2:].abs().max() == 0


def test_partly_observed_field_without_anomalies_gets_zero_coefficients():
    anchors, fields = _fields()
    lf = LinearFactors(anchors, 3, 2).double()
    lf.fit_pca_(fields)
    mean = fields.mean(0)
    half = torch.arange(anchors.size(0)) % 2 == 0
    z = lf.analysis(mean[half], anchors[half])
    torch.testing.assert_close(z, torch.zeros(1, 3, dtype=torch.float64))


def test_partly_observed_fields_get_the_least_squares_fit_of_the_points_they_have():
    anchors, fields = _fields(T=40, rank=6)
    T, M, C = fields.shape
    Z = 4
    lf = LinearFactors(anchors, Z, C).double()
    lf.fit_pca_(fields[:30])
    mean = fields[:30].mean(0)
    basis = lf.basis.values.detach().view(M, Z, C)  # the whitened components S_j V_j
    # Two held-out fields, each seen on its own subset of the anchors (a hemisphere; every third anchor).
    seen = [anchors[:, 2] > 0, torch.arange(M) % 3 == 0]
    y = torch.cat([fields[30][seen[0]], fields[31][seen[1]]])
    pos = torch.cat([anchors[seen[0]], anchors[seen[1]]])
    batch = torch.cat([torch.zeros(int(seen[0].sum())), torch.ones(int(seen[1].sum()))]).long()
    z = lf.analysis(y, pos, batch, 2)
    for b in range(2):
        # numpy's least squares of the components to the observed anomalies.
        A = basis[seen[b]].permute(0, 2, 1).reshape(-1, Z).numpy()
        ref = np.linalg.lstsq(A, (fields[30 + b] - mean)[seen[b]].reshape(-1).numpy(), rcond=None)[0]
        np.testing.assert_allclose(z[b].detach().numpy(), ref, rtol=1e-7, atol=1e-9)
        # Each cloud alone gives the same coefficients as in the batch.
        alone = lf.analysis(fields[30 + b][seen[b]], anchors[seen[b]])
        torch.testing.assert_close(alone[0], z[b])
    # The projection that counts unseen anomalies as zero is far from it.
    proj = torch.zeros(2, Z, dtype=torch.float64).index_add_(0, batch, torch.einsum(
        "nzc,nc->nz", lf.dual(pos).view(-1, Z, C), y - lf.center(pos))) / torch.bincount(batch)[:, None]
    assert float((proj - z.detach()).abs().max()) > 0.1
    # Gradients reach the tables through the solve.
    lf.analysis(y, pos, batch, 2).square().sum().backward()
    assert lf.dual.values.grad.abs().sum() > 0


def test_linear_factors_errors():
    anchors, fields = _fields()
    lf = LinearFactors(anchors, 3, 2)
    with pytest.raises(ValueError, match="fields"):
        lf.fit_pca_(fields[:1])
    with pytest.raises(ValueError, match="z must"):
        lf.synthesis(torch.zeros(2, 4), anchors)
    with pytest.raises(ValueError, match="y must"):
        lf.analysis(torch.zeros(5, 1), anchors[:5])
    with pytest.raises(ValueError, match="latent_dim"):
        LinearFactors(anchors, 0, 1)


def test_vamoh_with_factors_starts_at_pca():
    from pcfunc.data import LatLonGrid
    from pcfunc.evaluation import PCABaseline, points_batch
    from pcfunc.metrics import psnr
    from pcfunc.models import VaMoH

    torch.manual_seed(0)
    grid = LatLonGrid(np.linspace(90, -90, 13), np.arange(0, 360, 15.0))
    anchors, fields = _fields(T=24)
    # The fields on this grid: smooth functions of the coordinates, in (0, 1).
    xyz = grid.pos.double()
    coef = torch.randn(24, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    feats = torch.stack([xyz[:, 0], xyz[:, 1], xyz[:, 2], xyz[:, 0] * xyz[:, 1], xyz[:, 2] ** 2,
                         torch.sin(3 * xyz[:, 0])], -1)
    values = (0.5 + 0.08 * coef @ feats.T).unsqueeze(-1).float()
    train, test = values[:18], values[18:]
    model = VaMoH("sphere", 1, encoder=[dict(out_channels=8, num_neighbors=9, num_centroids=64)], latent_dim=8,
                  hypernet_hidden=[16], generator_hidden=[16], num_frequencies=16, categorical_hidden=[8],
                  flow_layers=2, likelihood="gaussian", factor_grid=grid.shape)
    model.initialize_generators(grid.pos.repeat(18, 1), train.reshape(-1, 1), steps=200,
                                generator=torch.Generator().manual_seed(0))
    explained = model.initialize_factors(train, grid.pos)
    assert float(explained.sum()) == pytest.approx(1.0, abs=1e-5)  # 6 functions, 8 components
    model.eval()
    for v in (train, test):
        rec = model.reconstruct(points_batch(grid, v), grid.pos)
        p_model = float(psnr(rec, v).mean())
        p_pca = float(psnr(PCABaseline(train, 8).reconstruct(v), v).mean())
        p_mean = float(psnr(train.mean(0).expand_as(v), v).mean())
        # PCA is exact on these fields (6 functions); the model is PCA through the linearised link, far above the
        # mean (a model without factors starts at the mean).
        assert p_pca > 60 and p_model > p_mean + 15
        # Closed form: sigmoid(logit(mean) + (PCA reconstruction - mean) / (mean (1 - mean))).
        mean = train.double().mean(0)
        ref = torch.sigmoid(torch.logit(mean) + (PCABaseline(train, 8).reconstruct(v).double() - mean)
                            / (mean * (1 - mean)))
        torch.testing.assert_close(rec.double(), ref, atol=2e-5, rtol=0)
    # With the identity link the start is PCA itself: the model's reconstruction equals PCA's, held-out fields too
    # (fields of full rank, so that every one of the 8 components is defined by the data, not by round-off; the
    # tolerance is float32 round-off through the whitened components).
    noise = 0.04 * torch.randn(values.shape, generator=torch.Generator().manual_seed(2))
    train, test = values[:18] + noise[:18], values[18:] + noise[18:]
    linear = VaMoH("sphere", 1, encoder=[dict(out_channels=8, num_neighbors=9, num_centroids=64)], latent_dim=8,
                   hypernet_hidden=[16], generator_hidden=[16], num_frequencies=16, categorical_hidden=[8],
                   flow_layers=2, likelihood=("gaussian", {"link": "identity"}), factor_grid=grid.shape)
    linear.initialize_generators(grid.pos.repeat(18, 1), train.reshape(-1, 1), steps=200,
                                 generator=torch.Generator().manual_seed(0))
    linear.initialize_factors(train, grid.pos)
    linear.eval()
    for v in (train, test):
        rec = linear.reconstruct(points_batch(grid, v), grid.pos)
        torch.testing.assert_close(rec.double(), PCABaseline(train, 8).reconstruct(v).double(), atol=2e-4, rtol=0)
    with pytest.raises(ValueError, match="factor_grid"):
        VaMoH("sphere", 1, encoder=[dict(out_channels=8, num_neighbors=9, num_centroids=64)], latent_dim=8,
              likelihood="gaussian").initialize_factors(train, grid.pos)
    with pytest.raises(ValueError, match="pos must"):
        model.initialize_factors(train, grid.pos[:5])
