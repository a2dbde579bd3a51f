"""VaMoH, the paper's ERA5 configuration (Table 3), on the 46 x 90 grid: pcfunc next to the reference code's way.

One process, one table, 2 threads. For batch 16 and 64:

* training step: ELBO forward, backward and Adam update (pcfunc with point dropout, as it trains;
  the reference on the full grid, which is cheaper for it);
* training step with fine supervision (pcfunc only): the encoder sees the 4-degree fields, the likelihood
  is evaluated at 4,096 random points per field of the same fields at 1 degree; its cost next to pcfunc's
  own coarse-only step;
* reconstruction at the data's points, and super-resolution reconstruction at the 91 x 180 grid
  (``LatLonGrid.super_resolution(2)``, which contains the original points);
* the peak extra resident memory of each call.

Then the peak memory of reconstructing one sample at 0.25 degrees (721 x 1440, 1,038,240 points after
merging the poles): encoding the whole cloud and decoding at every point.

The reference computes the same function with the same weights the way the VaMoH reference code
(``bkoyuncu/vamoh``) does, rewritten here: the encoder's neighbours found once on the first cloud and
reused for every batch (its ``same_coordinates: all`` path; a Python FPS loop and ``cdist`` + ``topk``
in the warm run); the K hypernetworks as K separate MLPs whose outputs are concatenated; the encoded
coordinates copied to one ``[K B, N, E]`` tensor and one stateless MLP mapped over the K B INRs with
``torch.func.vmap`` (batched products, the whole point set at once); the categorical nets on the
concatenation ``[rff(x), y, z]`` materialised per point; torch's ``ContinuousBernoulli``; Adam with its
default implementation. The script checks that both give the same ELBO on the same latent sample before
timing. (The reference code estimates the flow prior's term from 4,096 extra samples per cloud; here both
use pcfunc's one-sample estimate, which is cheaper for the reference.)

For scale, the issue quotes the VaMoH reference code on its machine: training step 0.9-1.1 s (batch 16)
and 5.9 s (64); reconstruction 0.43-0.52 s and 2.2 s; super-resolution (91 x 179) 1.8 s and 12.2 s;
peak memory 3.5 GB and 10.3 GB.

Every measurement runs in a fresh subprocess (one model, one workload), so "peak RSS" is the whole
process's peak (``ru_maxrss``: Python, torch, the model, the data and the workload), comparable with
the reference figures above; in brackets, the workload's own peak above the process after setup (Linux:
the peak-RSS mark is reset after setup; ``nan`` elsewhere). (With
the tested stack, importing torch, a CUDA build, takes about 0.7 GB and PyG about 0.25 GB more; the model
and its Adam state take 0.66 GB when training.) pcfunc is measured in float32 and, where the CPU runs
bfloat16 natively (AMX or AVX512-BF16; ``--bf16 yes`` forces it), under ``torch.autocast`` with bfloat16
(what Lightning's ``precision="bf16-mixed"`` does; the likelihood, KL terms and flow stay float32).

``--thp`` runs both with ``THP_MEM_ALLOC_ENABLE=1`` (torch's own switch: its large CPU tensors are
backed by transparent huge pages, so fresh tensors cost fewer page faults); the reference's way gains
more from it, as it allocates more fresh memory per step.

Run: ``bash scripts/run python benchmarks/vamoh.py [--batch 16 64] [--repeat 3] [--warmup 2] [--only train rec sr]
[--skip-025] [--bf16 auto|yes|no] [--thp] [--rounds 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pcfunc  # noqa: E402,F401  (before torch, as the examples: its OpenMP spin count, pcfunc.OMP_SPIN_COUNT)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor  # noqa: E402

from _memory import median_seconds, reset_peak_rss, status_mib  # noqa: E402
from layers import naive_net  # noqa: E402

from torch_geometric.data import Data  # noqa: E402

from pcfunc.data import LatLonGrid, MinMaxNormalizer, load_era5_sample  # noqa: E402
from pcfunc.models import VaMoH  # noqa: E402
from pcfunc.models._categorical import CategoricalNet  # noqa: E402
from pcfunc.training import resolve_precision  # noqa: E402


# ----------------------------------------------------------------------------- the reference code's way
def naive_cat(net: CategoricalNet, rff: Tensor, z: Tensor, y: Optional[Tensor]) -> Tensor:
    B, N = z.size(0), rff.size(0)
    parts = [rff.expand(B, N, -1)] + ([y] if y is not None else []) + [z[:, None].expand(B, N, -1)]
    weights = [net.coord_in.weight] + ([net.feature_in.weight] if y is not None else []) + [net.latent_in.weight]
    h = F.linear(torch.cat(parts, -1), torch.cat(weights, 1), net.coord_in.bias)
    for lin in net.layers:
        h = lin(net.act(h))
    return h


class ReferenceHypernets(torch.nn.Module):
    """The K hypernetworks as the reference code holds them: K separate MLPs (``hyper_list``) with their own
    parameters, a copy of the model's stacked ``[K, out, in]`` weights."""

    def __init__(self, model: VaMoH) -> None:
        super().__init__()
        hn = model.hypernet
        self.act = hn.activation
        self.nets = torch.nn.ModuleList()
        for k in range(model.num_components):
            lins = []
            for W, b in zip(hn.weights, hn.biases):
                lin = torch.nn.Linear(W.size(2), W.size(1))
                with torch.no_grad():
                    lin.weight.copy_(W[k])
                    lin.bias.copy_(b[k])
                lins.append(lin)
            self.nets.append(torch.nn.ModuleList(lins))

    def forward(self, z: Tensor) -> List[Tensor]:
        out = []
        for lins in self.nets:
            h = z
            for i, lin in enumerate(lins):
                h = lin(h if i == 0 else self.act(h))
            out.append(h)
        return out


def reference_parameters(model: VaMoH, hyper: ReferenceHypernets) -> List[Tensor]:
    """What the reference's optimiser updates: the model's parameters with the hypernetworks as K separate MLPs."""
    stacked = {id(p) for p in model.hypernet.parameters()}
    return [p for p in model.parameters() if id(p) not in stacked] + list(hyper.parameters())


def _template(inr) -> torch.nn.Sequential:
    """One INR as a stateful module (LeakyReLU(0.1) between the layers), for ``functional_call``."""
    mods: List[torch.nn.Module] = []
    for i, (o, n) in enumerate(inr.layer_shapes):
        mods += ([torch.nn.LeakyReLU(0.1)] if i else []) + [torch.nn.Linear(n, o)]
    return torch.nn.Sequential(*mods)


def naive_logits(model: VaMoH, weights: List[Tensor], rff: Tensor) -> Tensor:
    """[B, N, K] INR outputs as the reference code computes them: the K hypernetworks' outputs concatenated to
    [K B, P], the encoded coordinates copied to [K B, N, E], and one stateless MLP mapped over the K B
    networks with ``torch.func.vmap`` (batched products, the whole point set at once)."""
    inr = model.hypernet.target
    K, B, (N, E) = len(weights), weights[0].size(0), rff.shape
    flat = torch.cat(weights)
    template = _template(inr)
    linears = [i for i, m in enumerate(template) if isinstance(m, torch.nn.Linear)]
    params = {}
    for j, (W, b) in zip(linears, inr.split_weights(flat)):
        params[f"{j}.weight"], params[f"{j}.bias"] = W, b
    # The reference encodes each sample's coordinates ([B, N, E]), then expands them over K and reshapes:
    # a [K B, N, E] copy.
    coords = rff.expand(B, N, E).contiguous().expand(K, B, N, E).reshape(K * B, N, E)
    out = torch.func.vmap(lambda p, c: torch.func.functional_call(template, p, (c,)))(params, coords)
    return out.view(K, B, N).permute(1, 2, 0)


def naive_elbo(model: VaMoH, hyper: ReferenceHypernets, y: Tensor, pos: Tensor, eps: Tensor,
               posterior: Optional[Tuple[Tensor, Tensor]] = None, cache: Optional[dict] = None) -> Tensor:
    B = y.size(0)
    mu, logvar = posterior if posterior is not None else naive_net(model.encoder, y, pos[None].expand(B, -1, -1),
                                                                   cache)
    std = torch.exp(0.5 * logvar)
    z = mu + std * eps
    rff = model.encoding(pos)
    logits = naive_logits(model, hyper(z), rff)
    log_p = torch.distributions.ContinuousBernoulli(logits=logits).log_prob(y.expand_as(logits))
    log_q = torch.log_softmax(naive_cat(model.posterior_c, rff, z, y), -1)
    log_prior = torch.log_softmax(naive_cat(model.prior_c, rff, z, None), -1)
    q = log_q.exp()
    log_lik = (q * log_p).sum((-1, -2))
    kl_c = (q * (log_q - log_prior)).sum((-1, -2))
    log_qz = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
    kl_z = log_qz - model.flow.log_prob(z)
    return log_lik - kl_z - kl_c


def naive_reconstruct(model: VaMoH, hyper: ReferenceHypernets, y: Tensor, pos_in: Tensor, pos_out: Tensor,
                      cache: Optional[dict] = None) -> Tensor:
    B = y.size(0)
    mu, _ = naive_net(model.encoder, y, pos_in[None].expand(B, -1, -1), cache)
    rff = model.encoding(pos_out)
    logits = naive_logits(model, hyper(mu), rff)
    means = torch.distributions.ContinuousBernoulli(logits=logits).mean
    prior = torch.softmax(naive_cat(model.prior_c, rff, mu, None), -1)
    return (prior * means).sum(-1, keepdim=True)


# ----------------------------------------------------------------------------- harness
def setup(B: int, device: str = "cpu"):
    field = load_era5_sample().subsample(4)
    grid = LatLonGrid(field.lat, field.lon)
    norm = MinMaxNormalizer.fit(field)
    batch = grid.to_batch(norm.transform(field.values[np.arange(B) % field.values.shape[0]])).to(device)
    model = VaMoH.from_config("era5").to(device)
    model.warmup = False  # the full ELBO: flow prior and learned categorical prior
    return grid, batch, model


def run_case(impl: str, workload: str, B: int, repeat: int, warmup: int = 2, device: str = "cpu") -> dict:
    """One measurement in this process: median seconds after ``warmup`` warm runs, and the process's peak RSS
    (on CUDA: the peak of memory allocated on the device, in both memory fields)."""
    torch.manual_seed(0)
    grid, batch, model = setup(B, device)
    y, pos = batch.x.view(B, -1, 1), grid.pos.to(device)
    sr = grid.super_resolution(2)
    bf16 = impl == "pcfunc-bf16"
    dev_type = torch.device(device).type
    ctx = (lambda: torch.autocast(dev_type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    cache: dict = {}  # the reference's neighbours, found in the first (warm) run and reused
    if impl == "naive":
        hyper = ReferenceHypernets(model).to(device)
        model.hypernet.weights = model.hypernet.biases = None  # its own copy is the reference's; free the stacked one
    if workload == "train_fine":
        if impl == "naive":
            raise ValueError("the reference code has no fine supervision")
        # The encoder sees the 4-degree fields; the likelihood is evaluated at 4,096 random points per field of
        # the same fields at 1 degree (VaMoH.elbo(batch, target=...)), as examples/era5_sphere.py trains.
        full = load_era5_sample()
        fgrid = LatLonGrid(full.lat, full.lon)
        fy = torch.as_tensor(MinMaxNormalizer.fit(full).transform(full.values[np.arange(B) % full.values.shape[0]],
                                                                  clip=True), dtype=torch.float32)
        fy = fgrid.to_batch(fy[..., None]).x.view(B, -1)
        g = torch.Generator().manual_seed(0)
        idx = torch.stack([torch.randperm(fgrid.num_points, generator=g)[:4096] for _ in range(B)])
        target = Data(x=torch.gather(fy, 1, idx).reshape(-1, 1), pos=fgrid.pos[idx].reshape(-1, 3),
                      batch=torch.arange(B).repeat_interleave(4096)).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

        def fn() -> None:
            opt.zero_grad(set_to_none=True)
            with ctx():
                loss = model.elbo(batch, target=target).loss
            loss.backward()
            opt.step()
    elif workload == "train":
        if impl == "naive":
            opt = torch.optim.Adam(reference_parameters(model, hyper), lr=1e-4)

            def fn() -> None:
                opt.zero_grad(set_to_none=True)
                (-naive_elbo(model, hyper, y, pos, torch.randn(B, model.latent_dim, device=device),
                            cache=cache).mean()).backward()
                opt.step()
        else:
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

            def fn() -> None:
                opt.zero_grad(set_to_none=True)
                with ctx():
                    loss = model.elbo(batch).loss
                loss.backward()
                opt.step()
    elif workload == "025":
        model.eval()
        fine = LatLonGrid.regular(721, 1440)
        lat = torch.linspace(math.pi / 2, -math.pi / 2, 721)[:, None]
        one = fine.to_batch((0.5 + 0.4 * torch.cos(lat) * torch.ones(721, 1440))[None, ..., None]).to(device)

        def fn() -> None:
            with ctx():
                model.reconstruct(one)
    else:
        model.eval()
        out = pos if workload == "rec" else sr.pos.to(device)

        def fn() -> None:
            with torch.no_grad():
                if impl == "naive":
                    naive_reconstruct(model, hyper, y, pos, out, cache)
                else:
                    with ctx():
                        model.reconstruct(batch, None if workload == "rec" else out)
    if dev_type == "cuda":  # the device's clock: every timed call ends when its kernels have run
        step = fn

        def fn() -> None:
            step()
            torch.cuda.synchronize(device)

        fn()
        torch.cuda.reset_peak_memory_stats(device)
        seconds = median_seconds(fn, repeat, warmup)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
        return {"seconds": seconds, "peak_rss_mib": peak, "extra_rss_mib": peak}
    # The process after setup (torch, PyG, the model, the data): the workload's memory is what it adds.
    base = reset_peak_rss()
    seconds = median_seconds(fn, repeat, warmup)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    since = status_mib("VmHWM") if base is not None else None
    extra = (since - base) if since is not None else float("nan")
    return {"seconds": seconds, "peak_rss_mib": peak, "extra_rss_mib": extra}


def agreement(B: int = 4) -> None:
    grid, batch, model = setup(B)
    model.eval()
    y, pos = batch.x.view(B, -1, 1), grid.pos
    with torch.no_grad():
        ours = model.elbo(batch, dropout=False, generator=torch.Generator().manual_seed(0)).elbo
        eps = torch.randn((1, B, model.latent_dim), generator=torch.Generator().manual_seed(0))[0]
        hyper = ReferenceHypernets(model)
        same_q = naive_elbo(model, hyper, y, pos, eps, model.encode(batch))
        ref = naive_elbo(model, hyper, y, pos, eps, cache={})
        mu_ref = naive_net(model.encoder, y, pos[None].expand(B, -1, -1))[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.elbo(batch, dropout=False, generator=torch.Generator().manual_seed(0)).elbo
    rel = lambda u, v: float(((u - v).abs() / v.abs().clamp_min(1)).max())  # noqa: E731
    print(f"Same function: ELBO pcfunc vs the reference's way given the same q(z): max relative difference {rel(ours, same_q):.1e}; "
          f"whole ELBO {rel(ours, ref):.1e}, because the encoder means differ by "
          f"{float((model.encode(batch)[0].detach() - mu_ref).abs().max()):.1e} (float32 FPS picks other centroids among "
          f"near-equal distances on the regular grid; in float64 both pick the same). bf16-mixed vs float32: "
          f"{rel(low, ours):.1e}.")


WORKLOADS = {"train": "training step", "train_fine": "training step, fine supervision", "rec": "reconstruction",
             "sr": "super-resolution 91x180"}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-025", action="store_true", help="skip the 0.25-degree memory case")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--bf16", choices=["auto", "yes", "no"], default="auto",
                   help="also time bf16-mixed (auto: where the CPU runs bfloat16 natively)")
    p.add_argument("--warmup", type=int, default=2, help="warm runs before timing (default: 2)")
    p.add_argument("--only", nargs="*", default=None, choices=sorted(WORKLOADS), help="workloads to run")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every cell this many times, the implementations alternating, and report the median "
                        "time (and the largest memory): steadier on a noisy machine")
    p.add_argument("--thp", action="store_true",
                   help="run every case with THP_MEM_ALLOC_ENABLE=1: torch then asks Linux for transparent huge "
                        "pages for its large CPU tensors (fewer page faults, for both implementations)")
    p.add_argument("--device", default="cpu",
                   help="where to run the workloads (e.g. cuda; default: cpu); on CUDA the memory columns are the "
                        "peak memory allocated on the device, and bf16-mixed is always timed")
    p.add_argument("--case", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    if a.case:
        impl, workload, B = a.case.split(":")
        print(json.dumps(run_case(impl, workload, int(B), a.repeat, a.warmup, a.device)))
        return
    grid, _, model = setup(1)
    print(f"VaMoH ERA5 (Table 3): {sum(p.numel() for p in model.parameters()):,} parameters; grid {grid.shape} -> "
          f"{grid.num_points} points; super-resolution {grid.super_resolution(2).shape}; {a.threads} threads; "
          f"median of {a.repeat} after {a.warmup} warm runs; each cell a fresh process"
          f"{f', median of {a.rounds} alternating rounds' if a.rounds > 1 else ''}"
          f"{' with THP_MEM_ALLOC_ENABLE=1' if a.thp else ''}; CPU "
          f"{torch.backends.cpu.get_cpu_capability()}"
          f"{f'; device {torch.cuda.get_device_name(a.device)}' if a.device.startswith('cuda') else ''}")
    agreement()

    def case(impl: str, workload: str, B: int) -> dict:
        cmd = [sys.executable, __file__, "--case", f"{impl}:{workload}:{B}", "--repeat", str(a.repeat),
               "--threads", str(a.threads), "--warmup", str(a.warmup), "--device", a.device]
        env = dict(os.environ, THP_MEM_ALLOC_ENABLE="1") if a.thp else None
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return json.loads(out.stdout.strip().splitlines()[-1])

    bf16 = a.bf16 == "yes" or (a.bf16 == "auto" and (a.device.startswith("cuda")
                                                     or resolve_precision("auto", "cpu") == "bf16-mixed"))
    if not bf16:
        print("bf16-mixed skipped: this CPU has no native bfloat16 (AMX or AVX512-BF16); --bf16 yes to force it")
    impls = ["pcfunc"] + (["pcfunc-bf16"] if bf16 else []) + ([] if a.skip_naive else ["naive"])
    print("\nEach cell: median time, process peak RSS (+ what the workload added to the process after setup).")
    print("\n| workload | B | pcfunc float32 | pcfunc bf16-mixed | reference code's way | speed-up (f32 / bf16) |")
    print("| --- | --- | --- | --- | --- | --- |")
    steps: dict = {}
    for B in a.batch:
        for w, name in WORKLOADS.items():
            if a.only and w not in a.only:
                continue
            todo = [i for i in impls if not (w == "train_fine" and i == "naive")]
            runs: dict = {i: [] for i in todo}
            for _ in range(max(1, a.rounds)):
                for i in todo:
                    runs[i].append(case(i, w, B))
            r = {i: {"seconds": statistics.median(x["seconds"] for x in v),
                     "peak_rss_mib": max(x["peak_rss_mib"] for x in v),
                     "extra_rss_mib": max(x["extra_rss_mib"] for x in v)} for i, v in runs.items()}
            cell = lambda i: (f"{r[i]['seconds']:.3f} s, {r[i]['peak_rss_mib'] / 1024:.2f} GB "  # noqa: E731
                              f"(+{r[i]['extra_rss_mib'] / 1024:.2f})") if i in r else "-"
            sp = "-" if "naive" not in r else " / ".join(f"{r['naive']['seconds'] / r[i]['seconds']:.1f}x"
                                                         for i in ("pcfunc", "pcfunc-bf16") if i in r)
            if w == "train_fine" and "train" in steps.get(B, {}):
                # Against pcfunc's own coarse-only step (the reference code has no fine supervision).
                sp = "fine / coarse: " + " / ".join(f"{r[i]['seconds'] / steps[B]['train'][i]['seconds']:.2f}x"
                                                    for i in ("pcfunc", "pcfunc-bf16") if i in r)
            steps.setdefault(B, {})[w] = r
            print(f"| {name} | {B} | {cell('pcfunc')} | {cell('pcfunc-bf16')} | {cell('naive')} | {sp} |", flush=True)
    if not a.skip_025:
        r = case("pcfunc", "025", 1)
        mem = (f"peak device memory {r['peak_rss_mib'] / 1024:.2f} GB" if a.device.startswith("cuda") else
               f"process peak RSS {r['peak_rss_mib'] / 1024:.2f} GB (+{r['extra_rss_mib'] / 1024:.2f} GB over the "
               f"process after setup)")
        print(f"\nReconstruction of one sample at 0.25 degrees (721 x 1440, 1,035,362 points with each pole one "
              f"point): {r['seconds']:.1f} s, {mem}")


if __name__ == "__main__":
    main()
