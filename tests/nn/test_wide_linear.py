"""The hypernetwork's wide last layer: the same values and gradients as ``torch.baddbmm``."""

import pytest
import torch

import pcfunc.nn._wide_linear as wl
from pcfunc.nn import FunctionRepresentation, HyperNetwork
from pcfunc.nn._wide_linear import wide_linear


def _inputs(K=2, I=5, P=40, B=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(K, I, B, dtype=dtype, generator=g, requires_grad=True)
    W = torch.randn(K, P, I, dtype=dtype, generator=g, requires_grad=True)
    b = torch.randn(K, P, dtype=dtype, generator=g, requires_grad=True)
    return h, W, b


@pytest.fixture
def small_blocks(monkeypatch):
    # Several row blocks and the huge-page advice on even a small buffer, so the test runs every branch.
    monkeypatch.setattr(wl, "_ROWS", 16)
    monkeypatch.setattr(wl, "_HUGE_MIN_BYTES", 0)


def test_values_and_gradients_equal_baddbmm(small_blocks):
    h, W, b = _inputs()
    out = wide_linear(h, W, b)
    ref = torch.baddbmm(b.unsqueeze(-1), W, h)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, (h, W, b), g)
    want = torch.autograd.grad(ref, (h, W, b), g)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-12)
        assert x.is_contiguous()


def test_gradcheck_and_double_backward(small_blocks):
    inputs = _inputs(P=37)
    assert torch.autograd.gradcheck(wide_linear, inputs)
    assert torch.autograd.gradgradcheck(wide_linear, inputs)


def test_only_requested_gradients(small_blocks):
    h, W, b = _inputs()
    h.requires_grad_(False)
    b.requires_grad_(False)
    (gW,) = torch.autograd.grad(wide_linear(h, W, b).square().sum(), (W,))
    (ref,) = torch.autograd.grad(torch.baddbmm(b.unsqueeze(-1), W, h).square().sum(), (W,))
    torch.testing.assert_close(gW, ref)


def test_float32_weight_gradient_in_blocks_matches(small_blocks):
    h, W, b = _inputs(K=3, I=64, P=1000, B=16, dtype=torch.float32)
    g = torch.randn(3, 1000, 16)
    got = torch.autograd.grad(wide_linear(h, W, b), W, g)[0]
    want = torch.bmm(g.double(), h.detach().double().transpose(1, 2)).float()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_huge_page_advice_is_harmless():
    t = torch.zeros(3, 1000, 7)
    wl._advise_huge_pages(t)  # a range inside one page, or a real one: never raises, never changes data
    assert torch.count_nonzero(t) == 0
    big = torch.empty(9 << 20, dtype=torch.uint8)
    wl._advise_huge_pages(big)
    big.fill_(3)
    assert int(big[-1]) == 3


def test_hypernetwork_gradients_unchanged_by_wide_last_layer():
    torch.manual_seed(0)
    inr = FunctionRepresentation(3, 1, hidden=(8, 8))
    hn = HyperNetwork(4, hidden=(6, 7), target=inr, num_components=3).double()
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    out = hn(z)
    g = torch.randn_like(out)
    got = torch.autograd.grad(out, [z, *hn.parameters()], g)
    # Reference: each component as a plain MLP with torch.nn.functional.linear.
    cols = []
    for k in range(3):
        x = z
        for i, (W, b) in enumerate(zip(hn.weights, hn.biases)):
            x = torch.nn.functional.linear(x if i == 0 else torch.nn.functional.leaky_relu(x, 0.1), W[k], b[k])
        cols.append(x)
    ref = torch.stack(cols, 1)
    torch.testing.assert_close(out, ref)
    want = torch.autograd.grad(ref, [z, *hn.parameters()], g)
    for x, y in zip(got, want):
        torch.testing.assert_close(x, y)


def test_forward_in_blocks_without_gradients(small_blocks):
    h, W, b = _inputs(P=50)
    with torch.no_grad():
        out = wide_linear(h, W, b)
    torch.testing.assert_close(out, torch.baddbmm(b.unsqueeze(-1), W, h).detach(), rtol=0, atol=1e-12)
    # Mixed dtypes fall back to baddbmm's own type promotion rules (here: an error, as baddbmm raises).
    with pytest.raises(RuntimeError):
        wide_linear(h.float(), W, b)
