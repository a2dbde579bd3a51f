"""GASP, the paper's ERA5 configuration (App. A.1), one full training step on the 46 x 90 grid.

A training step is a discriminator step (GAN loss on a real batch and as many fakes, plus the R1 penalty
on the real features: a double backward) and a generator step (non-saturating loss through the
discriminator), each followed by its Adam update. pcfunc's ``GASP`` runs it next to a naive reference in
the style of the original code, in the same process, with the same weights:

* the discriminator recomputes neighbours on every call (a Python FPS loop and ``cdist`` + ``topk``,
  ``benchmarks/layers.py``);
* the generator evaluates the INR with a Python loop over the batch, Fourier features recomputed per sample.

Both run on all 3,962 points; pcfunc also with a random subset of 2,048 points shared by the batch.
Timings are medians after a warm run, at 2 threads. For scale, the issue quotes about 2.9 s for the
GASP reference code's discriminator step alone at batch 16 on this machine.

Run: ``bash scripts/run python benchmarks/gasp.py [--batch 16] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import median_seconds  # noqa: E402
from layers import naive_net  # noqa: E402

from pcfunc.data import LatLonGrid, MinMaxNormalizer, load_era5_sample  # noqa: E402
from pcfunc.models import GASP  # noqa: E402


def naive_generate(model: GASP, z: Tensor, pos: Tensor) -> Tensor:
    inr = model.hypernet.target
    weights = model.hypernet(z)
    outs = []
    for w in weights:
        h = inr.encoding(pos)
        layers = inr.split_weights(w)
        for i, (W, b) in enumerate(layers):
            h = F.linear(h, W, b)
            if i < len(layers) - 1:
                h = F.leaky_relu(h, 0.1)
        outs.append(torch.tanh(h))
    return torch.stack(outs)


def naive_step(model: GASP, y: Tensor, pos: Tensor, opt_g, opt_d) -> None:
    B = y.size(0)
    padded = pos[None].expand(B, -1, -1)
    disc = model.discriminator
    # Discriminator: real with R1 (double backward), fakes without generator gradients.
    real = y.detach().requires_grad_(True)
    real_logit = naive_net(disc, real, padded).squeeze(-1)
    (grad,) = torch.autograd.grad(real_logit.sum(), real, create_graph=True)
    with torch.no_grad():
        fake = naive_generate(model, torch.randn(B, model.latent_dim), pos)
    fake_logit = naive_net(disc, fake, padded).squeeze(-1)
    loss = F.softplus(-real_logit).mean() + F.softplus(fake_logit).mean() \
        + model.r1_weight * 0.5 * grad.square().sum() / B
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    # Generator.
    fake = naive_generate(model, torch.randn(B, model.latent_dim), pos)
    g_loss = F.softplus(-naive_net(disc, fake, padded).squeeze(-1)).mean()
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()


def pcfunc_step(model: GASP, batch, opt_g, opt_d, num_points: Optional[int]) -> None:
    terms = model.discriminator_loss(batch, num_points=num_points)
    opt_d.zero_grad(set_to_none=True)
    terms.loss.backward()
    opt_d.step()
    # As GASPModule: the discriminator is frozen during the generator step.
    model.discriminator.requires_grad_(False)
    g_loss = model.generator_loss(batch, num_points=num_points)
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    model.discriminator.requires_grad_(True)
    opt_g.step()


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[16])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    field = load_era5_sample().subsample(4)
    grid = LatLonGrid(field.lat, field.lon)
    norm = MinMaxNormalizer.fit(field)
    model = GASP.from_config("era5").train()
    betas = (0.5, 0.999)
    opt_g = torch.optim.Adam(model.hypernet.parameters(), lr=1e-4, betas=betas)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=4e-4, betas=betas)
    print(f"GASP ERA5 (App. A.1): generator {sum(q.numel() for q in model.hypernet.parameters()):,} and "
          f"discriminator {sum(q.numel() for q in model.discriminator.parameters()):,} parameters; "
          f"{grid.num_points} points; {a.threads} threads")
    print("\n| workload | B | pcfunc | naive reference | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    for B in a.batch:
        vals = norm.transform(field.values[[i % field.values.shape[0] for i in range(B)]]) * 2 - 1
        batch = grid.to_batch(vals)
        y = batch.x.view(B, -1, 1)
        t_ref = median_seconds(lambda: naive_step(model, y, grid.pos, opt_g, opt_d), max(1, a.repeat - 1))
        t_all = median_seconds(lambda: pcfunc_step(model, batch, opt_g, opt_d, None), a.repeat)
        t_sub = median_seconds(lambda: pcfunc_step(model, batch, opt_g, opt_d, 2048), a.repeat)
        print(f"| full training step (D + R1, G), all {grid.num_points} points | {B} | {t_all:.3f} s | "
              f"{t_ref:.3f} s | {t_ref / t_all:.1f}x |", flush=True)
        print(f"| full training step, 2,048-point subset shared by the batch | {B} | {t_sub:.3f} s | - | - |",
              flush=True)


if __name__ == "__main__":
    main()
