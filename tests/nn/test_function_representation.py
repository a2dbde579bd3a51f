import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pcfunc.nn._encodings import FourierFeatures, SphericalHarmonics
from pcfunc.nn import FunctionRepresentation, HyperNetwork

ROOT = Path(__file__).resolve().parents[2]


def _inr(hidden=(16, 8), out_dim=2, dtype=torch.float64, final=torch.nn.Tanh(), frequencies=6):
    enc = FourierFeatures(3, num_frequencies=frequencies, sigma=1.0, dtype=dtype)
    return FunctionRepresentation(3, out_dim, hidden, encoding=enc, final_activation=final)


def _reference(inr, x, weights):
    """One function at a time: the encoding, then F.linear per layer, from the documented layout."""
    offsets, out, start = [], [], 0
    for o, i in inr.layer_shapes:
        offsets.append((start, o, i))
        start += o * i + o
    assert start == weights.size(-1)
    lead = weights.shape[:-1]
    flat_w = weights.reshape(-1, weights.size(-1))
    K = flat_w.size(0) // lead[0]
    for g in range(flat_w.size(0)):
        xs = x if x.dim() == 2 else x[g // K]
        h = inr.encoding(xs) if inr.encoding is not None else xs
        for j, (s, o, i) in enumerate(offsets):
            W = flat_w[g, s:s + o * i].reshape(o, i)
            b = flat_w[g, s + o * i:s + o * i + o]
            h = F.linear(h, W, b)
            if j < len(offsets) - 1:
                h = F.leaky_relu(h, 0.1)
        out.append(inr.final_activation(h) if inr.final_activation is not None else h)
    return torch.stack(out).reshape(*lead, *out[0].shape)


# -------------------------------------------------------------------------------------------- sizes, layout


def test_paper_weight_counts():
    gasp = FunctionRepresentation(3, 1, (128, 128, 128), FourierFeatures(3, 128, 2.0))
    assert gasp.num_weights == 256 * 128 + 128 + 128 * 128 + 128 + 128 * 128 + 128 + 128 * 1 + 1 == 66_049
    vamoh = FunctionRepresentation(3, 1, (64, 64, 64), FourierFeatures(3, 128, 2.0))
    assert vamoh.num_weights == 24_833
    assert gasp.encoded_dim == 256
    assert list(gasp.parameters()) == [] and list(vamoh.parameters()) == []
    assert list(gasp.state_dict()) == ["encoding.B"]


def test_split_weights_layout():
    inr = _inr(hidden=(4, 3), out_dim=2)  # 12 encoded inputs
    assert inr.layer_shapes == ((4, 12), (3, 4), (2, 3))
    w = torch.randn(5, 2, inr.num_weights, dtype=torch.float64)
    parts = inr.split_weights(w)
    assert [tuple(W.shape) for W, _ in parts] == [(5, 2, 4, 12), (5, 2, 3, 4), (5, 2, 2, 3)]
    assert [tuple(b.shape) for _, b in parts] == [(5, 2, 4), (5, 2, 3), (5, 2, 2)]
    assert all(W.data_ptr() >= w.data_ptr() for W, _ in parts)  # views, no copies
    rebuilt = torch.cat([torch.cat((W.flatten(-2), b), -1) for W, b in parts], -1)
    assert torch.equal(rebuilt, w)


# ------------------------------------------------------------------------------- values against a Python loop


@pytest.mark.parametrize("components", [None, 3])
@pytest.mark.parametrize("shared", [True, False])
def test_batched_equals_per_sample_loop(components, shared):
    inr = _inr()
    B, N = 4, 37
    shape = (B, inr.num_weights) if components is None else (B, components, inr.num_weights)
    w = 0.3 * torch.randn(*shape, dtype=torch.float64)
    x = torch.randn(N, 3, dtype=torch.float64) if shared else torch.randn(B, N, 3, dtype=torch.float64)
    got = inr(x, w)
    expected_shape = (B, N, 2) if components is None else (B, components, N, 2)
    assert got.shape == expected_shape
    torch.testing.assert_close(got, _reference(inr, x, w), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("components", [None, 2])
@pytest.mark.parametrize("shared", [True, False])
def test_float32_chunked_equals_unchunked_and_loop(components, shared):
    inr = _inr(hidden=(32, 32, 32), out_dim=1, dtype=torch.float32, final=None, frequencies=16)
    B, N = 3, 400
    shape = (B, inr.num_weights) if components is None else (B, components, inr.num_weights)
    w = 0.2 * torch.randn(*shape)
    x = torch.randn(N, 3) if shared else torch.randn(B, N, 3)
    full = inr(x, w, chunk_size=N)
    for cs in (3, 97, 512):
        torch.testing.assert_close(inr(x, w, chunk_size=cs), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inr(x, w), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full, _reference(inr, x, w), rtol=1e-5, atol=1e-5)


class _CountingEncoding(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.in_dim, self.out_dim = inner, inner.in_dim, inner.out_dim
        self.calls, self.rows = 0, 0

    def forward(self, x):
        self.calls += 1
        self.rows += x.shape[:-1].numel()
        return self.inner(x)


@pytest.mark.parametrize("shared", [True, False])
def test_encoding_once_per_chunk_no_copies_per_component(shared):
    enc = _CountingEncoding(FourierFeatures(3, 8, dtype=torch.float64))
    inr = FunctionRepresentation(3, 1, (8,), encoding=enc)
    B, K, N = 2, 3, 1000
    w = torch.randn(B, K, inr.num_weights, dtype=torch.float64)
    x = torch.randn(N, 3, dtype=torch.float64) if shared else torch.randn(B, N, 3, dtype=torch.float64)
    inr(x, w, chunk_size=300)
    assert enc.calls == 4  # ceil(1000 / 300) chunks
    assert enc.rows == (N if shared else B * N)  # each point encoded once: never per component or per sample


class _SizeRecordingEncoding(_CountingEncoding):
    def forward(self, x):
        self.sizes = getattr(self, "sizes", []) + [x.size(-2)]
        return super().forward(x)


@pytest.mark.parametrize("shared", [True, False])
def test_default_chunks_are_the_fewest_equal_blocks_under_the_budget(shared):
    from pcfunc.nn._function_representation import INR_CHUNK_ELEMENTS

    enc = _SizeRecordingEncoding(FourierFeatures(3, 128))
    inr = FunctionRepresentation(3, 1, (64, 64, 64), encoding=enc)
    B, K = 4, 3
    cap = inr.default_chunk_size(B * K, 1 if shared else B)
    # Closed form: hidden blocks of B K networks x 64 units plus the encoded points (256 each) per point.
    assert cap == INR_CHUNK_ELEMENTS // (B * K * 64 + (1 if shared else B) * 256)
    N = 2 * cap + 5  # three blocks, not two full ones and a 5-point tail
    w = torch.randn(B, K, inr.num_weights) * 0.1
    x = torch.randn(N, 3) if shared else torch.randn(B, N, 3)
    y = inr(x, w)
    assert enc.sizes == [-(-N // 3)] * 2 + [N - 2 * -(-N // 3)]
    assert max(enc.sizes) - min(enc.sizes) <= 2 and max(enc.sizes) <= cap
    torch.testing.assert_close(y, inr(x, w, chunk_size=N), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="num_functions"):
        inr.default_chunk_size(0)
    with pytest.raises(ValueError, match="num_point_sets"):
        inr.default_chunk_size(3, num_point_sets=-1)


def test_identity_encoding_and_no_hidden_layers():
    inr = FunctionRepresentation(2, 3, hidden=(), final_activation=None)
    assert inr.num_weights == 2 * 3 + 3 and inr.encoded_dim == 2
    w = torch.randn(4, inr.num_weights, dtype=torch.float64)
    x = torch.randn(10, 2, dtype=torch.float64)
    W, b = inr.split_weights(w)[0]
    torch.testing.assert_close(inr(x, w), torch.einsum("ni,boi->bno", x, W) + b[:, None, :])
    deep = FunctionRepresentation(2, 1, hidden=(5, 4))
    w = torch.randn(3, deep.num_weights, dtype=torch.float64)
    torch.testing.assert_close(deep(x, w), _reference(deep, x, w))


def test_spherical_harmonics_encoding():
    inr = FunctionRepresentation(3, 1, (8,), encoding=SphericalHarmonics(3), final_activation=torch.nn.Sigmoid())
    assert inr.encoded_dim == 16
    w = torch.randn(2, 3, inr.num_weights, dtype=torch.float64)
    x = torch.nn.functional.normalize(torch.randn(20, 3, dtype=torch.float64), dim=-1)
    y = inr(x, w)
    assert y.shape == (2, 3, 20, 1) and bool(((y > 0) & (y < 1)).all())
    torch.testing.assert_close(y, _reference(inr, x, w))


def test_empty_points_and_gradients():
    inr = _inr(hidden=(5,), out_dim=1)
    w = torch.randn(2, inr.num_weights, dtype=torch.float64)
    assert inr(torch.empty(0, 3, dtype=torch.float64), w).shape == (2, 0, 1)
    w.requires_grad_(True)
    x = torch.randn(6, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda w_: inr(x, w_, chunk_size=4), (w,))


@pytest.mark.parametrize("out_dim", [1, 3, 5])
def test_output_layer_values_gradients_and_double_backward(out_dim):
    # Outputs up to 4 wide take the transposed output layer (_NarrowOutput), wider ones the plain product:
    # both against the per-function reference, by finite differences, and through a double backward.
    inr = _inr(hidden=(6, 5), out_dim=out_dim, final=None, frequencies=3)
    x = torch.randn(9, 3, dtype=torch.float64)
    w = (0.5 * torch.randn(2, 2, inr.num_weights, dtype=torch.float64)).requires_grad_(True)
    torch.testing.assert_close(inr(x, w, chunk_size=4), _reference(inr, x, w.detach()))
    assert torch.autograd.gradcheck(lambda w_: inr(x, w_, chunk_size=4), (w,))
    assert torch.autograd.gradgradcheck(lambda w_: inr(x, w_, chunk_size=4), (w,))
    inr32, x32, w32 = _inr(hidden=(6, 5), out_dim=out_dim, dtype=torch.float32, final=None, frequencies=3), \
        x.float(), w.detach().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the plain product under autocast
        low = inr32(x32, w32)
    assert low.dtype == torch.bfloat16
    ref32 = _reference(inr32, x32, w32)
    torch.testing.assert_close(low.float(), ref32, rtol=0.05, atol=0.05 * float(ref32.abs().max()))


@pytest.mark.parametrize("act", [torch.nn.LeakyReLU(0.2), torch.nn.LeakyReLU(0.0), torch.nn.ReLU(), torch.nn.Tanh(),
                                 torch.nn.Sigmoid(), torch.nn.GELU(), torch.nn.LeakyReLU(-0.5)])
def test_hidden_activations_values_and_gradients(act):
    # Common activations run in place on each layer's fresh output (others as given): values against a
    # per-function reference, gradients of the INR and of a hypernetwork by finite differences.
    enc = FourierFeatures(3, num_frequencies=3, sigma=1.0, dtype=torch.float64)
    inr = FunctionRepresentation(3, 2, (5, 4), encoding=enc, activation=act)
    w = torch.randn(2, 3, inr.num_weights, dtype=torch.float64)
    x = torch.randn(7, 3, dtype=torch.float64)
    ref = []
    for g in range(6):
        h = enc(x)
        for j, (W, b) in enumerate(inr.split_weights(w.reshape(6, -1)[g:g + 1])):
            h = F.linear(h, W[0], b[0])
            h = act(h) if j < 2 else h
        ref.append(h)
    torch.testing.assert_close(inr(x, w, chunk_size=3), torch.stack(ref).view(2, 3, 7, 2))
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda w_: inr(x, w_, chunk_size=3), (w,))
    hyper = HyperNetwork(3, (4, 6), inr, activation=act, num_components=2).double()
    z = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z_: hyper.decode(z_, x), (z,))


def test_errors_name_the_argument():
    inr = _inr(hidden=(4,), out_dim=1)
    P = inr.num_weights
    x = torch.randn(5, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"weights must have shape .* num_weights={P}"):
        inr(x, torch.randn(2, P + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="weights must have shape"):
        inr(x, torch.randn(P, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"pos must have shape \[N, 3\]"):
        inr(torch.randn(5, 2, dtype=torch.float64), torch.randn(2, P, dtype=torch.float64))
    with pytest.raises(ValueError, match="pos holds coordinates for 3 samples but weights for 2"):
        inr(torch.randn(3, 5, 3, dtype=torch.float64), torch.randn(2, P, dtype=torch.float64))
    with pytest.raises(ValueError, match="pos contains NaN"):
        inr(torch.full((5, 3), float("nan"), dtype=torch.float64), torch.randn(2, P, dtype=torch.float64))
    with pytest.raises(TypeError, match="same dtype"):
        inr(x, torch.randn(2, P))
    with pytest.raises(ValueError, match="chunk_size"):
        inr(x, torch.randn(2, P, dtype=torch.float64), chunk_size=0)
    with pytest.raises(TypeError, match="out_dim"):
        FunctionRepresentation(3, 1, encoding=torch.nn.Identity())
    with pytest.raises(ValueError, match="encoding takes in_dim=2"):
        FunctionRepresentation(3, 1, encoding=FourierFeatures(2))
    with pytest.raises(TypeError, match="hidden"):
        FunctionRepresentation(3, 1, hidden=128)


def test_repr():
    inr = FunctionRepresentation(3, 1, (128, 128, 128), FourierFeatures(3), final_activation=torch.nn.Tanh())
    assert repr(inr).startswith(
        "FunctionRepresentation(\n  in_dim=3, out_dim=1, hidden=(128, 128, 128), num_weights=66049\n"
        "  (encoding): FourierFeatures(in_dim=3, num_frequencies=128, sigma=2, learnable=False)"
    )


# ------------------------------------------------------------------------------------------------ HyperNetwork


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_paper_hypernetwork_parameter_counts():
    gasp = HyperNetwork(64, (256, 512), FunctionRepresentation(3, 1, (128,) * 3, FourierFeatures(3, 128, 2.0)))
    assert _count(gasp) == 64 * 256 + 256 + 256 * 512 + 512 + 512 * 66_049 + 66_049 == 34_031_361
    del gasp
    vamoh_inr = FunctionRepresentation(3, 1, (64,) * 3, FourierFeatures(3, 128, 2.0))
    assert _count(HyperNetwork(32, (256, 512), vamoh_inr)) == 12_879_361
    assert _count(HyperNetwork(32, (256, 512), vamoh_inr, num_components=3)) == 3 * 12_879_361


def _mlp_reference(hyper, z, k=0):
    h = z
    for j, (W, b) in enumerate(zip(hyper.weights, hyper.biases)):
        h = F.linear(h, W[k], b[k])
        if j < len(hyper.weights) - 1:
            h = F.leaky_relu(h, 0.1)
    return h


def test_hypernetwork_forward_equals_mlp():
    inr = _inr(hidden=(8,), dtype=torch.float32)
    hyper = HyperNetwork(5, (7, 9), inr).double()
    z = torch.randn(4, 5, dtype=torch.float64)
    w = hyper(z)
    assert w.shape == (4, inr.num_weights)
    torch.testing.assert_close(w, _mlp_reference(hyper, z))


def test_hypernetwork_components_equal_independent_networks():
    inr = _inr(hidden=(8,), dtype=torch.float32)
    hyper = HyperNetwork(5, (7, 9), inr, num_components=3).double()
    z = torch.randn(4, 5, dtype=torch.float64)
    w = hyper(z)
    assert w.shape == (4, 3, inr.num_weights) and w.is_contiguous()
    for k in range(3):
        torch.testing.assert_close(w[:, k], _mlp_reference(hyper, z, k))
    assert not torch.allclose(w[:, 0], w[:, 1])


def test_hypernetwork_decode_and_function():
    inr = _inr(hidden=(8, 8))
    hyper = HyperNetwork(6, (16, 32), inr, num_components=2).double()
    z = torch.randn(3, 6, dtype=torch.float64)
    x = torch.randn(50, 3, dtype=torch.float64)
    y = hyper.decode(z, x, chunk_size=16)
    assert y.shape == (3, 2, 50, 2)
    torch.testing.assert_close(y, _reference(inr, x, hyper(z)))
    f = hyper.function(z)
    torch.testing.assert_close(f(x), y)
    xb = torch.randn(3, 20, 3, dtype=torch.float64)
    torch.testing.assert_close(f(xb), _reference(inr, xb, hyper(z)))
    hyper.decode(z, x).square().sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in hyper.parameters())


def test_hypernetwork_initialisation_state_dict_and_reset():
    inr = FunctionRepresentation(3, 1, (8,), FourierFeatures(3, 4))
    hyper = HyperNetwork(10, (20,), inr)
    with torch.no_grad():  # torch.nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in))
        for W, b in zip(hyper.weights, hyper.biases):
            bound = 1 / math.sqrt(W.size(-1))
            assert float(W.abs().max()) <= bound and float(W.abs().max()) > 0.8 * bound
            assert float(b.abs().max()) <= bound
    sd = hyper.state_dict()
    assert "target.encoding.B" in sd
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    other = HyperNetwork(10, (20,), FunctionRepresentation(3, 1, (8,), FourierFeatures(3, 4)))
    other.load_state_dict(torch.load(buf))
    z, x = torch.randn(2, 10), torch.randn(30, 3)
    assert torch.equal(other.decode(z, x), hyper.decode(z, x))
    old_w, old_B = hyper.weights[0].detach().clone(), inr.encoding.B.clone()
    hyper.reset_parameters()
    assert not torch.equal(hyper.weights[0], old_w) and not torch.equal(inr.encoding.B, old_B)


def test_hypernetwork_errors_and_repr():
    inr = FunctionRepresentation(3, 1, (8,), FourierFeatures(3, 4))
    with pytest.raises(TypeError, match="target must be a FunctionRepresentation"):
        HyperNetwork(4, (8,))
    hyper = HyperNetwork(4, (8,), inr, num_components=2)
    with pytest.raises(ValueError, match=r"z must have shape \[B, 4\]"):
        hyper(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"z must have shape \[B, 4\]"):
        hyper(torch.randn(4))
    with pytest.raises(ValueError, match="num_components"):
        HyperNetwork(4, (8,), inr, num_components=0)
    with pytest.raises(ValueError, match="latent_dim"):
        HyperNetwork(0, (8,), inr)
    assert repr(hyper).startswith("HyperNetwork(\n  latent_dim=4, hidden=(8,), num_weights=81, num_components=2\n")


# ------------------------------------------------------------------------------------------------ memory

_DECODE = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
from pcfunc.data import LatLonGrid
from pcfunc.nn._encodings import FourierFeatures
from pcfunc.nn import FunctionRepresentation, HyperNetwork
pos = LatLonGrid.regular(721, 1440, collapse_poles=False).pos
inr = FunctionRepresentation(3, 1, (128, 128, 128), FourierFeatures(3, 128, 2.0), final_activation=torch.nn.Tanh())
hyper = HyperNetwork(64, (256, 512), inr)
with torch.no_grad():
    w = hyper(torch.randn(4, 64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    y = inr(pos, w)
    seconds = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(dict(n=pos.size(0), shape=list(y.shape), seconds=seconds, before=before, peak=peak,
                      finite=bool(torch.isfinite(y).all()))))
"""


@pytest.mark.slow
def test_decode_era5_quarter_degree_grid_memory():
    """GASP's ERA5 INR on all 1,038,240 points of the 0.25 degree grid, batch of 4: peak RSS grows < 4 GiB."""
    out = subprocess.run([sys.executable, "-c", _DECODE.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["n"] == 1_038_240 and r["shape"] == [4, 1_038_240, 1] and r["finite"]
    growth = r["peak"] - r["before"]
    print(f"decode of 1,038,240 points x 4: {r['seconds']:.1f} s, peak RSS growth {growth / 2**20:.0f} MiB")
    assert growth < 4 * 2**30
