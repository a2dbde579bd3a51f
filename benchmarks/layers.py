"""Layers: time and peak memory of the papers' networks next to naive references in the style of the original code.

One process, one table:

* GASP ERA5 discriminator (channels 64, 128, 256, 512; 9 neighbours; pooling by 4) forward + backward
  with the R1 penalty (double backward), batch 16 and 64, on the 46 x 90 grid (3,962 points);
* VaMoH ERA5 encoder (Table 3) forward + backward, batch 16 and 64;
* INR decode (GASP ERA5 sizes: RFF 128, hidden 3 x 128, tanh) of a batch of 16 at 4,140 points and
  of 4 at 1,038,240 points (the raw 46 x 90 and 721 x 1440 grids).

The naive references recompute neighbours on every call as the original code does: a Python loop for
FPS over the padded batch and a full ``torch.cdist`` + ``topk`` for kNN; the naive INR loops over samples.
Both use the same layer weights as pcfunc's networks, so the numbers compare implementations of the
same function (checked: the outputs agree).

Run: ``bash scripts/run python benchmarks/layers.py [--batch 16 64] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import measure  # noqa: E402
from neighbors import naive_fps  # noqa: E402

from pcfunc.data import LatLonGrid  # noqa: E402
from pcfunc.nn import FourierFeatures, FunctionRepresentation, HyperNetwork  # noqa: E402
from pcfunc.nn._point_conv import AvgPool, PointConv  # noqa: E402
from pcfunc.nn._point_conv_net import PointConvNet, gasp_discriminator_specs, vamoh_encoder_specs  # noqa: E402


# ----------------------------------------------------------------------------- naive reference network
def naive_group(pos: Tensor, num: Optional[int], k: int, cache: Optional[dict] = None,
                key: object = None) -> Tuple[Tensor, Tensor]:
    """Padded [B, N, D]: centroid indices [B, M] (Python-loop FPS or all points) and neighbours [B, M, k].

    With a ``cache`` dict the result is computed once per ``key`` and reused, as the VaMoH reference code
    does for clouds that all share coordinates (``same_coordinates: all``: neighbours found on the first
    cloud, precomputed once and repeated over the batch)."""
    if cache is not None and key in cache:
        return cache[key]
    B, N, _ = pos.shape
    if cache is not None:
        pos = pos[:1]
    idx = torch.arange(N, device=pos.device).expand(pos.size(0), N) if num is None else naive_fps(pos, num)
    cent = torch.gather(pos, 1, idx[..., None].expand(-1, -1, pos.size(-1)))
    nbr = torch.cdist(cent, pos).topk(k, dim=-1, largest=False).indices
    if cache is not None:
        idx, nbr = idx.expand(B, -1), nbr.expand(B, -1, -1)
        cache[key] = (idx, nbr)
    return idx, nbr


def naive_conv(conv: PointConv, x: Tensor, pos: Tensor, cache: Optional[dict] = None,
               key: object = None) -> Tuple[Tensor, Tensor]:
    B, N, _ = pos.shape
    idx, nbr = naive_group(pos, conv.num_centroids, conv.num_neighbors, cache, key)
    M, k = nbr.shape[1], nbr.shape[2]
    cent = torch.gather(pos, 1, idx[..., None].expand(-1, -1, pos.size(-1)))
    flat = (nbr + torch.arange(B, device=nbr.device)[:, None, None] * N).reshape(-1)
    npos = pos.reshape(B * N, -1)[flat].view(B, M, k, -1)
    rel = npos - cent[:, :, None]
    w = conv.weight_net(rel.reshape(-1, rel.size(-1))).view(B * M, k, -1)
    g = torch.cat((x.reshape(B * N, -1)[flat].view(B, M, k, -1), rel), -1).view(B * M, k, -1)
    out = conv.linear(torch.einsum("mkc,mkw->mcw", g, w).reshape(B * M, -1))
    return out.view(B, M, -1), cent


def naive_pool(pool: AvgPool, x: Tensor, pos: Tensor, cache: Optional[dict] = None,
               key: object = None) -> Tuple[Tensor, Tensor]:
    B, N, _ = pos.shape
    num = round(N * pool.ratio) if pool.ratio is not None else pool.num_centroids
    idx, nbr = naive_group(pos, num, pool.num_neighbors, cache, key)
    cent = torch.gather(pos, 1, idx[..., None].expand(-1, -1, pos.size(-1)))
    flat = (nbr + torch.arange(B, device=nbr.device)[:, None, None] * N).reshape(-1)
    return x.reshape(B * N, -1)[flat].view(B, nbr.shape[1], nbr.shape[2], -1).mean(2), cent


def naive_net(net: PointConvNet, x: Tensor, pos: Tensor, cache: Optional[dict] = None):
    """The network on padded clouds; ``cache``: a dict in which each level's neighbours are kept and reused
    (clouds sharing coordinates, see :func:`naive_group`); ``None`` recomputes them on every call."""
    for i, (conv, norm, pool) in enumerate(zip(net.convs, net.norms, net.pools)):
        B = x.size(0)
        h, pos = naive_conv(conv, x, pos, cache, (i, "conv"))
        x = net.act(norm(h.reshape(-1, h.size(-1)))).view(B, -1, h.size(-1))
        if isinstance(pool, AvgPool):
            x, pos = naive_pool(pool, x, pos, cache, (i, "pool"))
    pooled = x.mean(1)
    out = net.head(pooled)
    if net.head_kind == "gaussian":
        return out.chunk(2, dim=-1)
    return out


def naive_decode(inr: FunctionRepresentation, weights: Tensor, x: Tensor) -> Tensor:
    """Per-sample loop over the batch, the whole point set at once (the style of the original code)."""
    outs = []
    for w in weights:
        h = inr.encoding(x)
        layers = inr.split_weights(w)
        for i, (W, b) in enumerate(layers):
            h = torch.nn.functional.linear(h, W, b)
            if i < len(layers) - 1:
                h = torch.nn.functional.leaky_relu(h, 0.1)
        outs.append(torch.tanh(h))
    return torch.stack(outs)


# ----------------------------------------------------------------------------- workloads
def r1_step(forward: Callable[[Tensor], Tensor], y: Tensor, net: torch.nn.Module) -> None:
    """Discriminator loss on real data with the R1 penalty on the features: forward, double backward."""
    y = y.detach().requires_grad_(True)
    logit = forward(y)
    (grad,) = torch.autograd.grad(logit.sum(), y, create_graph=True)
    loss = torch.nn.functional.softplus(-logit).mean() + 0.5 * 10.0 * grad.square().sum() / logit.size(0)
    net.zero_grad(set_to_none=True)
    loss.backward()


def encoder_step(forward: Callable[[Tensor], Tuple[Tensor, Tensor]], y: Tensor, net: torch.nn.Module) -> None:
    mu, logvar = forward(y)
    loss = (mu.square() + logvar.exp() - logvar).sum()
    net.zero_grad(set_to_none=True)
    loss.backward()


def rows(batch_sizes: List[int]):
    grid = LatLonGrid.regular(46, 90)
    torch.manual_seed(0)
    disc = PointConvNet(1, gasp_discriminator_specs((64, 128, 256, 512), dim=2), "sphere", head="logit")
    specs, kw = vamoh_encoder_specs("era5")
    enc = PointConvNet(1, specs, "sphere", head="gaussian", **kw)
    for B in batch_sizes:
        data = grid.to_batch(torch.rand(B, 46, 90))
        padded_pos = data.pos.view(B, -1, 3)
        fwd_p = (lambda n: lambda y: n(y, data.pos, data.batch))
        fwd_n = (lambda n: lambda y: naive_net(n, y.view(B, -1, 1), padded_pos))
        yield f"GASP disc fwd+bwd+R1, B={B}", "pcfunc", lambda: r1_step(fwd_p(disc), data.x, disc)
        yield f"GASP disc fwd+bwd+R1, B={B}", "naive", lambda: r1_step(fwd_n(disc), data.x, disc)
        yield f"VaMoH enc fwd+bwd, B={B}", "pcfunc", lambda: encoder_step(fwd_p(enc), data.x, enc)
        yield f"VaMoH enc fwd+bwd, B={B}", "naive", lambda: encoder_step(fwd_n(enc), data.x, enc)
    # INR decode with the GASP ERA5 sizes (RFF 128, sigma 2; hidden 3 x 128; tanh output).
    inr = FunctionRepresentation(3, 1, hidden=(128, 128, 128), encoding=FourierFeatures(3, 128, 2.0),
                                 final_activation=torch.nn.Tanh())
    hyper = HyperNetwork(64, (256, 512), target=inr)
    for n_lat, n_lon, B in ((46, 90, 16), (721, 1440, 4)):
        pts = LatLonGrid.regular(n_lat, n_lon, collapse_poles=False).pos
        with torch.no_grad():
            w = hyper(torch.randn(B, 64))
        name = f"INR decode {pts.size(0):,} pts, B={B}"
        yield name, "pcfunc", lambda: _no_grad(lambda: inr(pts, w))
        yield name, "naive", lambda: _no_grad(lambda: naive_decode(inr, w, pts))


def _no_grad(fn):
    with torch.no_grad():
        return fn()


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", nargs="+", type=int, default=[16, 64])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", nargs="*", default=None, help="substrings of the workload names to run")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    header = f"{'workload':<30} {'impl':<8} {'median s':>9} {'min s':>8} {'peak MiB':>9} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    ref = {}
    for name, impl, fn in rows(args.batch):
        if args.only and not any(o in name for o in args.only):
            continue
        fn()  # warm-up: compiles kernels, fills pcfunc's neighbour cache as a training loop would
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        _, _, peak = measure(fn)
        med = statistics.median(times)
        if impl == "pcfunc":
            ref[name] = med
            speed = ""
        else:
            speed = f"{med / ref[name]:.1f}x"
        print(f"{name:<30} {impl:<8} {med:>9.3f} {min(times):>8.3f} {peak / 2**20:>9.0f} {speed:>9}", flush=True)


if __name__ == "__main__":
    main()
