import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch.autograd.functional import jacobian

from pcfunc.nn._flows import FlowPrior, PlanarFlow, planar_flow, planar_flow_inverse

ACTIVATIONS = ["leaky_relu", "tanh"]
D64 = torch.float64

# Hand-picked 2-D layers (u, w, b): wᵀû between -0.8 and 1.3, so the density bends but stays inside the box below.
LAYERS_2D = [
    ((1.5, -0.5), (1.0, 0.5), 0.3),
    ((-1.0, -1.0), (-0.7, 1.2), -0.2),
    ((2.0, 1.0), (0.3, -1.0), 0.5),
    ((-1.2, -0.4), (1.2, 1.0), 0.0),
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The grid integrals are elementwise work on ~10^5 points: one thread avoids oversubscribing a shared machine.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _set(flow, u, w, b):
    with torch.no_grad():
        flow.u.copy_(torch.as_tensor(u, dtype=flow.u.dtype))
        flow.w.copy_(torch.as_tensor(w, dtype=flow.w.dtype))
        flow.bias.fill_(b)
    return flow


def _random_flow(activation, dim=3, scale=1.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    flow = PlanarFlow(dim, activation, dtype=D64)
    return _set(flow, scale * torch.randn(dim, generator=g, dtype=D64), torch.randn(dim, generator=g, dtype=D64),
                float(torch.randn((), generator=g, dtype=D64)))


def _adversarial_flows(activation, dim=3):
    """Raw parameters that violate wᵀu > -1 (or come close to the degenerate limits)."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(dim, generator=g, dtype=D64)
    w = w / w.norm()
    cases = [(-10 * w, w, 0.4), (-3 * w, 2 * w, -1.0), (-10 * w + torch.randn(dim, generator=g, dtype=D64), w, 0.0),
             (25 * w, w, 0.1), (torch.randn(dim, generator=g, dtype=D64), 1e-3 * w, 2.0),
             (torch.randn(dim, generator=g, dtype=D64), torch.zeros(dim, dtype=D64), 0.7)]
    return [_set(PlanarFlow(dim, activation, dtype=D64), u, ww, b) for u, ww, b in cases]


def _reference_forward(z, u, w, b, activation, slope=0.2):
    """Rezende & Mohamed (2015), Eq. (10) and App. A, written out independently (one sample, no batching)."""
    wu = w @ u
    u_hat = u + (-1 + F.softplus(wu) - wu) * w / (w @ w) if float(w.detach() @ w.detach()) > 0 else u
    a = w @ z + b
    h = torch.tanh(a) if activation == "tanh" else F.leaky_relu(a, slope)
    return z + u_hat * h


# ---------------------------------------------------------------------------------------------------- PlanarFlow


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_matches_the_paper_formula(activation):
    flow = _random_flow(activation)
    z = 2 * torch.randn(7, 3, dtype=D64)
    y, _ = flow(z)
    ref = torch.stack([_reference_forward(zi, flow.u, flow.w, flow.bias, activation) for zi in z])
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-12)
    y2, ld2 = planar_flow(z, flow.u, flow.w, flow.bias, activation)
    torch.testing.assert_close(y2, y, rtol=0, atol=0)
    torch.testing.assert_close(ld2, flow(z)[1], rtol=0, atol=0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inverse_of_forward_is_identity(activation, seed):
    flow = _random_flow(activation, seed=seed)
    z = 3 * torch.randn(256, 3, dtype=D64)
    a = z @ flow.w + flow.bias
    assert bool((a > 0).any()) and bool((a < 0).any())  # both branches of the leaky ReLU are exercised
    y, logdet = flow(z)
    z2, inv_logdet = flow.inverse(y)
    torch.testing.assert_close(z2, z, rtol=0, atol=1e-10)
    torch.testing.assert_close(inv_logdet, -logdet, rtol=0, atol=1e-10)
    y3 = 3 * torch.randn(256, 3, dtype=D64)  # and the other way round
    torch.testing.assert_close(flow(flow.inverse(y3)[0])[0], y3, rtol=0, atol=1e-10)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_logdets_equal_autograd_jacobians(activation):
    flow = _random_flow(activation, dim=4, seed=5)
    z = 2 * torch.randn(6, 4, dtype=D64)
    y, logdet = flow(z)
    _, inv_logdet = flow.inverse(y)
    for i in range(z.size(0)):
        sign, ref = torch.linalg.slogdet(jacobian(lambda x: flow(x)[0], z[i]))
        assert sign == 1  # orientation preserving: 1 + h' wᵀû > 0
        torch.testing.assert_close(logdet[i], ref, rtol=0, atol=1e-10)
        # The inverse's Jacobian is differentiated through the solver (implicit-function step for tanh).
        sign, ref = torch.linalg.slogdet(jacobian(lambda x: flow.inverse(x)[0], y[i]))
        assert sign == 1
        torch.testing.assert_close(inv_logdet[i], ref, rtol=0, atol=1e-8)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_invertible_for_adversarial_raw_parameters(activation):
    for flow in _adversarial_flows(activation):
        kappa = (flow.w @ flow.u_hat).detach()
        assert float(kappa) > -1
        z = 2 * torch.randn(64, 3, dtype=D64)
        y, logdet = flow(z)
        assert bool(torch.isfinite(logdet).all())
        z2, inv_logdet = flow.inverse(y)
        torch.testing.assert_close(z2, z, rtol=0, atol=1e-8)
        torch.testing.assert_close(inv_logdet, -logdet, rtol=0, atol=1e-8)
        for i in range(3):
            _, ref = torch.linalg.slogdet(jacobian(lambda x: flow(x)[0], z[i]))
            torch.testing.assert_close(logdet[i], ref, rtol=0, atol=1e-6)


def test_zero_normal_is_a_translation():
    flow = _set(PlanarFlow(2, dtype=D64), (1.0, -2.0), (0.0, 0.0), 0.5)
    z = torch.randn(5, 2, dtype=D64)
    y, logdet = flow(z)
    torch.testing.assert_close(y, z + torch.tensor([0.5, -1.0], dtype=D64))
    torch.testing.assert_close(logdet, torch.zeros(5, dtype=D64))
    torch.testing.assert_close(flow.inverse(y)[0], z)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_inverse_gradients_match_finite_differences(activation):
    flow = _random_flow(activation, dim=2, seed=7)
    y = torch.randn(5, 2, dtype=D64, requires_grad=True)
    params = [p.detach().clone().requires_grad_() for p in (flow.u, flow.w, flow.bias)]
    assert torch.autograd.gradcheck(lambda y, u, w, b: planar_flow_inverse(y, u, w, b, activation), (y, *params))


def test_batch_dimensions_and_dtypes():
    flow = PlanarFlow(3, "tanh")
    z = torch.randn(2, 5, 3)
    y, logdet = flow(z)
    assert y.shape == (2, 5, 3) and logdet.shape == (2, 5) and y.dtype == torch.float32
    torch.testing.assert_close(y.reshape(10, 3), flow(z.reshape(10, 3))[0])
    z2, inv_logdet = flow.inverse(y)
    assert z2.dtype == torch.float32 and inv_logdet.shape == (2, 5)
    torch.testing.assert_close(z2, z, rtol=0, atol=1e-4)
    y, logdet = flow(torch.randn(3))
    assert y.shape == (3,) and logdet.shape == ()


def test_reset_parameters_and_repr():
    flow = PlanarFlow(4)
    bound = 1 / math.sqrt(4)
    for p in (flow.u, flow.w, flow.bias):
        assert bool((p.abs() <= bound).all())
    before = flow.u.detach().clone()
    flow.reset_parameters()
    assert not torch.equal(before, flow.u)
    assert repr(flow) == "PlanarFlow(dim=4, activation='leaky_relu', negative_slope=0.2)"
    assert repr(PlanarFlow(2, "tanh")) == "PlanarFlow(dim=2, activation='tanh')"


def test_tanh_solver_reports_non_convergence():
    u, w = torch.tensor([40.0, 0.0], dtype=D64), torch.tensor([1.0, 0.0], dtype=D64)
    y = torch.tensor([[20.0, 0.0]], dtype=D64)  # root near 0.55, linearised guess 0.5: one step is not enough
    with pytest.raises(RuntimeError, match="max_iter"):
        planar_flow_inverse(y, u, w, 0.0, "tanh", max_iter=1)
    z, _ = planar_flow_inverse(y, u, w, 0.0, "tanh")
    torch.testing.assert_close(planar_flow(z, u, w, 0.0, "tanh")[0], y)


# ---------------------------------------------------------------------------------------------------- FlowPrior


def _prior_2d(activation):
    prior = FlowPrior(2, len(LAYERS_2D), activation, dtype=D64)
    for flow, (u, w, b) in zip(prior.flows, LAYERS_2D):
        _set(flow, u, w, b)
    return prior


@pytest.mark.parametrize("activation,n", [("leaky_relu", 801), ("tanh", 301)])
def test_density_integrates_to_one_and_matches_samples(activation, n):
    prior = _prior_2d(activation)
    x = torch.linspace(-10, 10, n, dtype=D64)
    X, Y = torch.meshgrid(x, x, indexing="ij")
    with torch.no_grad():
        density = prior.log_prob(torch.stack((X, Y), -1)).exp()

    def integral(f):
        return float(torch.trapezoid(torch.trapezoid(f, x, dim=1), x))

    assert integral(density) == pytest.approx(1.0, abs=1e-2)
    # The density (inverse pass) and the samples (forward pass) agree on the mean.
    samples = prior.sample(50_000, generator=torch.Generator().manual_seed(0))
    se = samples.std(0) / math.sqrt(samples.size(0))
    for k, coord in enumerate((X, Y)):
        assert abs(integral(density * coord) - float(samples[:, k].mean())) < 5 * float(se[k]) + 1e-2


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_log_prob_of_samples_is_change_of_variables(activation):
    prior = FlowPrior(3, 5, activation, dtype=D64)
    with torch.no_grad():
        for flow in prior.flows:
            flow.u.mul_(3)
    z = prior.rsample((4, 25), generator=torch.Generator().manual_seed(1))
    z0 = torch.randn(4, 25, 3, generator=torch.Generator().manual_seed(1), dtype=D64)
    x, total = z0, torch.zeros(4, 25, dtype=D64)
    for flow in prior.flows:
        x, logdet = flow(x)
        total += logdet
    torch.testing.assert_close(z, x, rtol=0, atol=0)
    expected = torch.from_numpy(stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z0.numpy())) - total
    torch.testing.assert_close(prior.log_prob(z), expected, rtol=0, atol=1e-9)
    z2, log_prob = prior.rsample_and_log_prob((4, 25), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(z2, z, rtol=0, atol=0)
    torch.testing.assert_close(log_prob, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_reach_the_flow(activation):
    prior = FlowPrior(4, 3, activation)
    prior.rsample(16).square().sum().backward()
    for name, p in prior.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name
    assert prior.sample(4).requires_grad is False
    # The KL term needs log p(z) differentiable in z (encoder) and in the flow parameters.
    prior.zero_grad()
    z = torch.randn(8, 4, requires_grad=True)
    prior.log_prob(z).sum().backward()
    assert z.grad is not None and bool(torch.isfinite(z.grad).all())
    for name, p in prior.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), name


def test_zero_layers_is_standard_normal():
    prior = FlowPrior(3, 0, dtype=D64)
    assert len(list(prior.parameters())) == 0 and prior.num_layers == 0
    samples = prior.sample(4000, generator=torch.Generator().manual_seed(2))
    assert samples.shape == (4000, 3) and samples.dtype == D64
    for k in range(3):
        assert stats.kstest(samples[:, k].numpy(), "norm").pvalue > 1e-3
    torch.testing.assert_close(samples.mean(0), torch.zeros(3, dtype=D64), rtol=0, atol=5 / math.sqrt(4000))
    torch.testing.assert_close(torch.cov(samples.T), torch.eye(3, dtype=D64), rtol=0, atol=0.1)
    z = torch.randn(10, 3, dtype=D64)
    ref = stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z.numpy())
    torch.testing.assert_close(prior.log_prob(z), torch.from_numpy(ref), rtol=0, atol=1e-12)


def test_prior_dtype_device_and_state():
    prior = FlowPrior(2, 2)
    assert prior.sample(3).dtype == torch.float32 and prior.sample().shape == (2,)
    assert prior.log_prob(torch.zeros(5, 2)).dtype == torch.float32
    assert set(prior.state_dict()) == {f"flows.{i}.{p}" for i in range(2) for p in ("u", "w", "bias")}
    prior = prior.double()
    assert prior.sample(3).dtype == D64 and prior.log_prob(torch.zeros(5, 2, dtype=D64)).dtype == D64
    with pytest.raises(TypeError, match="z"):
        prior.log_prob(torch.zeros(5, 2))
    assert repr(prior).startswith("FlowPrior(\n  dim=2, num_layers=2")
    if torch.cuda.is_available():
        prior = prior.cuda()
        z = prior.sample(4)
        assert z.is_cuda and prior.log_prob(z).is_cuda


def test_autocast_does_not_reach_the_flow():
    torch.manual_seed(0)
    prior = FlowPrior(6, 4)
    for flow in prior.flows:
        torch.nn.init.normal_(flow.w)
        torch.nn.init.normal_(flow.u)
    z = torch.randn(32, 6)
    ref = prior.log_prob(z)
    s_ref, lp_ref = prior.rsample_and_log_prob(5, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = prior.log_prob(z)
        s, lp = prior.rsample_and_log_prob(5, generator=torch.Generator().manual_seed(1))
        assert torch.matmul(z, z.t()).dtype == torch.bfloat16  # autocast is on around the calls
    assert low.dtype == lp.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close((s, lp), (s_ref, lp_ref), rtol=1e-6, atol=1e-6)


def test_bad_arguments():
    for dim in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="dim"):
            PlanarFlow(dim)
        with pytest.raises(ValueError, match="dim"):
            FlowPrior(dim, 2)
    with pytest.raises(ValueError, match="activation"):
        PlanarFlow(2, "relu")
    with pytest.raises(ValueError, match="activation"):
        FlowPrior(2, 1, activation="elu")
    for slope in (0, -0.1, 1.5, None):
        with pytest.raises(ValueError, match="negative_slope"):
            PlanarFlow(2, negative_slope=slope)
    for layers in (-1, 1.5, None):
        with pytest.raises(ValueError, match="num_layers"):
            FlowPrior(2, layers)
    flow = PlanarFlow(3)
    with pytest.raises(ValueError, match="z"):
        flow(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="y"):
        flow.inverse(torch.zeros(()))
    with pytest.raises(ValueError, match="max_iter"):
        flow.inverse(torch.zeros(3), max_iter=0)
    with pytest.raises(ValueError, match="z"):
        FlowPrior(3, 1).log_prob(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="sample_shape"):
        FlowPrior(3, 1).sample(-1)
    u = torch.zeros(3)
    with pytest.raises(ValueError, match="w"):
        planar_flow(torch.zeros(3), u, torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="b"):
        planar_flow(torch.zeros(3), u, u, torch.zeros(2))
