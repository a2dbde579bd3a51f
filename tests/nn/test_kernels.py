"""The hypernetwork's wide last layer: the same values and gradients as ``torch.baddbmm``."""

import pytest
import torch

import pcfunc.nn._kernels as wl
from pcfunc.nn import FunctionRepresentation, HyperNetwork
from pcfunc.nn._kernels import wide_linear


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
    # A range inside one page, or a real one: never raises, never changes data.
    wl._advise_huge_pages(t.data_ptr(), t.numel() * t.element_size())
    assert torch.count_nonzero(t) == 0
    big = torch.empty(9 << 20, dtype=torch.uint8)
    wl._advise_huge_pages(big.data_ptr(), big.numel())
    big.fill_(3)
    assert int(big[-1]) == 3


def _weight_grad_of(h, W, b, g):
    return torch.autograd.grad(wide_linear(h, W, b), W, g)[0]


def test_gradient_buffers_are_reused_only_once_freed(small_blocks):
    wl.release_gradient_buffers()
    h, W, b = _inputs(P=40)
    g1, g2 = torch.randn(2, 40, 3, dtype=torch.float64), torch.randn(2, 40, 3, dtype=torch.float64)
    first = _weight_grad_of(h, W, b, g1)
    alias = first.detach()  # shares the storage: the buffer must stay in use while it lives
    kept = alias.clone()
    del first
    second = _weight_grad_of(h, W, b, g2)
    assert second.data_ptr() != alias.data_ptr()
    torch.testing.assert_close(alias, kept, rtol=0, atol=0)
    torch.testing.assert_close(second, torch.bmm(g2, h.detach().transpose(1, 2)), rtol=0, atol=1e-12)
    ptr = alias.data_ptr()
    del alias
    assert wl._pool.num_free() >= 1
    third = _weight_grad_of(h, W, b, g1)
    assert third.data_ptr() == ptr  # the freed buffer, not fresh memory
    torch.testing.assert_close(third, kept, rtol=0, atol=1e-12)
    wl.release_gradient_buffers()
    assert wl._pool.num_free() == 0


def test_training_steps_with_recycled_gradients_match_baddbmm(small_blocks):
    # Adam over several steps, with gradients freed (set_to_none) and accumulated in place: the same
    # parameters as with baddbmm's fresh gradients.
    for set_to_none in (True, False):
        runs = []
        for fn in (wide_linear, lambda h, W, b: torch.baddbmm(b.unsqueeze(-1), W, h)):
            h, W, b = (t.detach().clone().requires_grad_() for t in _inputs(P=45))
            opt = torch.optim.Adam([h, W, b], lr=0.05)
            for step in range(4):
                opt.zero_grad(set_to_none=set_to_none)
                for micro in range(2):  # gradient accumulation over two micro-batches
                    fn(h, W, b).sin().sum().backward()
                opt.step()
            runs.append((h, W, b))
        for x, y in zip(*runs):
            torch.testing.assert_close(x, y, rtol=0, atol=1e-10)


def test_gradient_in_a_dtype_numpy_lacks(small_blocks):
    h, W, b = (t.detach().to(torch.bfloat16).requires_grad_() for t in _inputs(P=33))
    g = torch.randn(2, 33, 3).to(torch.bfloat16)
    got = _weight_grad_of(h, W, b, g)
    assert got.dtype == torch.bfloat16
    want = torch.bmm(g.double(), h.detach().double().transpose(1, 2))
    torch.testing.assert_close(got.double(), want, rtol=2e-2, atol=5e-2)


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


def test_buffer_freed_while_the_pool_is_locked_does_not_deadlock(small_blocks):
    # A garbage collection inside the pool's locked block can free a gradient, whose finaliser then gives its
    # buffer back on the same thread: the lock must be re-entrant.
    import threading

    wl.release_gradient_buffers()
    h, W, b = _inputs(P=40)
    grads = [_weight_grad_of(h, W, b, torch.randn(2, 40, 3, dtype=torch.float64))]

    def free_under_lock():
        with wl._pool._lock:
            grads.clear()

    t = threading.Thread(target=free_under_lock, daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "freeing a pooled gradient under the pool's lock deadlocked"
    assert wl._pool.num_free() == 1


def test_hypernetwork_runs_in_its_weights_dtype_under_autocast():
    torch.manual_seed(0)
    inr = FunctionRepresentation(3, 1, hidden=(8, 8))
    hn = HyperNetwork(4, hidden=(6, 7), target=inr, num_components=3)
    z = torch.randn(5, 4, requires_grad=True)
    ref = hn(z)
    (gz_ref,) = torch.autograd.grad(ref.square().sum(), z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = hn(z.to(torch.bfloat16))  # a low-precision latent is cast to the weights' dtype
        low = hn(z)
    assert out.dtype == low.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=1e-6, atol=1e-6)
    (gz,) = torch.autograd.grad(low.square().sum(), z)
    torch.testing.assert_close(gz, gz_ref, rtol=1e-5, atol=1e-6)
