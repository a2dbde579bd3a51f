"""GASP (Dupont et al., a GAN over functions) on real ERA5 2 m temperature: train on the 4-degree globe, then
draw samples at 1 degree, with maps, a PyTorch3D globe and metrics.json.

With no arguments it trains on the real ERA5 sample embedded in pcfunc (24 global fields at 1 degree, regridded to
the papers' 46 x 90 grid) for 2,000 optimiser steps on random 2,048-point subsets, and writes to
outputs/era5_gasp/: metrics.json (the quality harness, pcfunc.evaluation.evaluate_gasp: the
samples' statistics next to the held-out fields' and to what the training fields themselves score),
gasp_samples.png and globe_gasp_sample.png. VaMoH on the same data: examples/era5_sphere.py.

Examples:

    python examples/era5_gasp.py
    python examples/era5_gasp.py --data era5_t2m.nc --config paper --epochs 300
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import pcfunc  # noqa: F401  (before torch: quiets OpenMP's idle threads, pcfunc.OMP_SPIN_COUNT)
import torch

from pcfunc.data import (ERA5_ATTRIBUTION, ERA5Dataset, LatLonGrid, MinMaxNormalizer, ToSymmetric, load_era5,
                         load_era5_sample, pooled_points, regular_axes, split_by_time)

# "paper" is GASP App. A.1 (ERA5); "small" trains in minutes on a CPU (2,048-point subsets); "tiny" is for tests.
CONFIGS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "small": dict(hypernet_hidden=[128, 256], inr_hidden=[64, 64, 64], disc_channels=[16, 32, 64, 128],
                  weight_hidden=[16, 16]),
    "tiny": dict(latent_dim=8, hypernet_hidden=[16], inr_hidden=[16, 16], num_frequencies=16,
                 disc_channels=[4, 8], weight_hidden=[4]),
}
DEFAULT_STEPS = 2000


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="ERA5/CF file (NetCDF or Zarr); default: the sample")
    p.add_argument("--variable", default=None, help="short name, standard_name or long_name (default: the only one)")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small", help="model size (default: small)")
    p.add_argument("--steps", type=int, default=None, help=f"optimiser steps (default: {DEFAULT_STEPS})")
    p.add_argument("--epochs", type=int, default=None, help="training epochs instead of --steps")
    p.add_argument("--minutes", type=float, default=None, help="a wall-time budget instead of --steps")
    p.add_argument("--batch-size", type=int, default=8, help="fields per batch and device (default: 8)")
    p.add_argument("--resolution", type=float, default=4.0, help="training grid spacing in degrees (default: 4)")
    p.add_argument("--no-init", action="store_true", help="start the generator at random (the paper)")
    p.add_argument("--devices", type=int, default=1, help="processes (CPU) or GPUs per node for DDP")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    p.add_argument("--out", type=Path, default=Path("outputs/era5_gasp"), help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--globe-size", type=int, default=320, help="pixels per globe view")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


def train(args: argparse.Namespace, train_set):
    import lightning.pytorch as pl

    from pcfunc.training import FunctionDataModule, GASPModule, fit, make_trainer, training_budget

    pl.seed_everything(args.seed, workers=True, verbose=False)
    module = GASPModule.from_config("era5", num_points=None if args.config == "paper" else 2048, seed=args.seed,
                                    **CONFIGS[args.config])
    if not args.no_init and not args.resume:  # the generator starts at the training fields' mean function
        module.model.initialize_generator(*pooled_points(train_set), generator=torch.Generator().manual_seed(args.seed))
    dm = FunctionDataModule(train_set, batch_size=min(args.batch_size, len(train_set)), seed=args.seed)
    trainer = make_trainer(args.out, checkpoint_every=50, devices=args.devices, accelerator=args.accelerator,
                           log_every=5, progress_bar=not args.no_progress, limit_val_batches=0,
                           **training_budget(DEFAULT_STEPS, args.steps, args.minutes, args.epochs))
    t0 = time.perf_counter()
    resumed = fit(trainer, module, dm, resume=args.resume)
    return module.model.eval(), trainer, time.perf_counter() - t0, resumed


def evaluate(model, field, coarse, n_train: int, norm: MinMaxNormalizer, out: Path, size: int,
             num_samples: int = 32) -> Dict[str, Any]:
    """Samples at the data's resolution: maps, a globe, and their statistics next to the held-out fields'."""
    from pcfunc.evaluation import evaluate_gasp
    from pcfunc.render import Panel, plot_panels, render_sphere

    fine, coarse_grid = LatLonGrid(field.lat, field.lon), LatLonGrid(coarse.lat, coarse.lon)
    samples = model.sample(num_samples, fine.pos, generator=torch.Generator().manual_seed(1))  # [-1, 1]
    kelvin = norm.inverse((samples[..., 0] + 1) / 2).double()
    truth = fine.to_batch(torch.as_tensor(field.values[n_train:]).double()[..., None]).x.view(-1, fine.num_points)
    metrics = {"sample_mean_vs_test_mean_rmse_k": float((kelvin.mean(0) - truth.mean(0)).pow(2).mean().sqrt()),
               "sample_spread_k": float(kelvin.std(0).mean()),
               "test_spread_k": float(truth.std(0).mean()) if len(truth) > 1 else float("nan"),
               "samples": num_samples}
    label = f"{field.variable} [{field.units}]" if field.units else field.variable
    arr = lambda v: fine.to_array(v.reshape(-1, 1).float())[..., 0].numpy()  # noqa: E731
    panels = [Panel(arr(truth[0]), "ERA5 test field", label=label)]
    panels += [Panel(arr(kelvin[i]), f"GASP sample {i + 1}", label=label) for i in range(3)]
    plot_panels(panels, fine.lat, fine.lon, out / "gasp_samples.png", ncols=2,
                suptitle="GASP samples (drawn at the data's resolution)", attribution=ERA5_ATTRIBUTION)
    z = model.sample_latent(1, torch.Generator().manual_seed(1))
    with torch.no_grad():
        render_sphere(lambda xyz: norm.inverse((model.generate(z, xyz.to(fine.pos.dtype))[0, :, 0] + 1) / 2),
                      out=out / "globe_gasp_sample.png", image_size=size, vmin=float(truth.min()),
                      vmax=float(truth.max()), label=label,
                      title="GASP sample, the INR evaluated at the globe's vertices")

    def to_pts(v):
        return coarse_grid.to_points(torch.as_tensor(norm.transform(v, clip=True), dtype=torch.float32))

    # With the training fields, the report also holds what a perfect sampler of them would score.
    test = coarse.values[n_train:]
    quality = evaluate_gasp(model, coarse_grid, to_pts(test), train=to_pts(coarse.values[:n_train]) if n_train >= 2
                            else None, num_samples=num_samples, transform=lambda v: (v + 1) / 2,
                            scale=norm.range) if len(test) >= 2 else None
    return {"metrics": metrics, "figures": ["gasp_samples.png", "globe_gasp_sample.png"], "quality": quality}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    field = load_era5_sample() if args.data is None else load_era5(args.data, args.variable)
    coarse = field.regrid(*regular_axes(args.resolution, field.lat, field.lon))
    if coarse.values.shape[0] < 3:
        raise SystemExit(f"need at least 3 time steps to train and test, the data has {coarse.values.shape[0]}")
    train_f, _ = split_by_time(coarse, (0.75, 0.25))
    n_train = train_f.values.shape[0]
    norm = MinMaxNormalizer.fit(train_f)
    model, trainer, train_s, resumed = train(args, ERA5Dataset(train_f, norm, transform=ToSymmetric()))
    if trainer.global_rank != 0:
        return {}
    res = evaluate(model, field, coarse, n_train, norm, args.out, args.globe_size)
    summary = {"data": "embedded ERA5 sample" if args.data is None else str(args.data), "variable": field.variable,
               "units": field.units, "train_fields": n_train, "test_fields": int(coarse.values.shape[0] - n_train),
               "model": "gasp", "config": args.config, "steps": int(trainer.global_step),
               "train_seconds": round(train_s, 1), "total_seconds": round(time.perf_counter() - t_start, 1),
               "resumed_from": None if resumed is None else str(resumed), "normalisation_k": norm.to_dict(),
               "metrics": res["metrics"], "quality": res["quality"], "figures": res["figures"],
               "attribution": ERA5_ATTRIBUTION}
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2))
    if res["quality"] is not None:
        from pcfunc.evaluation import format_report

        print(format_report(res["quality"], field.units or ""))
    print(json.dumps(res["metrics"], indent=2))
    print(f"trained {summary['steps']} optimiser steps in {summary['train_seconds']} s; wrote {args.out}")
    return summary


if __name__ == "__main__":
    main()
