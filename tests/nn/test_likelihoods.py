import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, stats

from pcfunc.nn import (
    BernoulliLikelihood, ContinuousBernoulliLikelihood, DiscretizedLogisticLikelihood, GaussianLikelihood,
    Likelihood, continuous_bernoulli_log_norm, continuous_bernoulli_mean, continuous_bernoulli_variance, discretized_logistic_log_prob,
    discretized_logistic_mixture_log_prob, get_likelihood, mixture_log_prob, mixture_mean,
)

BINS = torch.arange(256, dtype=torch.float64) / 255


def _dl(y, mu, s, dtype=torch.float64):
    t = lambda v: torch.as_tensor(v, dtype=dtype)  # noqa: E731
    return discretized_logistic_log_prob(t(y), t(mu), t(np.log(s)))


# ----------------------------------------------------------------- discretized logistic
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discretized_logistic_sums_to_one_over_the_bins(dtype):
    mu = torch.tensor([0.0, 0.3, 0.5, 1.0, 76.5 / 255, -3.0, 4.0, 0.5, 0.5, 0.2], dtype=dtype)
    s = torch.tensor([1e-5, 1e-5, 1e-5, 1e-5, 1e-5, 1e-3, 1e-2, 1e3, 1e-30, 0.1], dtype=dtype)
    lp = discretized_logistic_log_prob(BINS.to(dtype)[:, None], mu, s.log())  # [256, M]
    assert lp.shape == (256, 10) and bool(torch.isfinite(lp).all()) and bool((lp <= 1e-6).all())
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(lp.exp().sum(0), torch.ones(10, dtype=dtype), atol=tol, rtol=0)


def test_discretized_logistic_matches_scipy_cdf_differences():
    rng = np.random.default_rng(0)
    i = rng.integers(0, 256, 500)
    mu = rng.uniform(-0.2, 1.2, 500)
    s = np.exp(rng.uniform(np.log(0.01), np.log(2.0), 500))
    lo = np.where(i == 0, -np.inf, (i - 0.5) / 255)
    hi = np.where(i == 255, np.inf, (i + 0.5) / 255)
    # Subtract survival functions right of the mean and CDFs left of it: no cancellation in the reference.
    right = lo > mu
    mass = np.where(right, stats.logistic.sf(lo, mu, s) - stats.logistic.sf(hi, mu, s),
                    stats.logistic.cdf(hi, mu, s) - stats.logistic.cdf(lo, mu, s))
    np.testing.assert_allclose(_dl(i / 255, mu, s).numpy(), np.log(mass), rtol=1e-9, atol=1e-12)


def test_discretized_logistic_far_tails_match_mpmath():
    cases = [(100, 0.9, 1e-3), (100, 0.0, 1e-3), (3, 0.9, 1e-4), (0, 1.0, 2e-3), (255, 0.0, 1e-3),
             (128, 0.5, 1e4), (128, 0.5, 1e-7), (200, -5.0, 0.05), (17, 30.0, 0.5)]
    sf = lambda x: 1 / (1 + mpmath.exp(x))  # noqa: E731  (logistic survival function, exact in mpmath)
    for i, mu, s in cases:
        with mpmath.workdps(60):
            a = (mpmath.mpf(i) + 0.5) / 255 / s - mpmath.mpf(mu) / s
            b = (mpmath.mpf(i) - 0.5) / 255 / s - mpmath.mpf(mu) / s
            # P(b < X < a) as a difference of survival functions right of the mean, of CDFs left of it.
            if b > 0:
                mass = sf(b) - (sf(a) if i < 255 else 0)
            else:
                mass = (sf(-a) if i < 255 else 1) - (sf(-b) if i > 0 else 0)
            ref = float(mpmath.log(mass))
        got = float(_dl(i / 255, mu, s))
        assert math.isfinite(got)
        assert got == pytest.approx(ref, rel=1e-9, abs=1e-12), (i, mu, s)


def test_discretized_logistic_edge_bins_take_the_tails():
    mu, s = 0.4, 0.2
    h = 0.5 / 255
    assert float(_dl(0.0, mu, s)) == pytest.approx(float(stats.logistic.logcdf(h, mu, s)), rel=1e-12)
    assert float(_dl(1.0, mu, s)) == pytest.approx(float(stats.logistic.logsf(1 - h, mu, s)), rel=1e-12)
    # A location far outside [0, 1] puts (almost) all the mass in the edge bin.
    assert float(_dl(0.0, -3.0, 0.05).exp()) == pytest.approx(1.0, abs=1e-12)
    assert float(_dl(1.0, 4.0, 0.05).exp()) == pytest.approx(1.0, abs=1e-12)
    # y is rounded to its bin centre.
    assert float(_dl(0.0015, mu, s)) == float(_dl(0.0, mu, s))
    assert float(_dl(10 / 255 + 1e-4, mu, s)) == pytest.approx(float(_dl(10 / 255, mu, s)), rel=1e-14)
    # Fewer levels: 2 bins, the split at 1/2.
    two = discretized_logistic_log_prob(torch.tensor([0.0, 1.0]), torch.tensor(0.5), torch.tensor(0.0), num_bins=2)
    torch.testing.assert_close(two.exp(), torch.tensor([0.5, 0.5]))


def test_discretized_logistic_mixture():
    y = BINS[:, None]
    mu, log_s = torch.tensor([0.3]), torch.tensor([-2.0])
    one = discretized_logistic_mixture_log_prob(y, torch.tensor([[0.7]]).double(), mu.double(), log_s.double())
    torch.testing.assert_close(one, discretized_logistic_log_prob(BINS, mu.double(), log_s.double())[:, None])
    logits = torch.tensor([0.2, -1.0, 1.5], dtype=torch.float64)
    mus = torch.tensor([0.1, 0.5, 0.95], dtype=torch.float64)
    log_ss = torch.tensor([-3.0, -1.0, -5.0], dtype=torch.float64)
    lp = discretized_logistic_mixture_log_prob(BINS, logits, mus, log_ss)
    w = torch.softmax(logits, 0)
    brute = sum(w[k] * discretized_logistic_log_prob(BINS, mus[k], log_ss[k]).exp() for k in range(3))
    torch.testing.assert_close(lp, brute.log())
    assert float(lp.exp().sum()) == pytest.approx(1.0, abs=1e-12)


def test_discretized_logistic_likelihood_module_mean_and_sample():
    lik = DiscretizedLogisticLikelihood(num_channels=3, init_scale=0.05, dtype=torch.float64)
    assert lik.num_params == 1 and lik.log_scale.shape == (3,)
    assert [n for n, _ in lik.named_parameters()] == ["log_scale"]
    with torch.no_grad():
        lik.log_scale.copy_(torch.tensor([-6.0, -3.0, -0.5]))
    mu = torch.tensor([[0.2, 0.97, 0.5], [0.0, 1.0, 0.9]], dtype=torch.float64)
    y = torch.tensor([[51, 250, 128], [0, 255, 200]], dtype=torch.float64) / 255
    lp = lik.log_prob(mu, y)
    torch.testing.assert_close(lp, discretized_logistic_log_prob(y, mu, lik.log_scale))
    # The mean is within half a bin of the exact mean of the discretised variable, and much closer for s >> bin.
    pmf = discretized_logistic_log_prob(BINS[:, None, None], mu, lik.log_scale.detach()).exp()
    exact = (pmf * BINS[:, None, None]).sum(0)
    mean = lik.mean(mu).detach()
    assert mean.shape == (2, 3)
    assert float((mean - exact).abs().max()) <= 0.5 / 255
    assert float((mean - exact)[:, 2].abs().max()) < 1e-6
    # Sampling: values on the grid, empirical frequencies follow the pmf.
    torch.manual_seed(1)
    samples = lik.sample(mu.expand(4000, 2, 3))
    assert samples.shape == (4000, 2, 3)
    assert bool(((samples * 255 - (samples * 255).round()).abs() < 1e-9).all())
    assert bool(((samples >= 0) & (samples <= 1)).all())
    torch.testing.assert_close(samples.mean(0), exact, atol=0.03, rtol=0)
    assert float((samples[:, 0, 0] == 51 / 255).double().mean()) == pytest.approx(float(pmf[51, 0, 0]), abs=0.02)


def test_discretized_logistic_predicted_and_fixed_scales():
    pred = get_likelihood("discretized_logistic", scale="predicted")
    assert pred.num_params == 2 and pred.log_scale is None and not list(pred.parameters())
    mu, log_s = torch.rand(5, 2), torch.randn(5, 2) - 2
    y = torch.randint(0, 256, (5, 2)) / 255.0
    expected = discretized_logistic_log_prob(y, mu, log_s)
    torch.testing.assert_close(pred.log_prob(torch.cat([mu, log_s], -1), y), expected)
    fixed = DiscretizedLogisticLikelihood(scale="fixed", init_scale=0.02)
    assert not list(fixed.parameters()) and "log_scale" in fixed.state_dict()
    torch.testing.assert_close(fixed.log_prob(mu, y), discretized_logistic_log_prob(y, mu, torch.tensor(0.02).log()))


# ----------------------------------------------------------------- continuous Bernoulli
def test_continuous_bernoulli_matches_torch_where_torch_is_accurate():
    logits = torch.cat([torch.linspace(-10, 10, 41), torch.tensor([0.0, 1e-4, -3e-3, 0.5, -0.5])]).double()
    y = torch.rand(46, dtype=torch.float64)
    ref = torch.distributions.ContinuousBernoulli(logits=logits)
    lik = ContinuousBernoulliLikelihood()
    torch.testing.assert_close(lik.log_prob(logits[:, None], y[:, None])[:, 0], ref.log_prob(y), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(lik.mean(logits[:, None])[:, 0], ref.mean, rtol=1e-7, atol=1e-7)


def test_continuous_bernoulli_normaliser_closed_form():
    # C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda), in float64 where lambda = sigmoid(eta) is accurate ...
    eta = np.concatenate([np.linspace(-15, -0.25, 60), np.linspace(0.25, 15, 60), [-1e-3, 2e-3, 0.4999, 0.5001]])
    lam = 1 / (1 + np.exp(-eta))
    closed = 2 * np.arctanh(1 - 2 * lam) / (1 - 2 * lam)
    got = continuous_bernoulli_log_norm(torch.from_numpy(eta)).numpy()
    np.testing.assert_allclose(got, np.log(closed), rtol=1e-8)
    for dtype in (torch.float32, torch.float64):  # ... and C(1/2) = 2.
        assert float(continuous_bernoulli_log_norm(torch.tensor(0.0, dtype=dtype))) == pytest.approx(math.log(2.0))
        assert float(continuous_bernoulli_mean(torch.tensor(0.0, dtype=dtype))) == 0.5
    # ... and in 300 digits everywhere, with the mean E[y] = lambda / (2 lambda - 1) + 1 / (2 artanh(1 - 2 lambda)).
    assert float(continuous_bernoulli_log_norm(torch.tensor(-1e4))) == pytest.approx(math.log(1e4))  # tanh(5000) = 1
    assert float(continuous_bernoulli_mean(torch.tensor(-1e4))) == pytest.approx(1e-4, rel=1e-6)
    for e in (-500.0, -16.0, -1e-6, 0.3, 0.5, 0.7, 20.0, 50.0, 100.0):
        with mpmath.workdps(300):  # 1 - 2 lambda must resolve lambda = sigmoid(-500)
            lam = 1 / (1 + mpmath.exp(-mpmath.mpf(e)))
            ref = float(mpmath.log(2 * mpmath.atanh(1 - 2 * lam) / (1 - 2 * lam)))
            ref_mean = float(lam / (2 * lam - 1) + 1 / (2 * mpmath.atanh(1 - 2 * lam)))
        for dtype, rel in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
            t = torch.tensor(e, dtype=dtype)
            assert float(continuous_bernoulli_log_norm(t)) == pytest.approx(ref, rel=rel), (e, dtype)
            assert float(continuous_bernoulli_mean(t)) == pytest.approx(ref_mean, rel=rel, abs=rel / 10), (e, dtype)


@pytest.mark.parametrize("eta", [-60.0, -4.0, -1e-5, 0.0, 0.5, 3.0, 25.0])
def test_continuous_bernoulli_density_integrates_to_one(eta):
    lik = ContinuousBernoulliLikelihood()
    p = torch.tensor([[eta]], dtype=torch.float64)
    density = lambda y: float(lik.log_prob(p, torch.tensor([[y]], dtype=torch.float64)).exp())  # noqa: E731
    # Breakpoints at the scale of the density's boundary layer 1/|eta|.
    pts = [min(0.5, 5 / abs(eta)), max(0.5, 1 - 5 / abs(eta))] if abs(eta) > 10 else None
    assert integrate.quad(density, 0, 1, points=pts, epsabs=1e-11)[0] == pytest.approx(1.0, abs=1e-8)
    first_moment = integrate.quad(lambda y: y * density(y), 0, 1, points=pts, epsabs=1e-11)[0]
    assert float(lik.mean(p)) == pytest.approx(first_moment, abs=1e-8)


@pytest.mark.parametrize("eta", [-80.0, -2.0, 0.0, 3e-5, 1.5, 40.0])
def test_continuous_bernoulli_samples_follow_the_cdf(eta):
    lik = ContinuousBernoulliLikelihood()
    torch.manual_seed(2)
    y = lik.sample(torch.full((4000, 1), eta, dtype=torch.float64))[:, 0].numpy()
    assert ((y >= 0) & (y <= 1)).all()
    cdf = (lambda v: v) if eta == 0 else (lambda v: np.expm1(eta * v) / np.expm1(eta))
    assert stats.kstest(y, cdf).pvalue > 1e-3


@pytest.mark.parametrize("eta", [-60.0, -4.0, -0.3, -1e-5, 0.0, 0.05, 0.5, 0.7, 3.0, 25.0])
def test_continuous_bernoulli_variance_is_the_integral(eta):
    lik = ContinuousBernoulliLikelihood()
    p = torch.tensor([[eta]], dtype=torch.float64)
    density = lambda y: float(lik.log_prob(p, torch.tensor([[y]], dtype=torch.float64)).exp())  # noqa: E731
    pts = [min(0.5, 5 / abs(eta)), max(0.5, 1 - 5 / abs(eta))] if abs(eta) > 10 else None
    mean = float(lik.mean(p))
    ref = integrate.quad(lambda y: (y - mean) ** 2 * density(y), 0, 1, points=pts, epsabs=1e-13)[0]
    assert float(lik.variance(p)) == pytest.approx(ref, rel=1e-7, abs=1e-13)
    # float32, on both sides of the series' bound, against float64
    t = torch.tensor(eta, dtype=torch.float32)
    assert float(continuous_bernoulli_variance(t)) == pytest.approx(ref, rel=2e-5)
    if 0.1 < abs(eta) < 10:  # where torch's clamped version is accurate
        torch_var = torch.distributions.ContinuousBernoulli(logits=p).variance
        assert float(lik.variance(p)) == pytest.approx(float(torch_var), rel=1e-6)


def test_variance_of_each_likelihood_and_which_have_one():
    logits = torch.tensor([[-30.0, -2.0, 0.0], [0.5, 4.0, 30.0]], dtype=torch.float64)
    bern = BernoulliLikelihood()
    torch.testing.assert_close(bern.variance(logits), torch.sigmoid(logits) * (1 - torch.sigmoid(logits)))
    gauss = GaussianLikelihood(scale="predicted")
    loc, log_s = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(gauss.variance(torch.cat([loc, log_s], -1)), torch.exp(2 * log_s))
    learned = GaussianLikelihood(num_channels=3, init_scale=0.5, dtype=torch.float64)
    torch.testing.assert_close(learned.variance(loc).detach(), torch.full_like(loc, 0.25))
    assert bern.has_variance and gauss.has_variance and ContinuousBernoulliLikelihood().has_variance
    dl = DiscretizedLogisticLikelihood()
    assert not dl.has_variance
    with pytest.raises(NotImplementedError, match="DiscretizedLogisticLikelihood has no closed-form variance"):
        dl.variance(loc)


# ----------------------------------------------------------------- Bernoulli and Gaussian
def test_bernoulli_against_closed_form():
    logits = torch.tensor([[-30.0, -2.0, 0.0], [0.5, 4.0, 30.0]], dtype=torch.float64)
    y = torch.tensor([[0, 1, 1], [0, 1, 0]])
    lik = get_likelihood("bernoulli", num_channels=3)
    closed = y.numpy() * logits.numpy() - np.logaddexp(0, logits.numpy())  # y log p + (1-y) log(1-p), p = sigmoid
    np.testing.assert_allclose(lik.log_prob(logits, y).numpy(), closed, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(lik.log_prob(logits, y.bool()).numpy(), closed, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(lik.mean(logits), torch.sigmoid(logits))
    s = lik.sample(logits)
    assert s.shape == (2, 3) and bool(((s == 0) | (s == 1)).all())
    with pytest.raises(ValueError, match="binary"):
        lik.log_prob(logits, torch.full((2, 3), 0.5, dtype=torch.float64))


def test_gaussian_against_scipy():
    loc = torch.randn(4, 3, dtype=torch.float64)
    log_s = torch.randn(4, 3, dtype=torch.float64)
    y = torch.randn(4, 3, dtype=torch.float64) * 3
    pred = GaussianLikelihood(scale="predicted")
    ref = stats.norm.logpdf(y.numpy(), loc.numpy(), np.exp(log_s.numpy()))
    np.testing.assert_allclose(pred.log_prob(torch.cat([loc, log_s], -1), y).numpy(), ref, rtol=1e-12)
    learned = GaussianLikelihood(num_channels=3, init_scale=2.0, dtype=torch.float64)
    ref = stats.norm.logpdf(y.numpy(), loc.numpy(), 2.0)
    np.testing.assert_allclose(learned.log_prob(loc, y).detach().numpy(), ref, rtol=1e-12)
    torch.testing.assert_close(learned.mean(loc), loc)
    loc.requires_grad_(True)
    learned.sample(loc).sum().backward()  # reparameterised
    torch.testing.assert_close(loc.grad, torch.ones_like(loc))
    assert learned.log_scale.shape == (3,) and float(learned.log_scale.detach()[0]) == pytest.approx(math.log(2.0))
    # The link tells a model whether to put a sigmoid on its raw output; the likelihood reads the location as given.
    assert GaussianLikelihood().sigmoid_location and not GaussianLikelihood(link="identity").sigmoid_location
    assert get_likelihood("gaussian", link="identity").link == "identity"
    assert "link='identity'" in repr(GaussianLikelihood(link="identity"))
    with pytest.raises(ValueError, match="link"):
        GaussianLikelihood(link="exp")


# ----------------------------------------------------------------- mixture
def test_mixture_log_prob_and_mean_against_brute_force():
    comp = torch.randn(5, 7, 4, dtype=torch.float64) * 3
    log_w = torch.log_softmax(torch.randn(7, 4, dtype=torch.float64), -1)
    brute = torch.log((log_w.exp() * comp.exp()).sum(-1))
    torch.testing.assert_close(mixture_log_prob(comp, log_w), brute)
    torch.testing.assert_close(mixture_log_prob(comp, log_w + 5.0), brute)  # logits are normalised
    torch.testing.assert_close(mixture_log_prob(comp[..., :1], log_w[..., :1]), comp[..., 0])
    # Far below exp's range: log-sum-exp still right.
    torch.testing.assert_close(mixture_log_prob(comp - 1e4, log_w), brute - 1e4)
    means = torch.randn(7, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(mixture_mean(means, log_w), torch.einsum("nk,nkc->nc", log_w.exp(), means))
    # A mixture of a model's K generator likelihoods, summed over channels.
    lik = ContinuousBernoulliLikelihood()
    params, y = torch.randn(6, 4, 3, dtype=torch.float64), torch.rand(6, 3, dtype=torch.float64)
    per_k = lik.log_prob(params, y[:, None, :]).sum(-1)
    assert per_k.shape == (6, 4)
    assert mixture_log_prob(per_k, torch.zeros(6, 4)).shape == (6,)
    with pytest.raises(ValueError, match="log_weights has 3 components"):
        mixture_log_prob(comp, log_w[..., :3])
    with pytest.raises(ValueError, match="do not broadcast"):
        mixture_mean(means, torch.zeros(6, 4))


# ----------------------------------------------------------------- gradients at extremes
def test_gradients_are_finite_at_extremes():
    y = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 128 / 255, 0.0, 1.0], dtype=torch.float32)
    mu = torch.tensor([1.0, 0.0, -50.0, 50.0, 0.5, 0.5, 0.0, 1.0], requires_grad=True)
    log_s = torch.tensor([-80.0, -80.0, -11.5, 80.0, -11.5, 3.0, 80.0, -40.0], requires_grad=True)
    lp = discretized_logistic_log_prob(y, mu, log_s)
    mean = DiscretizedLogisticLikelihood(scale="predicted").mean(torch.stack([mu, log_s], -1).reshape(-1, 2))
    (lp.sum() + mean.sum()).backward()
    assert bool(torch.isfinite(lp).all()) and bool(torch.isfinite(mean).all())
    assert bool(torch.isfinite(mu.grad).all()) and bool(torch.isfinite(log_s.grad).all())

    eta = torch.tensor([-1e4, -60.0, -0.5, -1e-4, 0.0, 0.5, 1e-5, 60.0, 1e4, 1e4, -1e4], requires_grad=True)
    yc = torch.tensor([0.0, 1.0, 0.3, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.0, 1.0])
    cb = ContinuousBernoulliLikelihood()
    out = cb.log_prob(eta[:, None], yc[:, None]).sum() + cb.mean(eta[:, None]).sum() + cb.sample(eta[:, None]).sum()
    out.backward()
    assert math.isfinite(float(out.detach())) and bool(torch.isfinite(eta.grad).all())

    b = torch.tensor([-1e4, 1e4, 0.0], requires_grad=True)
    lb = BernoulliLikelihood().log_prob(b[:, None], torch.tensor([[1.0], [0.0], [1.0]]))
    lb.sum().backward()
    assert bool(torch.isfinite(lb).all()) and bool(torch.isfinite(b.grad).all())

    w = torch.tensor([[-1e4, 0.0, 3.0]], requires_grad=True)
    c = torch.tensor([[-1e4, -2.0, -1e3]], requires_grad=True)
    mixture_log_prob(c, w).sum().backward()
    assert bool(torch.isfinite(w.grad).all()) and bool(torch.isfinite(c.grad).all())


# ----------------------------------------------------------------- API and errors
def test_resolver_and_num_params():
    assert isinstance(get_likelihood("Continuous_Bernoulli"), ContinuousBernoulliLikelihood)
    for name, cls in [("bernoulli", BernoulliLikelihood), ("discretized_logistic", DiscretizedLogisticLikelihood),
                      ("gaussian", GaussianLikelihood)]:
        lik = get_likelihood(name)
        assert type(lik) is cls and isinstance(lik, Likelihood) and lik.num_params == 1 and lik.name == name
    assert get_likelihood("gaussian", scale="predicted").num_params == 2
    lik = BernoulliLikelihood()
    assert get_likelihood(lik) is lik
    assert repr(get_likelihood("discretized_logistic", num_channels=3)) == (
        "DiscretizedLogisticLikelihood(num_bins=256, num_channels=3, scale='learned', init_scale=0.1)")
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        get_likelihood("poisson")
    with pytest.raises(ValueError, match="keyword arguments"):
        get_likelihood(lik, num_channels=2)


def test_errors_name_the_argument():
    dl = DiscretizedLogisticLikelihood(num_channels=3)
    with pytest.raises(ValueError, match=r"y must lie in \[0, 1\] \(8-bit data: divide by 255\)"):
        discretized_logistic_log_prob(torch.tensor([255.0]), torch.tensor(0.5), torch.tensor(0.0))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 1\]"):
        dl.log_prob(torch.zeros(2, 3), torch.full((2, 3), -0.5))
    with pytest.raises(ValueError, match="y contains 1 NaN"):
        ContinuousBernoulliLikelihood().log_prob(torch.zeros(2, 1), torch.tensor([[0.5], [float("nan")]]))
    with pytest.raises(ValueError, match="y contains 1 NaN"):
        GaussianLikelihood().log_prob(torch.zeros(2, 1), torch.tensor([[0.5], [float("inf")]]))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 1\]"):
        ContinuousBernoulliLikelihood().log_prob(torch.zeros(2, 1), torch.tensor([[0.5], [1.5]]))
    with pytest.raises(ValueError, match="y has 2 channels .* num_channels=3"):
        dl.log_prob(torch.zeros(4, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"params must have shape \[..., num_params \* C\] with last dim 2 \* 3"):
        GaussianLikelihood(scale="predicted").log_prob(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="params must have shape .* a multiple of 2"):
        GaussianLikelihood(scale="predicted").mean(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="do not broadcast"):
        dl.log_prob(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="do not broadcast"):
        discretized_logistic_log_prob(torch.zeros(4), torch.zeros(3), torch.zeros(()))
    with pytest.raises(ValueError, match="num_bins"):
        DiscretizedLogisticLikelihood(num_bins=1)
    with pytest.raises(ValueError, match="scale must be one of"):
        GaussianLikelihood(scale="heteroscedastic")
    with pytest.raises(ValueError, match="init_scale"):
        GaussianLikelihood(init_scale=0.0)
    with pytest.raises(ValueError, match="num_channels"):
        BernoulliLikelihood(num_channels=0)
    with pytest.raises(TypeError, match="params must be a floating-point tensor"):
        BernoulliLikelihood().log_prob(torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 1))
    # validate_args=False skips the data checks (no device synchronisation).
    out = ContinuousBernoulliLikelihood(validate_args=False).log_prob(torch.zeros(1, 1), torch.tensor([[1.5]]))
    assert out.shape == (1, 1)


def test_analytic_gradients_match_finite_differences_across_branches():
    # Logits on both sides of every branch point (Taylor series, reflection, overflow-safe forms).
    eta = torch.tensor([-600.0, -20, -1.2, -0.5, -0.1, -1e-3, 0.0, 1e-7, 0.1, 0.5, 0.9, 3, 40], dtype=torch.float64,
                       requires_grad=True)
    u = torch.rand(13, dtype=torch.float64)
    cb = ContinuousBernoulliLikelihood()
    assert torch.autograd.gradcheck(continuous_bernoulli_log_norm, (eta,))
    assert torch.autograd.gradcheck(continuous_bernoulli_mean, (eta,))
    assert torch.autograd.gradcheck(lambda e: cb.log_prob(e[:, None], u[:, None]), (eta,))
    y = torch.tensor([0, 1 / 255, 0.5, 254 / 255, 1.0], dtype=torch.float64)
    mu = torch.tensor([0.1, 0.2, 0.5, 0.9, 1.3], dtype=torch.float64, requires_grad=True)
    log_s = torch.tensor([-6.0, -2.0, 0.0, -4.5, -1.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m, s: discretized_logistic_log_prob(y, m, s), (mu, log_s))
    dl = DiscretizedLogisticLikelihood(scale="predicted")
    assert torch.autograd.gradcheck(lambda m, s: dl.mean(torch.stack([m, s], -1)), (mu, log_s))



def test_a_likelihood_by_name_and_options():
    from pcfunc.nn import get_likelihood

    lik = get_likelihood(("gaussian", {"scale": "predicted", "init_scale": 0.5}))
    assert lik.scale == "predicted" and lik.init_scale == 0.5 and lik.num_params == 2
    assert get_likelihood(["gaussian", {}]).scale == "learned"  # a saved configuration's list form
    with pytest.raises(TypeError, match=r"\(name, dict of options\)"):
        get_likelihood(("gaussian", "predicted"))
