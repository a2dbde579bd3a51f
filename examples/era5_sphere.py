"""VaMoH on real ERA5 2 m temperature: train on the 4-degree globe, then generate, reconstruct, super-resolve to
1 degree and in-paint; write metrics.json, maps and PyTorch3D globes.

With no arguments it trains on the ERA5 sample embedded in pcfunc (24 global fields at 1 degree, regridded to the
papers' 46 x 90 grid) for a budget that follows the data (pcfunc.training.data_budget: here at most 1,500
steps, stopped early once the PSNR on the end of the training period stops improving; the best validation's model is
kept, the PCA it starts from included) and writes outputs/era5_sphere/: the
quality harness on held-out times next to its baselines, calibrated predictive intervals and the model's health
(metrics.json, pcfunc.evaluation.evaluate_vamoh), tasks.png and samples.png, globe_*.png
(the super-resolved INR at the icosphere's vertices), predictions.nc (the first test field's predictions in
the data's units, with coordinates and attribution), model.ckpt (the model evaluated: the best validation's),
checkpoints/ (the last steps'; --resume continues from them) and logs/.
GASP on the same data: examples/era5_gasp.py. Examples:

    python examples/era5_sphere.py                      # embedded sample, at most 1,500 steps
    python examples/era5_sphere.py --data era5_t2m.nc   # a CDS download (NetCDF or Zarr), any resolution
    python examples/era5_sphere.py --config paper --epochs 600 --devices 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pcfunc  # noqa: F401  (before torch: quiets OpenMP's idle threads, pcfunc.OMP_SPIN_COUNT)
import torch

from pcfunc.data import (ERA5_ATTRIBUTION, ERA5Dataset, LatLonGrid, MinMaxNormalizer, load_era5, load_era5_sample,
                         pooled_points, regular_axes, split_by_time)
from pcfunc.evaluation import (BilinearDownscaling, choose_refine_steps, evaluate_vamoh, flat_report, format_report,
                               inpainting_masks, points_batch, task_predictions)
from pcfunc.models import VaMoH, vamoh_config
from pcfunc.nn import vamoh_encoder_specs

# "paper" is VaMoH Table 3 (ERA5). "small" keeps its structure (PointConv encoder with 1024/256/64/16 centroids and
# 9 neighbours, K = 3 hypergenerators on 128 Fourier features, a 10-layer planar flow) at widths that train in
# minutes on two CPU cores, plus a base function (one shared INR) for the detail all fields share; under fine
# supervision on a global grid, a base table on the data's grid and smoother generators instead (TABLE). "tiny": tests.
# Every configuration but "paper" adds linear factors on the training grid started at the training fields' PCA
# (VaMoH(factor_grid=...), initialize_factors): the hypergenerators then learn what the best linear model leaves.
# The Gaussian's location is the generators' raw output (no sigmoid): a model still at its PCA start is then PCA
# itself, and its posterior mode a ridge fit (measured: in-paints the embedded sample 0.1-0.2 dB better than
# through a sigmoid, the winds the same; docs "Scaling up").
GAUSSIAN = ("gaussian", {"link": "identity"})
LIKELIHOODS = {"gaussian": GAUSSIAN, "continuous_bernoulli": "continuous_bernoulli"}
CONFIGS: Dict[str, Dict[str, Any]] = {
    "paper": {},
    "small": dict(encoder=[dict(out_channels=c, num_neighbors=9, num_centroids=m)
                           for c, m in ((32, 1024), (64, 256), (128, 64), (32, 16))],
                  weight_hidden=[16, 16], hypernet_hidden=[128, 256], generator_hidden=[32, 32, 32],
                  likelihood=GAUSSIAN, max_dropout=0.0, base_hidden=[128, 128, 128]),
    "tiny": dict(encoder=[dict(out_channels=8, num_neighbors=9, num_centroids=256),
                          dict(out_channels=8, num_neighbors=9, num_centroids=16)],
                 weight_hidden=[8], latent_dim=8, hypernet_hidden=[16], generator_hidden=[16],
                 num_frequencies=16, categorical_hidden=[8], flow_layers=2, likelihood=GAUSSIAN),
}
TABLE = dict(base_hidden=None, sigma=0.5)  # + base_grid: the data's grid (the static fine detail held exactly)
PATIENCE, DEFAULT_REFINE, DEFAULT_FINE_POINTS = 8, 10, 4096
# Validation: the last 15% of the training period (at least one field), held out of training. Early stopping and the
# choice of the model returned (the best validation's, the PCA start included) are fitted to it; the test fields
# (the last quarter) stay unseen until the harness.
VAL_FRACTION = 0.15
# Super-resolution: the model plus its residuals at the coarse points, interpolated by a local linear RBF.
RESIDUALS = dict(residual_neighbors=16, residual_kernel="linear")


def phase(args: argparse.Namespace, name: Optional[str], what: str = "") -> None:
    """Say what starts now; the phase before it ends here (its wall time goes to ``metrics.json``: ``phases``)."""
    now = time.perf_counter()
    took = ""
    if getattr(args, "_phase", None):
        args.phases[args._phase[0]] = round(now - args._phase[1], 1)
        took = f" ({args._phase[0]}: {args.phases[args._phase[0]]} s)"
    args._phase = (name, now) if name else None
    if not args.quiet and (name or took):
        print(f"[{name}] {what}{took}" if name else f"[done]{took}", flush=True)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arg = p.add_argument
    arg("--data", type=Path, default=None, help="ERA5/CF file (NetCDF or Zarr); default: the embedded sample")
    arg("--variable", nargs="+", default=None, help="short name, CF standard_name or long_name (default: the only "
        "field); several (--variable u10 v10) are the channels of one function, normalised each on its own")
    arg("--select", action="append", default=[], metavar="DIM=LABEL", help="one entry of an extra dimension by "
        "label, e.g. --select pressure_level=500 --select number=0 (repeat for each)")
    arg("--attribution", default=None, help="credit for the data on the figures, predictions.nc and metrics.json "
        "(default: ERA5's licence text, which ERA5 data require; give other data's own)")
    arg("--time-dim", default=None, help="the dimension that counts time when it is not a CF time axis (e.g. month)")
    arg("--config", choices=sorted(CONFIGS), default="small", help="small (default), paper (Table 3) or tiny")
    arg("--steps", type=int, default=None,
        help="optimiser steps (default: from the data, see --epochs; the same on any machine)")
    arg("--epochs", type=int, default=None, help="training epochs (default: 300, at least 1,500 and at most "
        "20,000 steps, stopped early once validation stops improving: pcfunc.training.data_budget)")
    arg("--minutes", type=float, default=None, help="a wall-time budget instead of --steps")
    arg("--train-fields", type=int, default=None, help="train on the last N of the training steps (default: all)")
    arg("--batch-size", type=int, default=8, help="fields per batch and device (default: 8)")
    arg("--lr", type=float, default=None, help="Adam learning rate (default: 1e-3, paper: 1e-4)")
    arg("--warmup-steps", type=int, default=150, help="steps with the N(0, I) prior before the flow (Algorithm 1)")
    arg("--precision", choices=["auto", "32-true", "bf16-mixed"], default="auto", help="bf16-mixed: networks in "
        "bfloat16, densities and KL in float32; auto (default): bf16-mixed where bfloat16 is native, else 32-true")
    arg("--likelihood", default=None, choices=["gaussian", "continuous_bernoulli"],
        help="per-point likelihood (default: gaussian, learned scale, its mean the generators' output; paper config: "
             "continuous_bernoulli)")
    arg("--refine-steps", type=int, default=None,
        help=f"L-BFGS iterations moving each field's latent to its posterior mode on the observed points at "
             f"inference, for every task (default: 0 or {DEFAULT_REFINE}, chosen for reconstruction and for "
             f"in-painting, each the better on the validation fields; 0: the encoder alone, the paper)")
    arg("--fine-points", type=int, default=None,
        help=f"fine supervision: the likelihood at this many random points per field of the data's own grid "
             f"(default: {DEFAULT_FINE_POINTS} when the data are finer than the training grid; 0: the paper)")
    arg("--predictive-samples", type=int, default=16, help="posterior draws for the predictive intervals, each "
        "held-out field calibrated on the others (default: 16; 0: none)")
    arg("--no-init", action="store_true", help="generators start at random (the paper), not at the mean function")
    arg("--resolution", type=float, default=4.0, help="training grid spacing in degrees (default: 4)")
    arg("--region", type=float, nargs=4, metavar=("SOUTH", "NORTH", "WEST", "EAST"), default=None,
        help="keep to this lat/lon box (WEST > EAST crosses 0 or 180); a regional file keeps to its own box")
    arg("--devices", type=int, default=1, help="processes (CPU) or GPUs per node for DDP")
    arg("--num-nodes", type=int, default=1, help="nodes for DDP")
    arg("--accelerator", default="auto", help="cpu, gpu or auto")
    arg("--resume", action="store_true", help="continue from OUT/checkpoints/last.ckpt")
    arg("--out", type=Path, default=Path("outputs/era5_sphere"), help="output directory")
    arg("--seed", type=int, default=0)
    arg("--globe-size", type=int, default=320, help="pixels per globe view")
    arg("--no-progress", action="store_true", help="hide the progress bar")
    arg("--quiet", action="store_true", help="no progress: neither the phase lines nor the bar (the report stays)")
    args = p.parse_args(argv)
    # Every number checked here, before any work, naming its flag.
    positive = ("steps", "epochs", "train_fields", "batch_size", "devices", "num_nodes", "globe_size")
    for name in positive + ("refine_steps", "predictive_samples", "fine_points", "warmup_steps"):
        value = getattr(args, name)
        if value is not None and value < (1 if name in positive else 0):
            p.error(f"--{name.replace('_', '-')} must be {'positive' if name in positive else 'at least 0'}, "
                    f"got {value}")
    for flag in ("variable", "time_dim", "select"):
        if getattr(args, flag) and args.data is None:
            p.error(f"--{flag.replace('_', '-')} needs --data (the embedded sample has one variable, t2m)")
    args.attribution = args.attribution or ERA5_ATTRIBUTION
    args.selection = {}
    for item in args.select:
        key, sep, label = item.partition("=")
        if not sep or not key or not label:
            p.error(f"--select takes DIM=LABEL (e.g. pressure_level=500), got {item!r}")
        for kind in (int, float):
            try:
                label = kind(label)
                break
            except ValueError:
                pass
        args.selection[key] = label
    for name in ("minutes", "lr", "resolution"):
        if (value := getattr(args, name)) is not None and not 0 < value < float("inf"):
            p.error(f"--{name} must be a positive number, got {value}")
    return args


def train(args: argparse.Namespace, train_set, val_set, base_grid, coarse):
    import lightning.pytorch as pl

    from pcfunc.training import (Convergence, FunctionDataModule, Preempted, VaMoHModule, data_budget, fit,
                                 make_trainer, training_budget)

    pl.seed_everything(args.seed, workers=True, verbose=False)
    overrides = dict(CONFIGS[args.config], **({"likelihood": LIKELIHOODS[args.likelihood]} if args.likelihood else {}))
    if base_grid is not None and args.config == "small":
        overrides.update(TABLE, base_grid=base_grid)
    if args.config != "paper":  # the model starts at PCA of the training fields and learns what it leaves
        overrides.update(factor_grid=list(coarse[0].shape))
    overrides.update(in_channels=train_set.field.num_channels)  # several variables: one channel each
    lr = args.lr or (vamoh_config("era5")["training"]["lr"] if args.config == "paper" else 1e-3)
    module = VaMoHModule.from_config("era5", lr=lr, warmup_steps=args.warmup_steps, seed=args.seed, **overrides)
    if not args.no_init and not args.resume:
        phase(args, "start", "the generators at the mean function" + (" and the factors at the training fields' PCA"
                                                                       if args.config != "paper" else ""))
        # Every generator starts at the function that best explains the pooled points the likelihood will see (each
        # field's fine points under fine supervision): training then spends its steps on what tells fields apart.
        module.model.initialize_generators(*pooled_points(train_set, target=train_set.target is not None),
                                           generator=torch.Generator().manual_seed(args.seed))
        if args.config != "paper":
            module.model.initialize_factors(coarse[1], coarse[0].pos)  # the fitted fields' PCA: validation is fair
    batch = min(args.batch_size, len(train_set))
    # The default budget follows the data (passes over the fields, within bounds), validated ~30 times and stopped
    # early once validation PSNR stops improving, the best validation's model kept; a user's --steps / --epochs /
    # --minutes is trained in full.
    plan = data_budget(len(train_set), batch * args.devices * args.num_nodes)
    own = args.steps or args.epochs or args.minutes
    limits = training_budget(plan["steps"], args.steps, args.minutes, args.epochs)
    planned = args.steps or (args.epochs * plan["steps_per_epoch"] if args.epochs else plan["steps"])
    val_every = max(1, planned // 30)
    watch = Convergence("val/psnr", patience=None if own else PATIENCE, restore_best=True)
    dm = FunctionDataModule(train_set, val_set, batch_size=batch, seed=args.seed)
    trainer = make_trainer(args.out, checkpoint_every=50, devices=args.devices, num_nodes=args.num_nodes,
                           accelerator=args.accelerator, gradient_clip_val=1000.0, log_every=5,
                           progress_bar=not (args.no_progress or args.quiet), val_every_steps=val_every,
                           callbacks=[watch],
                           precision=args.precision_used, **limits)
    why = "as asked" if own else (f"{plan['epochs']} passes over the {len(train_set)} fields at batch {batch}, the "
                                  f"budget that follows the data; stops early once validation PSNR has not improved "
                                  f"for {PATIENCE} validations")
    budget = ", ".join(f"{k}={v}" for k, v in limits.items() if v not in (None, -1, 1_000_000))
    print(f"training VaMoH ({args.config}) on {len(train_set)} fields, precision {args.precision_used}: {budget} "
          f"({why}), validating every {val_every} steps", flush=True)
    phase(args, "train", f"{len(train_set)} fields")
    t0 = time.perf_counter()
    if not args.resume:  # the start (PCA) is the first point of the validation history: training must beat it
        trainer.validate(module, datamodule=dm, verbose=False)
    try:
        resumed = fit(trainer, module, dm, resume=args.resume)
    except Preempted as stop:  # SIGTERM / SIGINT: the step is saved; say so in metrics.json, exit 75
        (args.out / "metrics.json").write_text(json.dumps(dict(
            status="preempted", signal=stop.signal_name, steps=stop.step, checkpoint=str(stop.checkpoint),
            resume="the same command with --resume", convergence=watch.report, phases=args.phases), indent=2))
        raise
    if args.refine_steps is None:  # chosen per task on the validation fields, before the factors are refitted
        args.refine_steps, args.refine_choice = choose_refinement(module.model, coarse)
    if watch.restored_step == 0 and args.config != "paper":
        # Training never beat the start on validation: the model is that start, its closed-form linear part
        # refitted to every training field (validation's too), as a cross-validated method is refitted.
        module.model.initialize_factors(coarse[2], coarse[0].pos)
    # The model returned (the best validation's; checkpoints/last.ckpt is the last step's, to resume from).
    trainer.save_checkpoint(args.out / "model.ckpt", weights_only=True)
    return module.model.eval(), trainer, time.perf_counter() - t0, resumed, watch.report


def choose_refinement(model: VaMoH, coarse) -> Tuple[Dict[str, int], Dict[str, Any]]:
    """Refinement iterations (0 or DEFAULT_REFINE) for reconstruction (every point observed) and for in-painting,
    each the one that predicts the validation fields better; printed, and the scores for metrics.json."""
    g, fitted, fields = coarse
    val = fields[len(fitted):]
    chosen, scores = {}, {}
    for task, masks in (("reconstruction", {"all": torch.ones(g.num_points, dtype=torch.bool)}),
                        ("inpainting", inpainting_masks(g))):
        chosen[task], scores[task] = choose_refine_steps(model, g, val, masks, (0, DEFAULT_REFINE))
        print(f"refinement for {task}: {chosen[task]} L-BFGS iterations, the better on the {len(val)} validation "
              f"fields (" + ", ".join(f"{c}: {v:.2f} dB" for c, v in scores[task].items()) + ")", flush=True)
    return chosen, {"chosen": chosen, "validation_psnr": scores}


def evaluate(model: VaMoH, field, coarse, n_train: int, norm: MinMaxNormalizer, refine_steps,
             predictive_samples: int, progress=None, on_task=None) -> Dict[str, Any]:
    """Every task on the test fields by the quality harness, next to its baselines; the first one's maps."""
    from pcfunc.render import grid_spacing

    def pts(grid: LatLonGrid, v) -> torch.Tensor:  # (B, N, 1), missing values NaN
        return grid.to_points(torch.as_tensor(norm.transform(v, clip=True), dtype=torch.float32))

    g, fine = LatLonGrid(coarse.lat, coarse.lon), LatLonGrid(field.lat, field.lon)
    train_c, test_c = pts(g, coarse.values[:n_train]), pts(g, coarse.values[n_train:])
    train_f, test_f = pts(fine, field.values[:n_train]), pts(fine, field.values[n_train:])
    scale, masks = norm.range, inpainting_masks(g)
    # Predictive intervals: each held-out field calibrated on the others.
    quality = evaluate_vamoh(model, g, train_c, test_c, masks=masks, fine=(fine, test_f, train_f), scale=scale,
                             seed=0, refine_steps=refine_steps, calibration="leave_one_out",
                             predictive_samples=predictive_samples if len(test_c) >= 2 else 0,
                             progress=progress, on_task=on_task, **RESIDUALS)
    res: Dict[str, Any] = flat_report(quality, f"{grid_spacing(coarse.lat)}deg", f"{grid_spacing(field.lat)}deg")
    # The maps (first test field) show the spread of the inferred function (the intervals add observation noise).
    fields = task_predictions(model, g, test_c[0], fine, {"patch": masks["patch"], "western half": masks["half"]},
                              refine_steps=refine_steps, **RESIDUALS)
    baseline = BilinearDownscaling(g, fine, train_c, train_f).predict(test_c[:1])[0]
    # truth: normalised and clipped to the training range, as scored; truth_units: the data as they are.
    truth_units = fine.to_points(torch.as_tensor(field.values[n_train], dtype=torch.float64))
    res["_quality"], res["_fields"] = quality, dict(fields, coarse=g, fine=fine, truth=test_f[0], observed=test_c[0],
                                                    truth_units=truth_units,
                                                    one=points_batch(g, test_c[:1]), baseline=baseline,
                                                    spectra=quality.get("spectra"),
                                                    pit={t: {m: r["pit_histogram"] for m, r in rows.items()
                                                             if m in ("vamoh_calibrated", "climatology_calibrated",
                                                                      "bilinear_mean_residual_calibrated")}
                                                         for t, rows in quality.get("uncertainty", {}).items()})
    return res


def write_predictions(f: Dict[str, Any], norm: MinMaxNormalizer, path: Path, field, when, attribution: str) -> str:
    """The first test field's predictions in the data's units as NetCDF: the truth grid's (latitude, longitude)
    and the training grid's (latitude_train, longitude_train); several variables as ``<entry>_<variable>``."""
    import xarray as xr

    from pcfunc.data import predictions_to_xarray

    C = field.num_channels
    K = lambda t: norm.inverse(t.reshape(-1, C)).float()  # noqa: E731
    common = dict(time=[when], units=field.units if C == 1 else field.channel_units, attribution=attribution,
                  long_name=field.variable if C == 1 else None, channels=None if C == 1 else field.variables)
    fine = predictions_to_xarray(f["fine"], {
        "truth": f["truth_units"].reshape(-1, C).float(), "super_resolution": K(f["super_resolution"]),
        "super_resolution_std": f["spread"].reshape(-1, C) * torch.as_tensor(norm.range, dtype=torch.float64),
        "bilinear_mean_residual": K(f["baseline"])}, **common)
    train = {"observed": K(f["observed"]), "reconstruction": K(f["reconstruction"]),
             "entropy": f["entropy"].reshape(-1), "segmentation": f["segmentation"].reshape(-1).double()}
    for task, (pred, mask) in f["inpainted"].items():
        key = "inpainted_" + task.replace(" ", "_")
        train[key], train[key + "_observed"] = K(pred), mask.reshape(-1)
    coarse = predictions_to_xarray(f["coarse"], train, dims=("time", "latitude_train", "longitude_train"),
                                   attrs={"entropy": {"units": "nats", "long_name": "entropy of q(c | x, y, z)"},
                                          "segmentation": {"units": "1", "long_name": "argmax of q(c | x, y, z)"}},
                                   **common)
    xr.merge([fine, coarse], combine_attrs="override").to_netcdf(path)
    return path.name


def render(model: VaMoH, f: Dict[str, Any], norm: MinMaxNormalizer, out: Path, size: int, field,
           attribution: str) -> List[str]:
    """The maps, samples, spectra and globes of the first test field; one set per variable (``_<variable>`` in
    the file names) for several."""
    from pcfunc._compat import available
    from pcfunc.render import Panel, globe_views, grid_spacing, plot_panels, plot_task_maps, render_sphere

    C = field.num_channels
    g, fine, one = f["coarse"], f["fine"], f["one"]
    fd, cd = f"{grid_spacing(fine.lat)}°", f"{grid_spacing(g.lat)}°"
    samples = model.sample(4, fine.pos, generator=torch.Generator().manual_seed(1))
    figures: List[str] = []
    spectra = f.get("spectra")
    if spectra:  # mean power spectra of the super-resolved fields against the truth's (the first variable)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        degree = spectra["degree"][1:]
        for name, values in spectra.items():
            if name != "degree":
                ax.loglog(degree, values[1:], label=name, lw=2.5 if name == "truth" else 1.2)
        ax.set(xlabel="spherical-harmonic degree l", ylabel="power (normalised units)",
               title=f"super-resolution of {field.variables[0]} to {fd}: mean power spectra")
        ax.legend(fontsize=8)
        fig.savefig(out / "spectra.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        figures.append("spectra.png")
    if f.get("pit"):  # calibration: the PIT histograms of the calibrated predictives (flat when calibrated)
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(f["pit"]), figsize=(3.2 * len(f["pit"]), 2.8), squeeze=False)
        for ax, (task, rows) in zip(axes[0], f["pit"].items()):
            for i, (method, shares) in enumerate(rows.items()):
                width = 0.8 / len(rows)
                ax.bar([b + i * width for b in range(len(shares))], shares, width=width, align="edge",
                       label=method.replace("_calibrated", ""))
            ax.axhline(1 / 10, color="k", lw=0.8, ls="--")
            ax.set(title=task, xlabel="PIT decile", xticks=[])
            ax.legend(fontsize=7)
        axes[0][0].set_ylabel("share of held-out points")
        fig.suptitle("calibrated predictive intervals: PIT histograms (flat = calibrated)", fontsize=9, y=1.04)
        fig.savefig(out / "calibration.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        figures.append("calibration.png")
    globes_ok = available("pytorch3d")
    if not globes_ok:
        print("globes skipped: PyTorch3D does not import (install one built for your torch: see the install page)")
    for c, (variable, units) in enumerate(zip(field.variables, field.channel_units)):
        sfx = "" if C == 1 else f"_{variable}"
        K = lambda t: norm.inverse(t.reshape(-1, C))[:, c].float()  # noqa: E731
        span = torch.as_tensor(norm.range, dtype=torch.float64).reshape(-1)[c]
        spread = f["spread"].reshape(-1, C)[:, c] * span
        label = f"{variable} [{units}]" if units else variable
        kelvin = {k: K(f[k]) for k in ("observed", "reconstruction", "super_resolution", "baseline")}
        kelvin["truth"] = f["truth_units"].reshape(-1, C)[:, c].float()
        plot_task_maps(out / f"tasks{sfx}.png", g, fine, **kelvin, spread=spread, entropy=f["entropy"],
                       inpainted={t: (K(p), m) for t, (p, m) in f["inpainted"].items()},
                       segmentation=f["segmentation"], num_components=model.num_components, label=label, units=units,
                       attribution=attribution, title=f"VaMoH on {variable} (test field)")
        plot_panels([Panel(fine.to_array(K(s)[:, None])[..., 0].numpy(), f"sample {i + 1}", label=label)
                     for i, s in enumerate(samples)], fine.lat, fine.lon, out / f"samples{sfx}.png", ncols=2,
                    suptitle=f"VaMoH samples of {variable} from the flow prior ({fd})", attribution=attribution)
        figures += [f"tasks{sfx}.png", f"samples{sfx}.png"]
        if not globes_ok:
            continue
        truth = kelvin["truth"]
        err_sr, err_b = kelvin["super_resolution"] - truth, kelvin["baseline"] - truth
        emax = float(torch.cat([err_sr, err_b]).abs().nanquantile(0.99))
        value = dict(vmin=float(truth.nanquantile(0.0)), vmax=float(truth.nanquantile(1.0)), label=label)
        error = dict(cmap="RdBu_r", vmin=-emax, vmax=emax, label=f"error [{units}]")

        def sr_anywhere(xyz: torch.Tensor, K=K) -> torch.Tensor:  # the model and its interpolated residuals, anywhere
            return K(model.reconstruct(one, xyz.to(g.pos.dtype), **RESIDUALS))

        globes = {  # name: (values or a function of the points, their points, title, colours)
            "globe_truth": (truth, fine.pos, f"truth, {fd}", value),
            "globe_super_resolution": (sr_anywhere, fine.pos, f"VaMoH super-resolution from {cd}", value),
            "globe_bilinear_mean_residual": (kelvin["baseline"], fine.pos, f"bilinear + mean residual, {fd}", value),
            "globe_inpaint_half": (K(f["inpainted"]["western half"][0]), g.pos, "in-painted from the east", value),
            "globe_reconstruction": (kelvin["reconstruction"], g.pos, f"reconstruction of the {cd} field", value),
            "globe_sample": (K(samples[0]), fine.pos, "sample from the prior", value),
            "globe_super_resolution_error": (err_sr, fine.pos, f"VaMoH super-resolution − truth, {fd}", error),
            "globe_bilinear_mean_residual_error": (err_b, fine.pos, f"bilinear + mean residual − truth, {fd}", error),
            "globe_super_resolution_std": (spread, fine.pos, "super-resolution: spread",
                                           dict(cmap="magma", label=f"std [{units}]")),
        }
        if c == 0:  # one per point, not per variable
            globes["globe_entropy"] = (f["entropy"], g.pos, "mixture entropy per point",
                                       dict(cmap="viridis", label="entropy of q(c | x, y, z) [nats]"))
        views = globe_views(fine)
        for name, (values, pos, title, colours) in globes.items():
            file = f"{name}.png" if name == "globe_entropy" else f"{name}{sfx}.png"
            render_sphere(values, pos, out=out / file, image_size=size,
                          title=title if C == 1 else f"{variable}: {title}", views=views, **colours)
            figures.append(file)
    return figures


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    from pcfunc.training import last_checkpoint, resolve_precision

    args.precision_used = resolve_precision(args.precision, args.accelerator)
    if args.resume and last_checkpoint(args.out) is None:
        raise SystemExit(f"--resume: no checkpoint in {args.out / 'checkpoints'} that loads (leave out --resume for "
                         "a fresh run, or give the run's --out)")
    t_start, args.phases = time.perf_counter(), {}
    args.out.mkdir(parents=True, exist_ok=True)
    phase(args, "read", "the embedded ERA5 sample" if args.data is None else str(args.data))
    variable = args.variable[0] if args.variable and len(args.variable) == 1 else args.variable
    field = load_era5_sample() if args.data is None else load_era5(args.data, variable, select=args.selection,
                                                                   time_dim=args.time_dim)
    if args.region is not None:
        field = field.region(tuple(args.region[:2]), tuple(args.region[2:]))
    coarse = field.regrid(*regular_axes(args.resolution, field.lat, field.lon))  # the globe, or the data's box
    if (n := coarse.values.shape[0]) < 3:
        raise SystemExit(f"need at least 3 time steps to train and test, the data has {n}")
    train_f, test_f = split_by_time(coarse, (0.75, 0.25))
    if args.train_fields is not None:  # the last N training steps, the same held-out ones (learning curves)
        k = train_f.values.shape[0]
        if not 2 <= args.train_fields <= k:
            raise SystemExit(f"--train-fields must be in 2..{k} (the data's training steps; one or more validate), "
                             f"got {args.train_fields}")
        keep = list(range(k - args.train_fields, n))
        field, coarse, n = field.select_time(keep), coarse.select_time(keep), len(keep)
        train_f, test_f = split_by_time(coarse, (args.train_fields / len(keep), 1 - args.train_fields / len(keep)))
    n_train, norm = train_f.values.shape[0], MinMaxNormalizer.fit(train_f)
    if n_train < 2:
        raise SystemExit(f"need at least 2 training time steps (one to validate), the data's first 75% has {n_train}")
    n_fit = n_train - max(1, round(VAL_FRACTION * n_train))
    fit_f, val_f = coarse.select_time(slice(0, n_fit)), coarse.select_time(slice(n_fit, n_train))
    phase(args, "prepare", f"{n} fields at {args.resolution} degrees: {n_fit} to train, {n_train - n_fit} to "
                           f"validate (the end of the training period), {n - n_train} held out")
    finer = field.shape[0] * field.shape[1] > coarse.shape[0] * coarse.shape[1]
    args.fine_points = (DEFAULT_FINE_POINTS if finer else 0) if args.fine_points is None else args.fine_points
    if args.fine_points and not finer:
        raise SystemExit(f"--fine-points needs data finer than the {args.resolution}-degree training grid")
    fine_kw = dict(target=field.select_time(slice(0, n_fit)), target_points=args.fine_points,
                   generator=torch.Generator().manual_seed(args.seed)) if args.fine_points else {}
    # Fields keep their valid (not missing) points; one with fewer than the encoder's first level needs is skipped.
    encoder = CONFIGS[args.config].get("encoder")
    min_points = encoder[0]["num_neighbors"] if encoder else vamoh_encoder_specs("era5")[0][0].num_neighbors
    train_set = ERA5Dataset(fit_f, norm, min_points=min_points, **fine_kw)
    val_set = ERA5Dataset(val_f, norm, clip=True, min_points=min_points)
    base_grid = tuple(field.shape) if args.fine_points and LatLonGrid(field.lat, field.lon).is_global else None
    g = LatLonGrid(coarse.lat, coarse.lon)
    fields = g.to_points(torch.as_tensor(norm.transform(train_f.values, clip=True), dtype=torch.float32))
    model, trainer, train_s, resumed, convergence = train(args, train_set, val_set, base_grid,
                                                          (g, fields[:n_fit], fields))
    print(f"validation PSNR: {convergence['verdict']}", flush=True)
    if convergence["restored_step"] == 0 and args.config != "paper":
        print(f"validation PSNR was best at the start (PCA): training did not improve on it, so the model is the "
              f"start with its factors refitted to all {n_train} training fields", flush=True)
    if trainer.global_rank != 0:
        return {}
    refine = args.refine_steps if isinstance(args.refine_steps, int) else "/".join(
        f"{v} ({k})" for k, v in args.refine_steps.items())
    phase(args, "evaluate", f"the quality harness on {n - n_train} held-out fields, {refine} refinement steps, "
                            f"{args.predictive_samples} predictive draws")
    done: Dict[str, Any] = {}  # each task's rows as it ends, in metrics.json at once: a later failure keeps them

    def keep(task: str, rows: Dict[str, Any], status: str = "evaluating", error: Optional[str] = None) -> None:
        if task:
            done[task] = rows
        (args.out / "metrics.json").write_text(json.dumps(dict(
            status=status, error=error, steps=int(trainer.global_step), checkpoint=str(args.out / "model.ckpt"),
            tasks_done=done, convergence=convergence, phases=args.phases), indent=2, default=str))

    try:
        res = evaluate(model, field, coarse, n_train, norm, args.refine_steps, args.predictive_samples,
                       progress=None if args.quiet else (lambda line: print(f"  {line}", flush=True)), on_task=keep)
    except Exception as err:  # the trained model is in OUT/model.ckpt: say so, with what is known
        keep("", {}, "evaluation_failed", f"{type(err).__name__}: {err}")
        raise
    try:  # like the figures, not worth the numbers
        written_nc = write_predictions(res["_fields"], norm, args.out / "predictions.nc", field, coarse.time[n_train],
                                       args.attribution)
    except Exception as err:
        written_nc = f"not written: {type(err).__name__}: {err}"
        print(f"predictions.nc {written_nc}; metrics.json is written all the same", flush=True)
    phase(args, "render", "maps and globes")
    t_render, render_error = time.perf_counter(), None
    try:
        written = render(model, res["_fields"], norm, args.out, args.globe_size, field, args.attribution)
    except Exception as err:  # figures are not worth the numbers: report and keep them
        written, render_error = [], f"{type(err).__name__}: {err}"
        print(f"rendering failed ({render_error}); metrics.json is written all the same", flush=True)
    quality = res["_quality"]
    phase(args, None)
    summary = dict(status="finished", render_error=render_error,
                   data="embedded ERA5 sample" if args.data is None else str(args.data),
                   variable=field.variable if field.num_channels == 1 else list(field.variables),
                   units=field.units if field.num_channels == 1 else list(field.channel_units),
                   train_fields=int(n_train),
                   validation_fields=int(n_train - n_fit), test_fields=int(n - n_train), model="vamoh",
                   train_grid=list(coarse.shape), truth_grid=list(field.shape), config=args.config,
                   precision=args.precision_used, fine_points=args.fine_points, steps=int(trainer.global_step),
                   epochs=int(trainer.current_epoch), train_seconds=round(train_s, 1), figures=written,
                   render_seconds=round(time.perf_counter() - t_render, 1),
                   total_seconds=round(time.perf_counter() - t_start, 1), normalisation_k=norm.to_dict(),
                   predictions=written_nc,
                   resumed_from=None if resumed is None else str(resumed),
                   model_checkpoint=str(args.out / "model.ckpt"),
                   attribution=args.attribution,
                   psnr_definition="VaMoH App. B.3 on data normalised to [0, 1]", quality=quality,
                   metrics={k: v for k, v in res.items() if not k.startswith("_")}, convergence=convergence,
                   refine_steps=args.refine_steps, refine_choice=getattr(args, "refine_choice", None),
                   phases=args.phases, threads=torch.get_num_threads(), cpu=torch.backends.cpu.get_cpu_capability())
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2))
    units = field.channel_units
    print(format_report(quality, units[0] if len(set(units)) == 1 else "", field.variables if len(units) > 1 else None))
    print(f"trained {summary['steps']} optimiser steps in {summary['train_seconds']} s; wrote "
          f"{args.out / 'metrics.json'} and {len(written)} figures in {summary['total_seconds']} s")
    return summary


if __name__ == "__main__":
    main()
