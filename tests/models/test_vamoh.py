import math

import numpy as np
import pytest
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from pcfunc.data import LatLonGrid
from pcfunc.models import VaMoH, point_dropout, vamoh_config
from pcfunc.models._points import as_points, dense_points
from pcfunc.nn import LayerSpec, get_likelihood
from pcfunc.nn._likelihood_math import continuous_bernoulli_log_norm

GRID = LatLonGrid.regular(9, 16)  # 7 * 16 + 2 = 114 points


def tiny(**kw):
    args = dict(in_channels=1, encoder=[LayerSpec(8, 4, num_centroids=32), LayerSpec(8, 4, global_centroid=True)],
                latent_dim=4, num_components=3, hypernet_hidden=(8,), generator_hidden=(8,), num_frequencies=4,
                categorical_hidden=(8,), flow_layers=2)
    args.update(kw)
    return VaMoH("sphere", **args).double()


def batch(num=3, grid=GRID, seed=0):
    g = torch.Generator().manual_seed(seed)
    lat = torch.linspace(-1, 1, grid.shape[0], dtype=torch.float64)
    vals = [0.5 + 0.4 * torch.sin(3 * lat[:, None] + i + torch.zeros(grid.shape)) * 0.9
            + 0.05 * torch.rand(grid.shape, generator=g, dtype=torch.float64) for i in range(num)]
    b = grid.to_batch(torch.stack(vals)[..., None])
    b.pos = b.pos.double()
    return b


def cb_log_prob(logit, y):
    # Independent reference: y log sigma + (1-y) log(1-sigma) + log C via torch's distribution (moderate logits).
    return torch.distributions.ContinuousBernoulli(logits=logit).log_prob(y)


def brute_force_mixture_terms(m, z, weights, pos, y):
    """Expected log-likelihood and KL of q(c) of one cloud, point by point and component by component."""
    ll = kl_c = 0.0
    for d in range(pos.size(0)):
        enc = m.encoding(pos[d:d + 1])
        q = torch.softmax(m.posterior_c(enc, z, y[d:d + 1].unsqueeze(0))[0, 0], -1)
        p_logit = m.prior_c(enc, z)[0, 0]
        for k in range(m.num_components):
            logit = m.hypernet.target(pos[d:d + 1], weights[:, k])[0, 0]
            ll = ll + q[k] * cb_log_prob(logit, y[d]).sum()
        kl_c = kl_c + (q * (torch.log(q) - torch.log_softmax(p_logit, -1))).sum()
    return ll, kl_c


def test_elbo_matches_brute_force():
    torch.manual_seed(1)
    m = tiny()
    m.warmup = False
    b = batch()
    m.eval()
    out = m.elbo(b, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    mu, logvar = m.encoder(b.x, b.pos, b.batch)
    eps = torch.randn((1, *mu.shape), generator=g, dtype=mu.dtype)[0]
    z = mu + torch.exp(0.5 * logvar) * eps
    weights = m.hypernet(z)  # [B, K, P]
    for i in range(3):
        sel = b.batch == i
        ll, kl_c = brute_force_mixture_terms(m, z[i:i + 1], weights[i:i + 1], b.pos[sel], b.x[sel])
        log_q = torch.distributions.Normal(mu[i], torch.exp(0.5 * logvar[i])).log_prob(z[i]).sum()
        kl_z = log_q - m.flow.log_prob(z[i:i + 1])[0]
        torch.testing.assert_close(out.log_likelihood[i], ll)
        torch.testing.assert_close(out.kl_c[i], kl_c)
        torch.testing.assert_close(out.kl_z[i], kl_z)
        torch.testing.assert_close(out.elbo[i], ll - kl_z - kl_c)
    torch.testing.assert_close(out.loss, -out.elbo.mean())
    assert out.num_points.tolist() == [GRID.num_points] * 3


def test_warmup_uses_standard_prior_and_uniform_categorical():
    m = tiny().eval()
    assert m.warmup
    b = batch()
    out = m.elbo(b, generator=torch.Generator().manual_seed(0))
    mu, logvar = m.encode(b)
    analytic = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
    torch.testing.assert_close(out.kl_z, analytic)
    # Uniform prior on c: KL = sum_d sum_k q log(q K) >= 0, and the prior net and the flow get no gradient.
    out.loss.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in m.prior_c.parameters())
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in m.flow.parameters())
    assert bool((out.kl_c >= 0).all())


def test_mc_kl_converges_to_closed_form():
    # With a 0-layer flow the prior is N(0, I): the MC estimate averages to the analytic KL.
    m = tiny(flow_layers=0).eval()
    m.warmup = False
    b = batch(1)
    mu, logvar = m.encode(b)
    analytic = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(-1)
    out = m.elbo(b, num_samples=4000, generator=torch.Generator().manual_seed(0))
    kl, ref = float(out.kl_z[0].detach()), float(analytic[0].detach())
    assert abs(kl - ref) < 0.05 * max(1.0, ref)


@pytest.mark.parametrize("estimator,encoder_gets_grad", [("mc", True), ("cross_entropy", False)])
def test_kl_estimator_gradients(estimator, encoder_gets_grad):
    m = tiny(kl_estimator=estimator).eval()
    m.warmup = False
    out = m.elbo(batch(), generator=torch.Generator().manual_seed(0))
    out.kl_z.sum().backward()
    enc = max([float(p.grad.abs().max()) for p in m.encoder.parameters() if p.grad is not None], default=0.0)
    flow = max(float(p.grad.abs().max()) for p in m.flow.parameters() if p.grad is not None)
    assert flow > 0
    assert (enc > 0) == encoder_gets_grad


def test_point_dropout_keeps_enough_points_and_all_targets():
    b = batch(4)
    pts = as_points(b, GRID.manifold, 1, "b")
    g = torch.Generator().manual_seed(0)
    fractions = []
    for _ in range(50):
        out = point_dropout(pts, 0.9, 40, g)
        counts = torch.bincount(out.batch, minlength=4)
        assert int(counts.min()) >= 40
        fractions.append(float(counts.sum()) / pts.batch.numel())
        # Kept points are real points of their own cloud, in order.
        assert bool((out.batch[1:] >= out.batch[:-1]).all())
    mean = sum(fractions) / len(fractions)
    assert 0.45 < mean < 0.7  # E[1 - p] = 0.55 for p ~ U(0, 0.9), raised a bit by the 40-point floor
    m = tiny(max_dropout=0.5)
    m.train()
    res = m.elbo(b, generator=torch.Generator().manual_seed(0))
    assert bool((res.num_encoded <= GRID.num_points).all()) and bool((res.num_encoded >= 32).all())
    assert int(res.num_encoded.sum()) < 4 * GRID.num_points
    assert res.num_points.tolist() == [GRID.num_points] * 4  # the likelihood sees every point
    m.eval()
    assert m.elbo(b).num_encoded.tolist() == [GRID.num_points] * 4


def test_reconstruct_is_resolution_free_and_chunk_invariant():
    m = tiny().eval()
    m.warmup = False
    b = batch(2)
    own = m.reconstruct(b)
    assert own.shape == b.x.shape and bool(((own >= 0) & (own <= 1)).all())
    fine = GRID.super_resolution(2)
    sr = m.reconstruct(b, fine.pos.double(), chunk_size=50)
    # The finer grid contains the original points: the prediction there is the same function value.
    d = torch.cdist(GRID.pos.double(), fine.pos.double())
    j = d.argmin(1)
    assert float(d.min(1).values.max()) < 1e-6
    torch.testing.assert_close(sr[:, j].reshape(-1, 1), own)
    torch.testing.assert_close(m.reconstruct(b, fine.pos.double()), sr)
    z = m.encode(b)[0]
    torch.testing.assert_close(m.decode(z, GRID.pos.double()).reshape(-1, 1), own)
    assert m.training is False


def test_inference_restores_training_mode_and_needs_no_grad():
    m = tiny()
    m.train()
    out = m.reconstruct(batch(2))
    assert m.training and not out.requires_grad


def test_sample_component_maps_interpolate_inpaint():
    m = tiny().eval()
    m.warmup = False
    pos = GRID.pos.double()
    s = m.sample(5, pos, generator=torch.Generator().manual_seed(0))
    assert s.shape == (5, GRID.num_points, 1) and bool(((s >= 0) & (s <= 1)).all())
    d = m.sample(5, pos, generator=torch.Generator().manual_seed(0), mean=False)
    assert d.shape == s.shape and bool(((d >= 0) & (d <= 1)).all())
    b = batch(2)
    maps = m.component_maps(b)
    torch.testing.assert_close(maps.probs.sum(-1), torch.ones(2, GRID.num_points, dtype=torch.float64))
    assert bool((maps.entropy <= math.log(3) + 1e-9).all()) and bool((maps.entropy >= 0).all())
    assert torch.equal(maps.segmentation, maps.probs.argmax(-1))
    post = m.component_maps(b, posterior=True)
    assert not torch.allclose(post.probs, maps.probs)
    with pytest.raises(ValueError, match="posterior"):
        m.component_maps(b, pos=pos, posterior=True)
    z = m.encode(b)[0]
    path = m.interpolate(z[0], z[1], pos, steps=3)
    torch.testing.assert_close(path[0], m.decode(z[:1], pos)[0])
    torch.testing.assert_close(path[-1], m.decode(z[1:2], pos)[0])
    torch.testing.assert_close(path[1], m.decode((z[:1] + z[1:2]) / 2, pos)[0])
    # In-painting from the northern half only: the encoder sees only those points.
    north = b.pos[:, 2] > 0
    obs = Batch(x=b.x[north], pos=b.pos[north], batch=b.batch[north])
    full = m.inpaint(obs, pos)
    torch.testing.assert_close(full, m.decode(m.encode(obs)[0], pos))
    kept = m.inpaint(obs, pos, keep_observed=True)
    sel = pos[:, 2] > 0
    torch.testing.assert_close(kept[0, sel], b.x[(b.batch == 0) & north])
    torch.testing.assert_close(kept[:, ~sel], full[:, ~sel])


def test_predictive_matches_manual_monte_carlo():
    m = tiny().eval()
    m.warmup = False
    b = batch(2)
    pos = GRID.pos.double()
    pred = m.predictive(b, pos, num_samples=6, include_noise=False, generator=torch.Generator().manual_seed(3))
    mu, logvar = m.encode(b)
    g = torch.Generator().manual_seed(3)
    means = torch.stack([m.decode(mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g,
                                                                             dtype=mu.dtype), pos)
                         for _ in range(6)])
    torch.testing.assert_close(pred.mean, means.mean(0))
    torch.testing.assert_close(pred.std, means.std(0))
    torch.testing.assert_close(pred.spread, means.std(0))
    noisy = m.predictive(b, num_samples=8)
    assert noisy.mean.shape == (2, GRID.num_points, 1) and bool((noisy.std > 0).all())
    # One pass with the noise gives the inferred function's spread too: the same draws' conditional means.
    both = m.predictive(b, pos, num_samples=6, generator=torch.Generator().manual_seed(3), std_scale=2.0)
    torch.testing.assert_close(both.spread, 2.0 * means.std(0))
    assert bool((both.std > both.spread).all())


def test_a_predictive_that_would_run_for_hours_says_so_after_its_first_draw():
    import warnings

    m = tiny().eval()
    b = batch(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning stops the call here, after one draw
        with pytest.raises(UserWarning, match=r"predictive: 1000000000 posterior draws of 2 field\(s\) .* minutes"):
            m.predictive(b, num_samples=10**9)
        m.predictive(b, num_samples=8)  # an ordinary call says nothing


def test_predictive_noise_is_the_mixtures_variance_in_closed_form():
    # Law of total variance with the same latent draws: spread of the conditional means plus the mean of the
    # mixture's variance, the components' moments from torch's continuous Bernoulli (moderate logits).
    m = tiny().eval()
    m.warmup = False
    b = batch(2)
    pos = GRID.pos.double()
    pred = m.predictive(b, pos, num_samples=5, generator=torch.Generator().manual_seed(4))
    mu, logvar = m.encode(b)
    g = torch.Generator().manual_seed(4)
    means, noise = [], []
    for _ in range(5):
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
        params = m.component_params(z, pos)  # [B, N, K, 1]
        assert float(params.abs().max()) < 10
        comp = torch.distributions.ContinuousBernoulli(logits=params)
        pi = torch.softmax(m.mixture_logits(z, pos), -1).unsqueeze(-1)
        mean = (pi * comp.mean).sum(-2)
        means.append(mean)
        noise.append((pi * (comp.variance + (comp.mean - mean.unsqueeze(-2)) ** 2)).sum(-2))
    means = torch.stack(means)
    torch.testing.assert_close(pred.mean, means.mean(0))
    torch.testing.assert_close(pred.std ** 2, means.var(0) + torch.stack(noise).mean(0))


def test_dense_points_variable_sizes():
    a = Data(x=torch.rand(5, 1, dtype=torch.float64), pos=GRID.pos[:5].double())
    c = Data(x=torch.rand(4, 1, dtype=torch.float64), pos=GRID.pos[10:14].double())
    b = Batch.from_data_list([a, c])
    d = dense_points(as_points(b, GRID.manifold, 1, "b"))
    assert d.pos.shape == (2, 5, 3) and d.mask.tolist() == [[True] * 5, [True] * 4 + [False]]
    torch.testing.assert_close(d.pos[1, :4], c.pos)
    torch.testing.assert_close(d.y[d.mask], b.x)
    m = tiny().eval()
    out = m.elbo(b)
    assert out.num_points.tolist() == [5, 4]
    assert m.reconstruct(b).shape == (9, 1)


def test_errors_name_the_argument():
    m = tiny()
    b = batch(1)
    bad = b.clone()
    bad.x = bad.x + 2.0
    with pytest.raises(ValueError, match=r"batch\.x must lie in \[0, 1\] for the continuous_bernoulli likelihood"):
        m.elbo(bad)
    bad = b.clone()
    bad.x = torch.cat([bad.x, bad.x], 1)
    with pytest.raises(ValueError, match=r"batch\.x must have shape"):
        m.elbo(bad)
    bad = b.clone()
    bad.pos = bad.pos * 2
    with pytest.raises(ValueError, match=r"batch\.pos"):
        m.elbo(bad)
    with pytest.raises(ValueError, match="pos must have 3 coordinates"):
        m.reconstruct(b, torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="kl_estimator"):
        tiny(kl_estimator="exact")
    with pytest.raises(ValueError, match="max_dropout"):
        tiny(max_dropout=1.0)
    with pytest.raises(ValueError, match="num_samples"):
        m.predictive(b, num_samples=1)
    with pytest.raises(TypeError, match="batch must have tensor attributes"):
        m.elbo(torch.zeros(3))


def test_paper_configuration():
    cfg = vamoh_config("era5")
    assert cfg["training"] == dict(epochs=600, batch_size=64, lr=1e-4)
    m = VaMoH.from_config("era5")
    assert m.num_components == 3 and m.latent_dim == 32 and m.flow.num_layers == 10
    assert m.hypernet.num_weights == 24833
    assert sum(p.numel() for p in m.hypernet.parameters()) == 3 * 12_879_361
    assert [s.num_centroids for s in m.encoder.specs] == [1024, 256, 64, 32, 16]
    assert m.likelihood.name == "continuous_bernoulli" and m.min_encoder_points == 1024
    assert m.encoding.out_dim == 256
    img = VaMoH.from_config("polymnist")
    assert img.manifold.ambient_dim == 2 and img.likelihood.name == "discretized_logistic"
    with pytest.raises(ValueError, match="name must be one of"):
        vamoh_config("mnist")


def test_state_dict_round_trip_keeps_stage():
    m = tiny()
    m.warmup = False
    sd = m.state_dict()
    fresh = tiny()
    assert fresh.warmup
    fresh.load_state_dict(sd)
    assert not fresh.warmup
    b = batch(1)
    torch.testing.assert_close(fresh.eval().reconstruct(b), m.eval().reconstruct(b))


def test_continuous_bernoulli_reference_is_consistent():
    # Guards the brute-force reference above: torch's CB equals the closed form at moderate logits.
    logit = torch.linspace(-5, 5, 11, dtype=torch.float64)
    y = torch.full_like(logit, 0.3)
    ref = y * torch.nn.functional.logsigmoid(logit) + (1 - y) * torch.nn.functional.logsigmoid(-logit)
    torch.testing.assert_close(cb_log_prob(logit, y), ref + continuous_bernoulli_log_norm(logit))


def test_named_encoder_takes_its_weight_network_widths():
    def widths(m):
        return [lin.out_features for lin in m.encoder.convs[0].weight_net.net if isinstance(lin, torch.nn.Linear)]

    assert widths(VaMoH.from_config("polymnist")) == [16, 16]
    assert widths(VaMoH.from_config("era5")) == [16, 16, 16, 16]


def test_autocast_keeps_densities_in_full_precision():
    m = tiny().float().eval()
    m.warmup = False
    b = batch(2)
    b.x, b.pos = b.x.float(), b.pos.float()
    ref = m.elbo(b, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = m.elbo(b, generator=torch.Generator().manual_seed(0))
        rec = m.reconstruct(b)
    for t in (low.elbo, low.kl_z, low.kl_c, low.log_likelihood, rec):
        assert t.dtype == torch.float32
    torch.testing.assert_close(low.elbo, ref.elbo, rtol=2e-2, atol=2.0)


def test_shared_point_dropout_keeps_the_grid_shared():
    b = batch(5)
    pts = as_points(b, GRID.manifold, 1, "b")
    out = point_dropout(pts, 0.8, 40, torch.Generator().manual_seed(1), shared=True)
    counts = torch.bincount(out.batch)
    assert bool((counts == counts[0]).all()) and int(counts[0]) >= 40
    pos = out.pos.view(5, -1, 3)
    assert torch.equal(pos, pos[:1].expand_as(pos))  # the same points kept in every cloud
    for c in range(5):  # with each cloud's own values
        d = torch.cdist(out.pos[out.batch == c], b.pos[b.batch == c])
        torch.testing.assert_close(out.x[out.batch == c], b.x[b.batch == c][d.argmin(1)])
    # Clouds on different points fall back to one mask per cloud.
    a = Data(x=torch.rand(60, 1, dtype=torch.float64), pos=GRID.pos[:60].double())
    c = Data(x=torch.rand(60, 1, dtype=torch.float64), pos=GRID.pos[50:110].double())
    mixed = point_dropout(as_points(Batch.from_data_list([a, c]), GRID.manifold, 1, "b"), 0.5, 10,
                          torch.Generator().manual_seed(0), shared=True)
    assert int(torch.bincount(mixed.batch).min()) >= 10
    m = tiny(max_dropout=0.6).train()
    res = m.elbo(b, generator=torch.Generator().manual_seed(0))
    assert len(set(res.num_encoded.tolist())) == 1 and int(res.num_encoded[0]) < GRID.num_points
    m2 = tiny(max_dropout=0.6, shared_dropout=False).train()
    res2 = m2.elbo(b, generator=torch.Generator().manual_seed(0))
    assert len(set(res2.num_encoded.tolist())) > 1


@pytest.mark.parametrize("with_y", [False, True], ids=["prior", "posterior"])
def test_categorical_net_is_the_mlp_on_the_concatenation_with_its_gradients(with_y):
    # The split first layer and the in-place activations against one MLP on [rff(x), y, z] per point.
    from pcfunc.models._categorical import CategoricalNet

    torch.manual_seed(0)
    E, Z, K, F, B, N = 6, 4, 3, 2, 2, 5
    net = CategoricalNet(E, Z, K, F if with_y else 0, hidden=(7, 5)).double()
    coords = torch.randn(N, E, dtype=torch.float64)
    z = torch.randn(B, Z, dtype=torch.float64, requires_grad=True)
    y = torch.randn(B, N, F, dtype=torch.float64) if with_y else None

    def reference(z):
        parts = [coords.expand(B, N, E)] + ([y] if with_y else []) + [z[:, None].expand(B, N, Z)]
        weights = [net.coord_in.weight] + ([net.feature_in.weight] if with_y else []) + [net.latent_in.weight]
        first = torch.cat(weights, 1)
        h = torch.cat(parts, -1) @ first.t() + net.coord_in.bias
        for lin in net.layers:
            h = lin(torch.nn.functional.leaky_relu(h, 0.1))
        return h

    out = net(coords, z, y)
    torch.testing.assert_close(out, reference(z))
    grad = torch.randn_like(out)
    params = [z] + list(net.parameters())
    for a, b in zip(torch.autograd.grad(out, params, grad), torch.autograd.grad(reference(z), params, grad)):
        torch.testing.assert_close(a, b)
    assert torch.autograd.gradgradcheck(lambda z_: net(coords, z_, y), (z,))


def test_initialize_generators_starts_every_latent_at_the_data_mean():
    torch.manual_seed(0)
    model = tiny(likelihood="gaussian", num_frequencies=16, sigma=0.5, generator_hidden=(16,)).float()
    pos = GRID.pos.float()
    lat = torch.asin(pos[:, 2].clamp(-1, 1))
    mean = 0.5 + 0.3 * torch.cos(2 * lat)[:, None]
    g = torch.Generator().manual_seed(0)
    # Five noisy "training fields" around one mean function.
    y = torch.cat([mean + 0.02 * torch.randn(mean.shape, generator=g) for _ in range(5)])
    before = model.decode(torch.randn(3, 4, generator=g), pos)
    nll = model.initialize_generators(pos.repeat(5, 1), y, steps=800, generator=g)
    after = model.decode(torch.randn(3, 4, generator=g), pos)
    err = lambda pred: float((pred - mean).pow(2).mean().sqrt())  # noqa: E731
    assert err(after) < 0.03 < err(before)
    # The learned scale was fitted too: close to the noise (0.02), and the reported NLL is the Gaussian's.
    sigma = float(model.likelihood.log_scale.exp())
    assert 0.01 < sigma < 0.05
    assert nll == pytest.approx(math.log(sigma) + 0.5 * math.log(2 * math.pi) + 0.5, abs=0.3)
    b = model.hypernet.biases[-1]
    assert torch.equal(b[0], b[1]) and torch.equal(b[1], b[2])
    with pytest.raises(ValueError, match="y must have shape"):
        model.initialize_generators(pos, y)
    with pytest.raises(ValueError, match="residual_scale"):
        model.initialize_generators(pos, mean, residual_scale=0.0)
    with pytest.raises(ValueError, match="pos"):
        model.initialize_generators(pos * 2, mean)


def test_initialize_generators_fits_the_base_function_to_the_fine_detail():
    pos = GRID.pos.float()
    lat, lon = torch.asin(pos[:, 2].clamp(-1, 1)), torch.atan2(pos[:, 1], pos[:, 0])
    # A smooth part the small generator INR holds, and detail (wavenumber 6 in longitude) it cannot.
    mean = (0.5 + 0.2 * torch.cos(2 * lat) + 0.1 * torch.cos(lat) * torch.sin(6 * lon))[:, None]
    errs = {}
    for base_steps in (0, 600):
        torch.manual_seed(0)
        model = tiny(likelihood="gaussian", num_frequencies=2, sigma=0.2, generator_hidden=(8,),
                     base_hidden=(32, 32), base_frequencies=64, base_sigma=1.5).float()
        g = torch.Generator().manual_seed(0)
        model.initialize_generators(pos, mean, steps=400, generator=g, base_steps=base_steps)
        out = model.decode(torch.randn(2, 4, generator=g), pos)
        errs[base_steps] = float((out - mean).pow(2).mean().sqrt())
    assert errs[600] < 0.5 * errs[0]
    with pytest.raises(ValueError, match="base_steps"):
        model.initialize_generators(pos, mean, base_steps=-1)


def test_recalibrate_encoder_makes_evaluation_mode_the_trained_function():
    torch.manual_seed(0)
    model = tiny(encoder=[LayerSpec(8, 4, num_centroids=32), LayerSpec(8, 4, num_centroids=8)])
    b = batch(4)
    with torch.no_grad():
        for m in model.encoder.modules():  # stale running statistics, as after training on thinned clouds
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
        model.encoder.train()
        trained = model.encoder(b.x, b.pos, b.batch)[0]
        model.eval()
        stale = model.encode(b)[0]
        assert model.recalibrate_encoder([b]) == 1
        assert not model.training
        fresh = model.encode(b)[0]
    # Running statistics of this one batch: evaluation mode computes what training mode did (up to the
    # unbiased variance BatchNorm keeps, n / (n - 1) over 32 rows in the last level).
    assert torch.allclose(fresh, trained, atol=0.15 * float(trained.abs().max()))
    assert (fresh - trained).abs().max() < 0.2 * (stale - trained).abs().max()
    with pytest.raises(ValueError, match="batches is empty"):
        model.recalibrate_encoder([])
    assert tiny(encoder_norm="instance").recalibrate_encoder([b]) == 0


def test_kl_weight_changes_the_loss_not_the_elbo():
    torch.manual_seed(0)
    a = tiny()
    b = tiny(kl_weight=3.0)
    b.load_state_dict(a.state_dict())
    a.warmup = b.warmup = False
    x = batch(3)
    ta = a.elbo(x, dropout=False, generator=torch.Generator().manual_seed(0))
    tb = b.elbo(x, dropout=False, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(ta.elbo, tb.elbo)
    expect = -(ta.log_likelihood - 3.0 * ta.kl_z - ta.kl_c).mean()
    assert torch.allclose(tb.loss, expect) and torch.allclose(ta.loss, -ta.elbo.mean())
    with pytest.raises(ValueError, match="kl_weight"):
        tiny(kl_weight=-1.0)


def test_refined_posterior_fits_the_observed_points_better():
    torch.manual_seed(0)
    model = tiny(likelihood=get_likelihood("gaussian", scale="fixed", init_scale=0.02)).eval()
    # Fields the generators can represent exactly: decoded from latents the encoder does not know.
    z_true = 1.5 * torch.randn(3, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = model.decode(z_true, GRID.pos.double())
    b = GRID.to_batch(GRID.to_array(y.reshape(-1, 1), torch.arange(3).repeat_interleave(GRID.num_points)))
    b.pos = b.pos.double()
    plain = model.reconstruct(b).view_as(y)
    assert torch.equal(model.reconstruct(b, refine_steps=0).view_as(y), plain)
    refined = model.reconstruct(b, refine_steps=30).view_as(y)
    err = lambda p: float((p - y).pow(2).mean())  # noqa: E731
    assert err(refined) < 0.5 * err(plain)
    # The parameters are not touched (no gradients kept, no update).
    assert all(p.grad is None for p in model.parameters())
    # The refined mean is a mode of the posterior density (no small step in any direction improves on it: the
    # generators are piecewise linear, so not a vanishing gradient), and a field refined alone ends where it does
    # in the batch.
    mu, logvar = model.posterior(b, refine_steps=30)
    torch.testing.assert_close(logvar, model.encode(b)[1])  # the spread stays the encoder's
    pts = GRID.pos.double()

    def objective(z: Tensor, field: int) -> Tensor:
        params = model.component_params(z, pts)
        log_p = model.likelihood.log_prob(params, y[field][None, :, None, :], validate=False).sum(-1)
        log_pi = torch.log_softmax(model.mixture_logits(z, pts), -1)
        return -(torch.logsumexp(log_pi + log_p, -1).sum() + model.prior_log_prob(z).sum())

    start = model.encode(b)[0]
    for field in range(3):
        z = mu[field:field + 1]
        value = float(objective(z, field))
        assert value < float(objective(start[field:field + 1], field))
        step = 1e-3 * torch.randn(64, 4, generator=torch.Generator().manual_seed(field), dtype=torch.float64)
        assert min(float(objective(z + dz, field)) for dz in step) >= value - 1e-9
        one = GRID.to_batch(GRID.to_array(y[field].reshape(-1, 1), torch.zeros(GRID.num_points, dtype=torch.long)))
        one.pos = one.pos.double()
        torch.testing.assert_close(model.posterior(one, refine_steps=30)[0][0], mu[field])
    with pytest.raises(ValueError, match="refine_steps"):
        model.inpaint(b, GRID.pos.double(), refine_steps=-1)


def test_batched_lbfgs_solves_each_row_as_if_alone():
    from pcfunc.models._lbfgs import batched_lbfgs

    # Rows of different scales and conditioning: quadratics with known minima, and Rosenbrock's valley.
    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 6, 6, generator=g, dtype=torch.float64)
    H = A @ A.transpose(1, 2) + torch.diag_embed(torch.tensor([1e-2, 1.0, 1e2, 1e4], dtype=torch.float64)[:, None]
                                                 .expand(4, 6))
    b = torch.randn(4, 6, generator=g, dtype=torch.float64)
    quad = lambda x: 0.5 * torch.einsum("bi,bij,bj->b", x, H, x) - (b * x).sum(-1)  # noqa: E731
    x = batched_lbfgs(quad, torch.zeros(4, 6, dtype=torch.float64), 60)
    torch.testing.assert_close(x, torch.linalg.solve(H, b), rtol=1e-6, atol=1e-8)
    scale = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    rosen = lambda x: scale * ((1 - x[:, 0]) ** 2 + 100 * (x[:, 1] - x[:, 0] ** 2) ** 2)  # noqa: E731
    x = batched_lbfgs(rosen, torch.tensor([[-1.2, 1.0]] * 3, dtype=torch.float64), 200)
    torch.testing.assert_close(x, torch.ones(3, 2, dtype=torch.float64), rtol=0, atol=1e-6)
    # One row alone follows the same path as in the batch.
    alone = lambda v: 100 * ((1 - v[:, 0]) ** 2 + 100 * (v[:, 1] - v[:, 0] ** 2) ** 2)  # noqa: E731
    for steps in (5, 200):
        torch.testing.assert_close(batched_lbfgs(alone, torch.tensor([[-1.2, 1.0]], dtype=torch.float64), steps),
                                   batched_lbfgs(rosen, torch.tensor([[-1.2, 1.0]] * 3, dtype=torch.float64),
                                                 steps)[2:])


def test_elbo_with_target_points_matches_brute_force():
    # Fine supervision: z from the coarse clouds, the likelihood terms at other points of the same functions.
    torch.manual_seed(2)
    m = tiny()
    m.warmup = False
    m.eval()
    coarse = batch()
    fine_grid = LatLonGrid.regular(13, 24)
    fine = batch(grid=fine_grid)
    keep = torch.randperm(fine_grid.num_points, generator=torch.Generator().manual_seed(0))[:40]
    sel = (torch.arange(fine.pos.size(0)) % fine_grid.num_points)[:, None] == keep[None]
    pick = sel.any(1)
    target = Data(x=fine.x[pick], pos=fine.pos[pick], batch=fine.batch[pick])
    out = m.elbo(coarse, generator=torch.Generator().manual_seed(5), target=target)
    g = torch.Generator().manual_seed(5)
    mu, logvar = m.encoder(coarse.x, coarse.pos, coarse.batch)
    z = mu + torch.exp(0.5 * logvar) * torch.randn((1, *mu.shape), generator=g, dtype=mu.dtype)[0]
    weights = m.hypernet(z)
    for i in range(3):
        s = target.batch == i
        ll, kl_c = brute_force_mixture_terms(m, z[i:i + 1], weights[i:i + 1], target.pos[s], target.x[s])
        kl_z = torch.distributions.Normal(mu[i], torch.exp(0.5 * logvar[i])).log_prob(z[i]).sum() \
            - m.flow.log_prob(z[i:i + 1])[0]
        torch.testing.assert_close(out.log_likelihood[i], ll)
        torch.testing.assert_close(out.kl_c[i], kl_c)
        torch.testing.assert_close(out.elbo[i], ll - kl_z - kl_c)
    assert out.num_points.tolist() == [40] * 3
    assert out.num_encoded.tolist() == [GRID.num_points] * 3
    # target=batch is the paper's ELBO.
    same = m.elbo(coarse, generator=torch.Generator().manual_seed(5), target=coarse)
    torch.testing.assert_close(same.elbo, m.elbo(coarse, generator=torch.Generator().manual_seed(5)).elbo)
    with pytest.raises(ValueError, match="target"):
        m.elbo(coarse, target=Data(x=target.x[target.batch < 2], pos=target.pos[target.batch < 2],
                                   batch=target.batch[target.batch < 2]))
    with pytest.raises(ValueError, match="target.x"):
        m.elbo(coarse, target=Data(x=target.x + 5, pos=target.pos, batch=target.batch))


def test_reconstruct_with_interpolated_residuals_matches_brute_force():
    torch.manual_seed(3)
    m = tiny().eval()
    b = batch()
    fine = torch.nn.functional.normalize(torch.randn(300, 3, generator=torch.Generator().manual_seed(0),
                                                     dtype=torch.float64), dim=-1)  # random points: no ties
    plain = m.reconstruct(b, fine)
    out = m.reconstruct(b, fine, residual_neighbors=3)
    # Brute force: per cloud, all distances, the 3 nearest, inverse squared distance weights (PyG's knn_interpolate).
    residual = b.x - m.reconstruct(b)
    for i in range(3):
        sel = b.batch == i
        d2 = torch.cdist(fine, b.pos[sel]).pow(2)
        near = d2.topk(3, largest=False)
        w = 1 / near.values.clamp_min(1e-24)  # a query on an observed point takes its value
        ref = (residual[sel][near.indices, 0] * w).sum(1) / w.sum(1)
        torch.testing.assert_close(out[i, :, 0] - plain[i, :, 0], ref)
    # At the observed points the result is the observed values.
    torch.testing.assert_close(m.reconstruct(b, residual_neighbors=4), b.x)
    with pytest.raises(ValueError, match="residual_neighbors"):
        m.reconstruct(b, fine, residual_neighbors=-1)
    with pytest.raises(ValueError, match="residual_neighbors=500"):
        m.reconstruct(b, fine, residual_neighbors=500)


def test_predictive_with_residuals_is_conditional_simulation():
    torch.manual_seed(5)
    m = tiny().eval()
    m.warmup = False
    b = batch(2)
    fine = torch.nn.functional.normalize(torch.randn(200, 3, generator=torch.Generator().manual_seed(1),
                                                     dtype=torch.float64), dim=-1)
    pred = m.predictive(b, fine, num_samples=5, include_noise=False, generator=torch.Generator().manual_seed(3),
                        residual_neighbors=3)
    # Brute force: the same latent draws, each decoded and corrected by its own residuals (all distances).
    mu, logvar = m.encode(b)
    g = torch.Generator().manual_seed(3)
    draws = []
    for _ in range(5):
        z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=g, dtype=mu.dtype)
        out = m.decode(z, fine)
        for i in range(2):
            sel = b.batch == i
            r = b.x[sel] - m.decode(z[i:i + 1], b.pos[sel])[0]
            near = torch.cdist(fine, b.pos[sel]).pow(2).topk(3, largest=False)
            w = 1 / near.values
            out[i] = out[i] + ((r[near.indices, 0] * w).sum(1) / w.sum(1))[:, None]
        draws.append(out)
    draws = torch.stack(draws)
    torch.testing.assert_close(pred.mean, draws.mean(0))
    torch.testing.assert_close(pred.std, draws.std(0))
    # Every draw passes through the observations: no spread there.
    at_obs = m.predictive(b, num_samples=4, include_noise=False, residual_neighbors=2)
    torch.testing.assert_close(at_obs.mean, b.x.view(2, -1, 1))
    assert float(at_obs.std.max()) < 1e-6
    # std_scale multiplies the spread only.
    wide = m.predictive(b, fine, num_samples=5, include_noise=False, generator=torch.Generator().manual_seed(3),
                        residual_neighbors=3, std_scale=2.5)
    torch.testing.assert_close(wide.mean, pred.mean)
    torch.testing.assert_close(wide.std, 2.5 * pred.std)
    with pytest.raises(ValueError, match="std_scale"):
        m.predictive(b, fine, std_scale=0.0)
    with pytest.raises(ValueError, match="residual_neighbors"):
        m.predictive(b, fine, residual_neighbors=-2)


def test_base_function_is_added_to_every_components_location():
    torch.manual_seed(4)
    m = tiny(likelihood=get_likelihood("gaussian", scale="predicted"), base_hidden=(8, 8), base_frequencies=6).eval()
    m.warmup = False
    b = batch()
    z = torch.randn(3, 4, dtype=torch.float64)
    pos = GRID.pos.double()
    # A new base starts at zero: the model is the one without a base.
    plain = tiny(likelihood=get_likelihood("gaussian", scale="predicted"))
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("base.")})
    plain.warmup = False
    torch.testing.assert_close(m.decode(z, pos), plain.eval().decode(z, pos))
    with torch.no_grad():
        for p in m.base.parameters():
            p.normal_(0, 0.5)
    # By hand: sigmoid(INR_k location + g(x)_loc) per component, log-scale INR_k + g(x)_scale, then the prior
    # mixture of the locations.
    g = m.base(pos)  # [N, 2]: location and log-scale
    assert g.shape == (GRID.num_points, 2)
    w = m.hypernet(z)
    raw = torch.stack([m.hypernet.target(pos, w[:, k]) for k in range(3)], 2)  # [B, N, K, 2]
    loc = torch.sigmoid(raw[..., :1] + g[None, :, None, :1])
    pi = torch.softmax(m.prior_c(m.encoding(pos), z), -1)
    torch.testing.assert_close(m.decode(z, pos), (pi.unsqueeze(-1) * loc).sum(-2))
    params = m.component_params(z, pos)
    torch.testing.assert_close(params[..., 1:], raw[..., 1:] + g[None, :, None, 1:])
    assert m.elbo(b).loss.requires_grad
    # With a learned (global) scale the base has the location only.
    assert tiny(likelihood="gaussian", base_hidden=(8,), base_frequencies=6).base(pos).shape == (GRID.num_points, 1)
    with pytest.raises(ValueError, match="base_hidden"):
        tiny(base_hidden=(0,))


def test_base_table_is_added_to_every_components_location():
    torch.manual_seed(5)
    m = tiny(likelihood="gaussian", base_grid=(9, 16)).eval()
    m.warmup = False
    z = torch.randn(3, 4, dtype=torch.float64)
    pos = torch.nn.functional.normalize(torch.randn(40, 3, generator=torch.Generator().manual_seed(0)).double(), dim=-1)
    plain = tiny(likelihood="gaussian")
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("base_table.")})
    plain.warmup = False
    torch.testing.assert_close(m.decode(z, pos), plain.eval().decode(z, pos))  # starts at zero
    with torch.no_grad():
        m.base_table.values.normal_()
    w = m.hypernet(z)
    raw = torch.stack([m.hypernet.target(pos, w[:, k]) for k in range(3)], 2)  # [B, N, K, 1]
    loc = torch.sigmoid(raw + m.base_table(pos)[None, :, None])
    pi = torch.softmax(m.prior_c(m.encoding(pos), z), -1)
    torch.testing.assert_close(m.decode(z, pos), (pi.unsqueeze(-1) * loc).sum(-2))


def test_initialize_generators_sets_the_base_table_to_the_training_mean():
    # A static pattern at every grid point (no smooth function holds it) plus per-field noise: with the table
    # the generators' start is the pointwise training mean at every grid point.
    g = torch.Generator().manual_seed(0)
    pos = GRID.pos.float()
    pattern = 0.5 + 0.2 * torch.rand(GRID.num_points, 1, generator=g)
    fields = pattern + 0.02 * torch.randn(6, GRID.num_points, 1, generator=g)
    errs = {}
    for grid in (None, (9, 16)):
        torch.manual_seed(0)
        model = tiny(likelihood=get_likelihood("gaussian", scale="learned"), base_grid=grid).float()
        nll = model.initialize_generators(pos.repeat(6, 1), fields.reshape(-1, 1), steps=200, residual_scale=1e-3,
                                          generator=torch.Generator().manual_seed(1), base_steps=200)
        out = model.decode(torch.zeros(1, 4), pos)
        errs[grid] = (float((out[0] - fields.mean(0)).abs().max()), nll)
        # The returned figure is the mean negative log-likelihood of every pooled point under the start, computed
        # here by the model's own public pieces.
        params = model.component_params(torch.zeros(1, 4), pos)[0, :, 0]  # [N, P C], every component equal
        with torch.no_grad():
            ref = -model.likelihood.log_prob(params.expand(6, -1, -1).reshape(-1, params.size(-1)),
                                             fields.reshape(-1, 1)).sum(-1).mean()
        assert nll == pytest.approx(float(ref), rel=1e-3, abs=1e-4)
    assert errs[(9, 16)][0] < 2e-3 < 0.02 < errs[None][0]
    assert errs[(9, 16)][1] < errs[None][1] - 0.5  # the learned scale follows: a far better likelihood


def test_the_location_link_follows_the_likelihoods_attribute_not_its_name():
    from pcfunc.nn import GaussianLikelihood

    class MyGaussian(GaussianLikelihood):  # a user's likelihood under another name
        name = "my_gaussian"

    m = tiny(likelihood=MyGaussian()).eval()
    m.warmup = False
    z = torch.randn(2, 4, dtype=torch.float64)
    out = m.decode(z, GRID.pos.double())
    assert bool(((out > 0) & (out < 1)).all())  # the sigmoid link applies (it used to be chosen by name)
    raw = m.hypernet.target(GRID.pos.double(), m.hypernet(z)[:, 0])
    torch.testing.assert_close(m.component_params(z, GRID.pos.double())[..., 0, :1], torch.sigmoid(raw[..., :1]))


def test_inference_tasks_read_only_the_models_public_surface():
    # The tasks (pcfunc.models._vamoh_inference) are written against VaMoH's public surface: every attribute
    # they read of `self` is one of their own methods, a name of MODEL_SURFACE or nn.Module's mode switches; and
    # every name of the surface is public and present on the model.
    import ast
    import inspect

    from pcfunc.models import _vamoh_inference as inference

    tree = ast.parse(inspect.getsource(inference))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "VaMoHInference")
    own = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    read = {n.attr for n in ast.walk(cls) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "self"}
    assert read - own - set(inference.MODEL_SURFACE) - {"training", "train", "eval"} == set()
    m = tiny()
    for name in inference.MODEL_SURFACE:
        assert not name.startswith("_") and hasattr(m, name), name


def test_mixture_logits_are_the_categorical_nets_and_uniform_in_warmup():
    m = tiny().eval()
    z = torch.randn(2, m.latent_dim, dtype=torch.float64)
    pos = GRID.pos.double()
    y = torch.rand(2, pos.size(0), 1, dtype=torch.float64)
    assert m.warmup
    torch.testing.assert_close(m.mixture_logits(z, pos), torch.zeros(2, pos.size(0), m.num_components,
                                                                       dtype=torch.float64))
    m.warmup = False
    torch.testing.assert_close(m.mixture_logits(z, pos), m.prior_c(m.encoding(pos), z))
    torch.testing.assert_close(m.mixture_logits(z, pos, y), m.posterior_c(m.encoding(pos), z, y))
    assert m.generator_weights(z).shape == (2, m.num_components, m.hypernet.num_weights)


def test_draws_pick_components_with_the_mixture_probabilities_and_follow_the_generator():
    # Many draws of one latent at a few points: each draw is one component's value (the noise is tiny), chosen
    # with the prior's probabilities pi_k(x, z); and a generator alone fixes the draws (not the global seed).
    from pcfunc.nn import GaussianLikelihood

    torch.manual_seed(0)
    m = tiny(likelihood=GaussianLikelihood(scale="fixed", init_scale=1e-6), categorical_hidden=(16,)).eval()
    m.warmup = False
    with torch.no_grad():
        m.prior_c.layers[-1].bias.add_(torch.tensor([1.5, 0.0, -1.0], dtype=torch.float64))  # unequal shares
    pos = GRID.pos.double()[:5]
    z = torch.randn(1, m.latent_dim, dtype=torch.float64).expand(4000, -1)
    with torch.no_grad():
        _, draws = m._mean_and_draws(z, pos, torch.Generator().manual_seed(0), None)
        means = m.likelihood.mean(m.component_params(z[:1], pos))[0, :, :, 0]  # [5, K]
        pi = torch.softmax(m.mixture_logits(z[:1], pos), -1)[0]  # [5, K]
    which = (draws[..., 0][:, :, None] - means[None]).abs().argmin(-1)  # [4000, 5]
    freq = torch.stack([(which == k).double().mean(0) for k in range(3)], -1)
    torch.testing.assert_close(freq, pi, rtol=0, atol=0.03)  # 4000 draws: sd < 0.008
    torch.manual_seed(1)
    a = m.predictive(batch(2), pos, num_samples=3, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(2)
    b = m.predictive(batch(2), pos, num_samples=3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.std, b.std, rtol=0, atol=0)


def test_linear_rbf_residual_weights_match_scipy_and_interpolate_exactly():
    # The weights of the local linear RBF interpolant against scipy's RBFInterpolator (kernel="linear",
    # neighbors=k, degree 0) on scattered points of the sphere; exact at the observed points.
    scipy_interpolate = pytest.importorskip("scipy.interpolate")
    from pcfunc.models._points import linear_rbf_weights, residual_weights

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1)
    q = torch.nn.functional.normalize(torch.randn(50, 3, generator=g, dtype=torch.float64), dim=-1)
    y = torch.sin(3 * x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * torch.randn(200, generator=g, dtype=torch.float64)
    k = 12
    nearest = torch.cdist(q, x).topk(k, largest=False).indices
    w = linear_rbf_weights(q, x[nearest])
    ref = scipy_interpolate.RBFInterpolator(x.numpy(), y.numpy(), kernel="linear", neighbors=k, degree=0)(q.numpy())
    torch.testing.assert_close((w * y[nearest]).sum(-1), torch.as_tensor(ref), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(w.sum(-1), torch.ones(50, dtype=torch.float64))
    # Through the model's residual weights: at an observed point the weight is 1 on that point.
    b = batch(2)
    pts = as_points(b, tiny().manifold, 1, "batch")
    dense = dense_points(pts)
    nearest, w = residual_weights(pts, dense, GRID.pos.double()[:7], 8, "linear")
    torch.testing.assert_close(w, torch.nn.functional.one_hot(torch.zeros(14, dtype=torch.long), 8).double(),
                               rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="residual_kernel must be one of"):
        tiny().reconstruct(b, GRID.pos.double(), residual_neighbors=4, residual_kernel="cubic")
