"""VaMoH on real ERA5 2 m temperature: train on the 4-degree globe, then generate, reconstruct,
super-resolve to 1 degree and in-paint, with rendered globes, maps and ``metrics.json``.

With no arguments it trains on the real ERA5 sample embedded in pcfunc (24 global fields at 1 degree,
regridded to the papers' 46 x 90 grid) for 1,500 optimiser steps (6-8 minutes in all on two CPU cores),
evaluates on held-out times, and writes to ``outputs/era5_sphere/``:

* ``metrics.json``: the quality harness (:func:`pcfunc.evaluation.evaluate_vamoh`, key ``quality``): PSNR
  (VaMoH App. B.3, on data normalised to [0, 1]) and RMSE in kelvin of every task on the test fields, next
  to the baselines on the same points (the training mean, PCA with as many components as the latent,
  bilinear interpolation of the 4-degree field for super-resolution, the zonal mean of the observed points
  for in-painting), and the model's health (active latent dimensions, mixture usage, prior-sample spread);
* ``tasks.png``: maps of the truth, the inputs (hidden points greyed) and the predictions, the
  uncertainty (predictive standard deviation) and the mixture's entropy and segmentation;
* ``globe_*.png``: PyTorch3D globes of the truth, the reconstruction, the super-resolved INR
  evaluated at the icosphere's vertices, in-painting, a sample from the prior and the mixture's
  entropy;
* ``checkpoints/`` and ``logs/`` (CSV and TensorBoard) of the run; ``--resume`` continues it.

Examples::

    python examples/era5_sphere.py                      # embedded sample, 1,500 steps
    python examples/era5_sphere.py --data era5_t2m.nc   # a CDS download (NetCDF or Zarr), any resolution
    python examples/era5_sphere.py --config paper --epochs 600 --devices 2
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from pcfunc.data import (ERA5_ATTRIBUTION, ERA5Dataset, LatLonGrid, MinMaxNormalizer, load_era5, load_era5_sample,
                         ToSymmetric, regular_axes, split_by_time)
from pcfunc.manifolds import latlon_to_xyz, xyz_to_latlon
from pcfunc.models import VaMoH, vamoh_config

# Model sizes. "paper" is VaMoH Table 3 (ERA5 column). "small" keeps its structure (PointConv encoder
# with 1024/256/64/16 centroids and 9 neighbours, K = 3 hypergenerators with 128 Fourier features,
# a 10-layer planar flow) at widths that train in minutes on two CPU cores, plus a base function (one
# shared INR of 3 x 128 units on 256 Fourier features) for the fine detail all fields share. "tiny" is
# for tests.
CONFIGS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "small": dict(encoder=[dict(out_channels=32, num_neighbors=9, num_centroids=1024),
                           dict(out_channels=64, num_neighbors=9, num_centroids=256),
                           dict(out_channels=128, num_neighbors=9, num_centroids=64),
                           dict(out_channels=32, num_neighbors=9, num_centroids=16)],
                  weight_hidden=[16, 16], hypernet_hidden=[128, 256], generator_hidden=[32, 32, 32],
                  likelihood="gaussian", max_dropout=0.0, base_hidden=[128, 128, 128]),
    "tiny": dict(encoder=[dict(out_channels=8, num_neighbors=9, num_centroids=256),
                          dict(out_channels=8, num_neighbors=9, num_centroids=16)],
                 weight_hidden=[8], latent_dim=8, hypernet_hidden=[16], generator_hidden=[16],
                 num_frequencies=16, categorical_hidden=[8], flow_layers=2, likelihood="gaussian"),
}
# GASP sizes: "paper" is App. A.1 (ERA5); "small" trains in minutes on a CPU (2,048-point subsets).
GASP_CONFIGS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "small": dict(hypernet_hidden=[128, 256], inr_hidden=[64, 64, 64], disc_channels=[16, 32, 64, 128],
                  weight_hidden=[16, 16]),
    "tiny": dict(latent_dim=8, hypernet_hidden=[16], inr_hidden=[16, 16], num_frequencies=16,
                 disc_channels=[4, 8], weight_hidden=[4]),
}
DEFAULT_STEPS = 1500
DEFAULT_REFINE = 100
DEFAULT_FINE_POINTS = 4096
RESIDUAL_NEIGHBORS = 4  # super-resolution: the model plus its residuals at the 4 nearest coarse points
DEFAULT_GASP_STEPS = 2000
PATCH = (45.0, -100.0, 30.0)  # centre latitude, longitude and great-circle radius (degrees): North America


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["vamoh", "gasp"], default="vamoh",
                   help="vamoh (default): all tasks; gasp: the GAN of Dupont et al., samples only")
    p.add_argument("--data", type=Path, default=None,
                   help="ERA5 file from the CDS (NetCDF with time dimension valid_time or time, or Zarr); "
                        "default: the real sample embedded in pcfunc")
    p.add_argument("--variable", default=None,
                   help="variable to model: short name, CF standard_name or long_name (default: the file's only "
                        "lat/lon field, else t2m)")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small",
                   help="model size: small (default, minutes on a CPU), paper (VaMoH Table 3), tiny (tests)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"optimiser steps (default: {DEFAULT_STEPS} for VaMoH, {DEFAULT_GASP_STEPS} for GASP, so that "
                        "every machine trains the same model; about 8 minutes on 2 CPU cores)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs instead of --steps")
    p.add_argument("--minutes", type=float, default=None, help="a wall-time budget instead of --steps")
    p.add_argument("--batch-size", type=int, default=8, help="fields per batch and device (default: 8)")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: 1e-3, paper: 1e-4)")
    p.add_argument("--warmup-steps", type=int, default=150,
                   help="steps with the N(0, I) prior before the flow prior (Algorithm 1)")
    p.add_argument("--precision", choices=["auto", "32-true", "bf16-mixed"], default="auto",
                   help="bf16-mixed runs the networks in bfloat16 under autocast (about 1.5x faster training on "
                        "CPUs with AMX or AVX512-BF16, slower on others); densities and KL terms stay float32. "
                        "auto (default): bf16-mixed where the CPU or GPU supports bfloat16 natively, else 32-true")
    p.add_argument("--likelihood", default=None, choices=["gaussian", "continuous_bernoulli"],
                   help="VaMoH's per-point likelihood (default: gaussian with a learned scale for small/tiny; the "
                        "paper's continuous_bernoulli for --config paper)")
    p.add_argument("--refine-steps", type=int, default=DEFAULT_REFINE,
                   help=f"steps refining q(z) on each field's observed points at inference (default: {DEFAULT_REFINE}; "
                        "0: the encoder alone, as in the paper)")
    p.add_argument("--fine-points", type=int, default=None,
                   help="fine supervision: evaluate the likelihood at this many random points per field of the "
                        f"data's own grid while the encoder sees the training grid (default: {DEFAULT_FINE_POINTS} "
                        "when the data are finer than the training grid; 0: the paper's training on the training "
                        "grid alone)")
    p.add_argument("--predictive-samples", type=int, default=16,
                   help="posterior draws for the predictive intervals (coverage and CRPS, calibrated on the first "
                        "third of the held-out fields); 0: none (default: 16)")
    p.add_argument("--no-init", action="store_true",
                   help="start the generators at random (the paper) instead of at the training data's mean function")
    p.add_argument("--resolution", type=float, default=4.0, help="training grid spacing in degrees (default: 4)")
    p.add_argument("--region", type=float, nargs=4, metavar=("SOUTH", "NORTH", "WEST", "EAST"), default=None,
                   help="keep to this lat/lon box of the data (degrees; WEST > EAST crosses 0 or 180); a regional "
                        "file is detected and kept to its own box without it")
    p.add_argument("--devices", type=int, default=1, help="processes (CPU) or GPUs per node for DDP")
    p.add_argument("--num-nodes", type=int, default=1, help="nodes for DDP")
    p.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    p.add_argument("--out", type=Path, default=Path("outputs/era5_sphere"), help="output directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--globe-size", type=int, default=320, help="pixels per globe view")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------ data
def load_field(args: argparse.Namespace):
    """The data (on its own grid, cut to ``--region``) and the training grid over the same box: the globe, or a
    regional box with its edges kept."""
    field = load_era5_sample() if args.data is None else load_era5(args.data, args.variable)
    if args.region is not None:
        south, north, west, east = args.region
        field = field.region((south, north), (west, east))
    return field, field.regrid(*regular_axes(args.resolution, field.lat, field.lon))


# ------------------------------------------------------------------------------------------------ main
def budget(args: argparse.Namespace, default_steps: int) -> Dict[str, Any]:
    """Trainer limits: optimiser steps by default (the same model on every machine); epochs or wall time on request."""
    from pcfunc.training import training_budget

    return training_budget(default_steps, args.steps, args.minutes, args.epochs)


def train(args: argparse.Namespace, train_set, val_set, out: Path):
    import lightning.pytorch as pl

    from pcfunc.training import FunctionDataModule, VaMoHModule, fit, make_trainer

    pl.seed_everything(args.seed, workers=True, verbose=False)
    overrides = dict(CONFIGS[args.config])
    lr = args.lr if args.lr is not None else (vamoh_config("era5")["training"]["lr"] if args.config == "paper"
                                              else 1e-3)
    if args.likelihood is not None:
        overrides["likelihood"] = args.likelihood
    module = VaMoHModule.from_config("era5", lr=lr, warmup_steps=args.warmup_steps, seed=args.seed, **overrides)
    if not args.no_init and not args.resume:
        # Start every generator at the function that best explains the pooled training points (and the
        # likelihood's scale at their spread): training then spends its steps on what tells fields apart.
        # Under fine supervision, the points the likelihood will see: each field's random fine points.
        key = "target_" if getattr(train_set, "target", None) is not None else ""
        pos = torch.cat([getattr(train_set[i], key + "pos") for i in range(len(train_set))])
        y = torch.cat([getattr(train_set[i], key + "x") for i in range(len(train_set))])
        module.model.initialize_generators(pos, y, generator=torch.Generator().manual_seed(args.seed))
    dm = FunctionDataModule(train_set, val_set, batch_size=min(args.batch_size, len(train_set)), seed=args.seed)
    limits = budget(args, DEFAULT_STEPS)
    trainer = make_trainer(out, checkpoint_every=50, devices=args.devices, num_nodes=args.num_nodes,
                           accelerator=args.accelerator, gradient_clip_val=1000.0, log_every=5,
                           progress_bar=not args.no_progress, val_every_epochs=5, precision=args.precision_used,
                           **limits)
    budget_text = ", ".join(f"{k}={v}" for k, v in limits.items() if v not in (None, -1))
    print(f"training VaMoH ({args.config}) on {len(train_set)} fields, precision {args.precision_used}, "
          f"{budget_text}", flush=True)
    t0 = time.perf_counter()
    resumed = fit(trainer, module, dm, resume=args.resume)
    return module.model.eval(), trainer, time.perf_counter() - t0, resumed


def train_gasp(args: argparse.Namespace, train_set, out: Path):
    import lightning.pytorch as pl

    from pcfunc.training import FunctionDataModule, GASPModule, fit, make_trainer

    pl.seed_everything(args.seed, workers=True, verbose=False)
    module = GASPModule.from_config("era5", num_points=None if args.config == "paper" else 2048, seed=args.seed,
                                    **GASP_CONFIGS[args.config])
    if not args.no_init and not args.resume:
        # The generator starts at the training fields' mean function; the game then learns what varies.
        items = [train_set[i] for i in range(len(train_set))]
        module.model.initialize_generator(torch.cat([d.pos for d in items]), torch.cat([d.x for d in items]),
                                          generator=torch.Generator().manual_seed(args.seed))
    dm = FunctionDataModule(train_set, batch_size=min(args.batch_size, len(train_set)), seed=args.seed)
    limits = budget(args, DEFAULT_GASP_STEPS)
    trainer = make_trainer(out, checkpoint_every=50, devices=args.devices, num_nodes=args.num_nodes,
                           accelerator=args.accelerator, log_every=5, progress_bar=not args.no_progress,
                           limit_val_batches=0, **limits)
    t0 = time.perf_counter()
    resumed = fit(trainer, module, dm, resume=args.resume)
    return module.model.eval(), trainer, time.perf_counter() - t0, resumed


def evaluate_gasp(model, field, coarse, test_idx: np.ndarray, norm: MinMaxNormalizer, out: Path, size: int,
                  num_samples: int = 32) -> Dict[str, Any]:
    """Samples at 1 degree: maps, a globe, and their statistics next to the held-out fields'."""
    from pcfunc.render import Panel, plot_panels, render_sphere

    fine = LatLonGrid(field.lat, field.lon)
    samples = model.sample(num_samples, fine.pos, generator=torch.Generator().manual_seed(1))  # [-1, 1]
    kelvin = norm.inverse((samples[..., 0] + 1) / 2).double()
    truth = torch.as_tensor(field.values[test_idx]).double()
    truth_pts = fine.to_batch(truth[..., None]).x.view(len(test_idx), -1)
    metrics = {
        "sample_mean_vs_test_mean_rmse_k": float((kelvin.mean(0) - truth_pts.mean(0)).pow(2).mean().sqrt()),
        "sample_spread_k": float(kelvin.std(0).mean()),
        "test_spread_k": float(truth_pts.std(0).mean()) if len(test_idx) > 1 else float("nan"),
        "samples": num_samples,
    }
    label = f"{field.variable} [{field.units}]" if field.units else field.variable
    arr = lambda v: fine.to_array(v.reshape(-1, 1).float())[..., 0].numpy()  # noqa: E731
    panels = [Panel(arr(truth_pts[0]), "ERA5 test field (1°)", label=label)]
    panels += [Panel(arr(kelvin[i]), f"GASP sample {i + 1}", label=label) for i in range(3)]
    plot_panels(panels, fine.lat, fine.lon, out / "gasp_samples.png", ncols=2,
                suptitle="GASP samples (trained at 4°, drawn at 1°)", attribution=ERA5_ATTRIBUTION)
    lo, hi = float(truth_pts.min()), float(truth_pts.max())
    z = model.sample_latent(1, torch.Generator().manual_seed(1))

    def f(xyz: torch.Tensor) -> torch.Tensor:
        return norm.inverse((model.generate(z, xyz.to(fine.pos.dtype))[0, :, 0] + 1) / 2)

    with torch.no_grad():
        render_sphere(f, out=out / "globe_gasp_sample.png", image_size=size, vmin=lo, vmax=hi, label=label,
                      title="GASP sample, the INR evaluated at the globe's vertices")
    from pcfunc.evaluation import evaluate_gasp as harness

    g4 = LatLonGrid(coarse.lat, coarse.lon)
    to_pts = lambda v: g4.to_batch(torch.as_tensor(norm.transform(v, clip=True), dtype=torch.float32)[
        ..., None]).x.view(len(v), -1, 1)  # noqa: E731
    n_train = int(test_idx[0])
    # With the training fields, the report also holds what a perfect sampler of them would score.
    quality = harness(model, g4, to_pts(coarse.values[test_idx]),
                      train=to_pts(coarse.values[:n_train]) if n_train >= 2 else None, num_samples=num_samples,
                      transform=lambda v: (v + 1) / 2, scale=norm.high - norm.low) if len(test_idx) >= 2 else None
    return {"metrics": metrics, "figures": ["gasp_samples.png", "globe_gasp_sample.png"], "quality": quality}


def encoder_min_points(config: str) -> int:
    """The fewest points a field needs for the encoder of ``--config`` (its first level's neighbours)."""
    from pcfunc.nn import vamoh_encoder_specs

    encoder = CONFIGS[config].get("encoder")
    return int(encoder[0]["num_neighbors"]) if encoder else vamoh_encoder_specs("era5")[0][0].num_neighbors


def spacing(lat: np.ndarray) -> str:
    """The latitude spacing of a grid in degrees, for names and titles (e.g. ``"4"``, ``"0.25"``, ``"4.09"``)."""
    return f"{round(abs(float(lat[0] - lat[1])), 2):g}" if len(lat) > 1 else "1-row"


def is_global(grid: LatLonGrid) -> bool:
    """Whether the grid covers the globe (longitudes all round, latitudes from pole to pole or nearly)."""
    return grid.is_global_lon and float(grid.lat.max()) - float(grid.lat.min()) > 150.0


def hidden_regions(grid: LatLonGrid) -> Dict[str, torch.Tensor]:
    """The observed points of the two in-painting tasks: all but a disc ("patch": North America on a global grid,
    else a disc at the box's centre, a quarter of its smaller side in radius) and the eastern half ("half": the
    points east of the central meridian of the box, or east of 0/180 on a global grid)."""
    lat, lon = (t.double() for t in xyz_to_latlon(grid.pos.double()))
    if is_global(grid):
        centre_lat, centre_lon, radius = PATCH
        west = torch.remainder(lon, 360.0) >= 180.0
    else:  # a regional box: its longitudes unwrapped east from the western edge
        west_edge = float(grid.lon[0])
        east = torch.remainder(lon - west_edge, 360.0)
        width = float(torch.remainder(grid.lon[-1] - grid.lon[0], 360.0)) if grid.lon.numel() > 1 else 0.0
        centre_lat = 0.5 * (float(grid.lat.max()) + float(grid.lat.min()))
        centre_lon = west_edge + 0.5 * width
        height = float(grid.lat.max()) - float(grid.lat.min())
        radius = 0.25 * min(height, width * math.cos(math.radians(centre_lat))) if width else 0.25 * height
        west = east < 0.5 * width
    centre = latlon_to_xyz(torch.tensor(centre_lat, dtype=torch.float64), torch.tensor(centre_lon, dtype=torch.float64))
    in_patch = torch.acos((grid.pos.double() @ centre).clamp(-1, 1)) < math.radians(radius)
    return {"patch": ~in_patch, "half": ~west}


def evaluate(model: VaMoH, field, coarse, test_idx: np.ndarray, norm: MinMaxNormalizer,
             refine_steps: int = 0, predictive_samples: int = 16) -> Dict[str, Any]:
    """Every task on the test fields by the quality harness (next to its baselines), and the arrays of the first
    test field for the figures."""
    from pcfunc.evaluation import BilinearDownscaling, evaluate_uncertainty, evaluate_vamoh, points_batch

    g4 = LatLonGrid(coarse.lat, coarse.lon)
    fine = LatLonGrid(field.lat, field.lon)
    def to_pts(grid: LatLonGrid, v: np.ndarray) -> torch.Tensor:  # (B, N, 1), missing values NaN
        return grid.to_points(torch.as_tensor(norm.transform(v, clip=True), dtype=torch.float32))

    n_train = int(test_idx[0])
    train4, y4, y1 = to_pts(g4, coarse.values[:n_train]), to_pts(g4, coarse.values[test_idx]), \
        to_pts(fine, field.values[test_idx])
    train1 = to_pts(fine, field.values[:n_train])  # for the bilinear + mean sub-grid residual baseline
    scale = norm.high - norm.low
    masks = hidden_regions(g4)
    quality = evaluate_vamoh(model, g4, train4, y4, masks=masks, fine=(fine, y1, train1), scale=scale, seed=0,
                             refine_steps=refine_steps)
    # Predictive intervals: calibrated on the first third of the held-out fields (neither trained on nor
    # scored), scored on the rest (evaluate_uncertainty).
    n_cal = max(1, len(test_idx) // 3)
    if predictive_samples and len(test_idx) >= 2:
        quality["uncertainty"] = evaluate_uncertainty(
            model, g4, train4, y4[n_cal:], masks={"patch": masks["patch"]}, fine=(fine, y1[n_cal:], train1, y1[:n_cal]),
            calibration=y4[:n_cal], num_samples=predictive_samples, scale=scale, seed=0, refine_steps=refine_steps,
            residual_neighbors=RESIDUAL_NEIGHBORS)
        quality["uncertainty_fields"] = {"calibration": n_cal, "scored": int(len(test_idx) - n_cal)}
    # metrics.json's flat view: task names carry the grids' spacings (4 and 1 degrees by default).
    coarse_deg, fine_deg = f"{spacing(coarse.lat)}deg", f"{spacing(field.lat)}deg"
    t = quality["tasks"]
    flat = lambda d: {"psnr_db": d["psnr"], "rmse_k": d["rmse"], "points": d["points"]}  # noqa: E731
    res: Dict[str, Any] = {
        f"reconstruction_{coarse_deg}": flat(t["reconstruction"]["vamoh"]),
        f"baseline_training_mean_{coarse_deg}": flat(t["reconstruction"]["training_mean"]),
        f"super_resolution_{fine_deg}": flat(t["super_resolution"]["vamoh"]),
        f"super_resolution_residuals_{fine_deg}": flat(t["super_resolution"]["vamoh_residuals"]),
        f"baseline_bilinear_{fine_deg}": flat(t["super_resolution"]["bilinear"]),
        f"baseline_bilinear_mean_residual_{fine_deg}": flat(t["super_resolution"]["bilinear_mean_residual"]),
    }
    for task, rows in quality.get("uncertainty", {}).items():
        for method in ("vamoh_calibrated", "climatology_calibrated", "bilinear_mean_residual_calibrated"):
            if method in rows:
                r = rows[method]
                res[f"uncertainty_{task}_{method}"] = {"coverage_50": r["coverage_50"],
                                                       "coverage_90": r["coverage_90"], "crps_k": r["crps"]}
    for name in masks:
        res[f"inpaint_{name}"] = flat(t[f"inpaint_{name}"]["vamoh"])
        res[f"baseline_zonal_mean_{name}"] = flat(t[f"inpaint_{name}"]["zonal_mean"])
        res[f"baseline_training_mean_{name}"] = flat(t[f"inpaint_{name}"]["training_mean"])
    res["_quality"] = quality

    # The first scored test field (after the calibration fields), for the maps.
    i = n_cal if len(test_idx) >= 2 else 0
    refine = dict(refine_steps=refine_steps, generator=torch.Generator().manual_seed(0)) if refine_steps else {}
    one = points_batch(g4, y4[i:i + 1])
    rec4 = model.reconstruct(one, g4.pos, **refine)[0]
    bil_res = BilinearDownscaling(g4, fine, train4, train1).predict(y4[i:i + 1])[0]
    # The map shows the spread of the inferred function (observation noise left out): zero at the 4-degree
    # points, growing between them where the model is unsure of the sub-grid detail. (With the noise, a
    # homoscedastic scale and a few draws, the map is mostly Monte Carlo speckle; the intervals scored above
    # include it.)
    sr_pred = model.predictive(one, fine.pos, num_samples=32, include_noise=False,
                               generator=torch.Generator().manual_seed(0), refine_steps=refine_steps,
                               residual_neighbors=RESIDUAL_NEIGHBORS)
    preds = {}
    for name, observed in masks.items():
        obs = points_batch(g4, y4[i:i + 1], observed)
        preds[f"inpaint_{name}"] = (model.inpaint(obs, g4.pos, **refine)[0], observed)
    maps = model.component_maps(one, posterior=True)  # at the observed (not missing) points; NaN elsewhere
    valid = ~torch.isnan(y4[i].reshape(-1))
    entropy, seg = (torch.full((g4.num_points,), float("nan"), dtype=torch.float64) for _ in range(2))
    entropy[valid], seg[valid] = maps.entropy[0].double(), maps.segmentation[0].double()
    res["_arrays"] = dict(g4=g4, fine=fine, truth1=y1[i], truth4=y4[i], rec4=rec4, preds=preds,
                          sr_mean=sr_pred.mean[0], sr_std=sr_pred.std[0], bil_res=bil_res,
                          entropy=entropy, seg=seg,
                          latent=model.encode(one)[0])
    return res


def render(model: VaMoH, res: Dict[str, Any], norm: MinMaxNormalizer, out: Path, size: int, units: str,
           variable: str) -> List[str]:
    from pcfunc.evaluation import points_batch
    from pcfunc.render import Panel, plot_panels, render_sphere

    a = res["_arrays"]
    g4, fine = a["g4"], a["fine"]
    K = lambda t: norm.inverse(t.reshape(-1)).float()  # noqa: E731
    arr = lambda grid, v: grid.to_array(v.reshape(-1, 1))[..., 0].numpy()  # noqa: E731
    label = f"{variable} [{units}]" if units else variable
    vmin, vmax = float(np.nanmin(K(a["truth1"]).numpy())), float(np.nanmax(K(a["truth1"]).numpy()))
    scale = norm.high - norm.low
    err_sr = (a["sr_mean"] - a["truth1"]).reshape(-1) * scale
    err_bil = (a["bil_res"] - a["truth1"]).reshape(-1) * scale
    emax = float(torch.cat([err_sr, err_bil]).abs().nanquantile(0.99))
    err = dict(label=f"error [{units}]", scale_group="error", cmap="RdBu_r", vmin=-emax, vmax=emax)
    std_title = "spread of the inferred function"
    cd, fd = f"{spacing(g4.lat.numpy())}°", f"{spacing(fine.lat.numpy())}°"
    panels = [
        Panel(arr(fine, K(a["truth1"])), f"truth ({fd})", label=label),
        Panel(arr(g4, K(a["truth4"])), f"input ({cd})", label=label, lat=g4.lat, lon=g4.lon),
        Panel(arr(g4, K(a["rec4"])), f"reconstruction ({cd})", label=label, lat=g4.lat, lon=g4.lon),
        Panel(arr(fine, K(a["sr_mean"])), f"VaMoH super-resolution ({fd})", label=label),
        Panel(arr(fine, K(a["bil_res"])), f"bilinear + mean sub-grid residual ({fd})", label=label),
        Panel(arr(fine, err_sr), "VaMoH super-resolution − truth", **err),
        Panel(arr(fine, err_bil), "bilinear + mean residual − truth", **err),
        Panel(arr(fine, a["sr_std"].reshape(-1) * scale), f"super-resolution: {std_title}", label=f"std [{units}]",
              scale_group=None, cmap="magma"),
    ]
    for name, title in (("inpaint_patch", "patch"), ("inpaint_half", "western half")):
        pred, observed = a["preds"][name]
        m = arr(g4, observed.float()) > 0.5
        panels.append(Panel(arr(g4, K(a["truth4"])), f"input: {title} hidden", mask=m, label=label,
                            lat=g4.lat, lon=g4.lon))
        panels.append(Panel(arr(g4, K(pred)), f"in-painted: {title}", label=label, lat=g4.lat, lon=g4.lon))
    panels += [
        Panel(arr(g4, a["entropy"]), "entropy of q(c | x, y, z)", label="nats", scale_group=None, cmap="viridis",
              lat=g4.lat, lon=g4.lon),
        Panel(arr(g4, a["seg"]), "segmentation (argmax q(c))", categorical=True,
              num_categories=model.num_components, cmap="tab10", lat=g4.lat, lon=g4.lon),
    ]
    written = []
    plot_panels(panels, fine.lat, fine.lon, out / "tasks.png", ncols=4, suptitle=f"VaMoH on {variable} (test field)",
                attribution=ERA5_ATTRIBUTION)
    written.append("tasks.png")

    # Samples from the prior on the map, at 1 degree.
    samples = model.sample(4, fine.pos, generator=torch.Generator().manual_seed(1))
    plot_panels([Panel(arr(fine, K(s)), f"sample {i + 1}", label=label) for i, s in enumerate(samples)],
                fine.lat, fine.lon, out / "samples.png", ncols=2, suptitle=f"VaMoH samples from the flow prior ({fd})",
                attribution=ERA5_ATTRIBUTION)
    written.append("samples.png")

    globes = {
        "globe_truth.png": (K(a["truth1"]), fine.pos, f"truth, {fd}"),
        "globe_super_resolution.png": (None, None, f"VaMoH super-resolution at the globe's vertices (from {cd})"),
        "globe_bilinear_mean_residual.png": (K(a["bil_res"]), fine.pos, f"bilinear + mean sub-grid residual, {fd}"),
        "globe_inpaint_half.png": (K(a["preds"]["inpaint_half"][0]), g4.pos, "in-painted from the eastern half"),
        "globe_reconstruction.png": (K(a["rec4"]), g4.pos, f"reconstruction of the {cd} field"),
        "globe_sample.png": (K(samples[0]), fine.pos, "sample from the prior"),
    }
    one = points_batch(g4, a["truth4"][None])
    views = globe_views(fine)
    for name, (values, pos, title) in globes.items():
        if values is None:
            def f(xyz: torch.Tensor) -> torch.Tensor:  # the model and its interpolated residuals, at any point
                return K(model.reconstruct(one, xyz.to(g4.pos.dtype), residual_neighbors=RESIDUAL_NEIGHBORS))
            render_sphere(f, fine.pos, out=out / name, image_size=size, vmin=vmin, vmax=vmax, label=label,
                          title=title, views=views)
        else:
            render_sphere(values, pos, out=out / name, image_size=size, vmin=vmin, vmax=vmax, label=label,
                          title=title, views=views)
        written.append(name)
    render_sphere(a["entropy"].reshape(-1), g4.pos, out=out / "globe_entropy.png", image_size=size, cmap="viridis",
                  label="entropy of q(c | x, y, z) [nats]", title="mixture entropy per point", views=views)
    written.append("globe_entropy.png")
    render_sphere(err_sr, fine.pos, out=out / "globe_super_resolution_error.png", image_size=size, cmap="RdBu_r",
                  vmin=-emax, vmax=emax, label=f"error [{units}]", title=f"VaMoH super-resolution − truth, {fd}",
                  views=views)
    render_sphere(err_bil, fine.pos, out=out / "globe_bilinear_mean_residual_error.png", image_size=size,
                  cmap="RdBu_r", vmin=-emax, vmax=emax, label=f"error [{units}]",
                  title=f"bilinear + mean residual − truth, {fd}", views=views)
    render_sphere(a["sr_std"].reshape(-1) * scale, fine.pos, out=out / "globe_super_resolution_std.png",
                  image_size=size, cmap="magma", label=f"std [{units}]", title=f"super-resolution: {std_title}",
                  views=views)
    written += ["globe_super_resolution_error.png", "globe_bilinear_mean_residual_error.png",
                "globe_super_resolution_std.png"]
    return written


def globe_views(grid: LatLonGrid):
    """The globes' camera directions: pcfunc's defaults on a global grid; on a regional box, its centre and
    40 degrees to either side; on a polar cap, the pole and two sides (the sphere away from the data is grey)."""
    from pcfunc.render import DEFAULT_VIEWS

    if is_global(grid):
        return DEFAULT_VIEWS
    centre = grid.pos.double().mean(0, keepdim=True)
    lat, lon = xyz_to_latlon(centre / centre.norm(dim=-1, keepdim=True))
    c_lat, c_lon = float(lat[0]), float(lon[0])
    if grid.is_global_lon:  # a polar cap or a latitude band: from the pole (or the equator) and two sides
        pole = math.copysign(90.0, c_lat) if abs(c_lat) > 45.0 else 0.0
        side = math.copysign(45.0, c_lat) if pole else 0.0
        return (("centre", pole, 0.0), ("lon 0", side, 0.0), ("lon 180", side, 180.0))
    return (("box centre", c_lat, c_lon), ("from the west", c_lat, c_lon - 40.0),
            ("from the east", c_lat, c_lon + 40.0))


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    from pcfunc.training import resolve_precision

    args.precision_used = resolve_precision(args.precision, args.accelerator)
    t_start = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    field, coarse = load_field(args)
    n = coarse.values.shape[0]
    if n < 3:
        raise SystemExit(f"need at least 3 time steps to train and test, the data has {n}")
    train_f, test_f = split_by_time(coarse, (0.75, 0.25))
    n_train = train_f.values.shape[0]
    test_idx = np.arange(n_train, n)
    norm = MinMaxNormalizer.fit(train_f)
    # Keep test values inside [0, 1] for the continuous Bernoulli: clip to the training range.
    norm_test = norm
    if args.model == "gasp":
        model, trainer, train_s, resumed = train_gasp(args, ERA5Dataset(train_f, norm, transform=ToSymmetric()), out)
        if trainer.global_rank != 0:
            return {}
        t_render = time.perf_counter()
        res = evaluate_gasp(model, field, coarse, test_idx, norm, out, args.globe_size)
        metrics, written, quality = res["metrics"], res["figures"], res.get("quality")
    else:
        fine_kw: Dict[str, Any] = {}
        finer = field.shape[0] * field.shape[1] > coarse.shape[0] * coarse.shape[1]
        if args.fine_points is None:
            args.fine_points = DEFAULT_FINE_POINTS if finer else 0
        if args.fine_points:
            if not finer:
                raise SystemExit(f"--fine-points needs data finer than the {args.resolution}-degree training grid")
            fine_kw = dict(target=split_by_time(field, (0.75, 0.25))[0], target_points=args.fine_points,
                           generator=torch.Generator().manual_seed(args.seed))
        # Fields with missing values (NaN) keep their valid points; one with too few for the encoder's first level
        # is skipped, with a warning naming its time.
        min_points = encoder_min_points(args.config)
        train_set = ERA5Dataset(train_f, norm, min_points=min_points, **fine_kw)
        val_set = ERA5Dataset(test_f, norm, clip=True, min_points=min_points)
        model, trainer, train_s, resumed = train(args, train_set, val_set, out)
        if trainer.global_rank != 0:
            return {}
        res = evaluate(model, field, coarse, test_idx, norm_test, refine_steps=args.refine_steps,
                       predictive_samples=args.predictive_samples)
        t_render = time.perf_counter()
        written = render(model, res, norm, out, args.globe_size, field.units, field.variable)
        metrics = {k: v for k, v in res.items() if not k.startswith("_")}
        quality = res["_quality"]
    summary = {
        "data": "embedded ERA5 sample" if args.data is None else str(args.data),
        "variable": field.variable, "units": field.units,
        "train_fields": int(n_train), "test_fields": int(len(test_idx)),
        "train_grid": list(coarse.shape), "truth_grid": list(field.shape),
        "model": args.model, "config": args.config, "precision": args.precision_used,
        "fine_points": getattr(args, "fine_points", None),
        "steps": int(trainer.global_step), "epochs": int(trainer.current_epoch),
        "train_seconds": round(train_s, 1), "render_seconds": round(time.perf_counter() - t_render, 1),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "resumed_from": None if resumed is None else str(resumed),
        "normalisation_k": norm.to_dict(), "psnr_definition": "VaMoH App. B.3 on data normalised to [0, 1]",
        "metrics": metrics, "quality": quality, "figures": written, "attribution": ERA5_ATTRIBUTION,
    }
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    if quality is not None:
        from pcfunc.evaluation import format_report

        print(format_report(quality, field.units or ""))
    else:
        print(json.dumps(metrics, indent=2))
    print(f"trained {summary['steps']} optimiser steps in {summary['train_seconds']} s")
    print(f"wrote {out / 'metrics.json'} and {len(written)} figures in {summary['total_seconds']} s")
    return summary


if __name__ == "__main__":
    main()
