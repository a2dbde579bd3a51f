"""VaMoH and GASP on images: real handwritten digits by default, any image folder or MNIST file by path.

With no arguments it trains both models on scikit-learn's digits (1,797 real 8 x 8 scans; 90% for
training, the last 10% held out) on the CPU, VaMoH for at most 4,000 optimiser steps (stopped early once its
validation PSNR stops improving), GASP for 2,000, and writes to outputs/images/:

* vamoh_samples.png and gasp_samples.png: samples at the training resolution and at 4x
  (the INRs evaluated on a finer grid that contains the original pixels);
* vamoh_tasks.png: held-out images, their reconstructions, in-painting (centre hidden) and
  out-painting (only the centre observed), with the hidden pixels tinted in the inputs;
* vamoh_components.png: the entropy and the argmax segmentation of the mixture assignments;
* vamoh/model.ckpt: the VaMoH evaluated (it starts at PCA of the training images, the last tenth of which, at
  most 1,000, validate; the best validation's model is kept, the start included), vamoh/checkpoints/ the last
  steps';
* metrics.json: the quality harness's report (quality): the PSNR (VaMoH App. B.3, data in [0, 1]) of
  each task on the held-out images (hidden pixels for in- and out-painting) next to the mean training image
  and PCA, and the models' health.

Examples:

    python examples/images.py
    python examples/images.py --data path/to/celeba_hq --size 64 --minutes 20
    python examples/images.py --data train-images-idx3-ubyte.gz --model vamoh
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import pcfunc  # noqa: F401  (before torch: quiets OpenMP's idle threads, pcfunc.OMP_SPIN_COUNT)
import torch

from pcfunc.data import ImageDataset, ImageGrid, ToSymmetric, load_digits_images, load_image_folder, load_mnist_idx
from pcfunc.evaluation import evaluate_gasp, evaluate_vamoh, format_report, points_batch
from pcfunc.nn import DiscretizedLogisticLikelihood, GaussianLikelihood, LayerSpec
from pcfunc.render import save_image_grid


DEFAULT_STEPS = 4000
DEFAULT_GASP_STEPS = 2000
VALIDATION, PATIENCE = 1000, 8  # images held out of training to validate; validations without gain
SAMPLES = 256  # samples of each model against the held-out images (1-NNA, spread, energy distance)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="a folder of images or an MNIST idx file (.gz ok); default: scikit-learn's digits")
    p.add_argument("--size", type=int, default=32, help="image size for --data folders (default: 32)")
    p.add_argument("--model", choices=["both", "vamoh", "gasp"], default="both")
    p.add_argument("--steps", type=int, default=None,
                   help=f"optimiser steps per model, trained in full (default: at most {DEFAULT_STEPS} for VaMoH, "
                        f"stopped early once validation stops improving; {DEFAULT_GASP_STEPS} for GASP)")
    p.add_argument("--minutes", type=float, default=None, help="a wall-time budget per model instead of --steps")
    p.add_argument("--epochs", type=int, default=None, help="epochs per model instead of --steps")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--likelihood", choices=["gaussian", "logistic"], default="gaussian",
                   help="VaMoH's per-pixel likelihood: gaussian (learned scale, default) or the paper's discretized "
                        "logistic")
    p.add_argument("--refine-steps", type=int, default=20,
                   help="L-BFGS iterations moving each image's latent to its posterior mode on the observed pixels at "
                        "inference (default: 20; 0: the encoder alone)")
    p.add_argument("--tiny", action="store_true", help="tiny networks (tests)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many images")
    p.add_argument("--out", type=Path, default=Path("outputs/images"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def load_images(args: argparse.Namespace):
    if args.data is None:
        images, _, levels = load_digits_images()
        name = "scikit-learn digits"
    elif args.data.is_dir():
        images, levels, name = load_image_folder(args.data, args.size), 256, str(args.data)
    else:
        images, levels, name = load_mnist_idx(args.data), 256, str(args.data)
    if args.limit is not None:
        images = images[: args.limit]
    return images, levels, name


def encoder_specs(n: int, tiny: bool) -> List[Dict[str, Any]]:
    """PointConv levels for ``n`` pixels: centroids n/2, n/8, n/32 (at least 4) with 9 neighbours."""
    widths = (8, 8, 8) if tiny else (32, 64, 128)
    cents = [max(4, n // 2), max(4, n // 8), max(4, n // 32)]
    return [dict(out_channels=w, num_neighbors=min(9, c if i == 0 else cents[i - 1]), num_centroids=c)
            for i, (w, c) in enumerate(zip(widths, cents))]


def trainer_for(args: argparse.Namespace, out: Path, default_steps: int, **kw: Any):
    from pcfunc.training import make_trainer, training_budget

    limits = training_budget(default_steps, args.steps, args.minutes, args.epochs)
    kw.setdefault("limit_val_batches", 0)
    return make_trainer(out, checkpoint_every=200, accelerator="cpu", log_every=20,
                        progress_bar=not args.no_progress, tensorboard=False, **limits, **kw)


def build_vamoh(args: argparse.Namespace, grid: ImageGrid, channels: int, levels: int):
    """The example's VaMoH for images on ``grid`` (``--tiny``, ``--likelihood``), untrained."""
    from pcfunc.models import VaMoH

    H, W = grid.shape
    C = channels
    spec = [LayerSpec(**s) for s in encoder_specs(H * W, args.tiny)]
    kw = dict(latent_dim=8 if args.tiny else 16, num_components=4, hypernet_hidden=(16,) if args.tiny else (64, 128),
              generator_hidden=(8,) if args.tiny else (32, 32, 32), num_frequencies=16 if args.tiny else 64,
              sigma=1.0, categorical_hidden=(8,) if args.tiny else (32, 32), flow_layers=3,
              weight_hidden=(8,) if args.tiny else (16, 16),
              # Point dropout up to a quarter of the pixels: in- and out-painting need an encoder that has seen
              # partial images, reconstruction loses less than with the paper's half (docs: "Measuring quality").
              max_dropout=None if args.tiny else 0.25)
    # A Gaussian with a learned scale in- and out-paints and reconstructs held-out digits better than the
    # discretized logistic after the same steps (docs: "Measuring quality"); --likelihood logistic is the paper's.
    likelihood = (DiscretizedLogisticLikelihood(C, num_bins=levels) if args.likelihood == "logistic"
                  else GaussianLikelihood(C))
    # The model starts at PCA with as many components as the latent (linear factors on the pixel grid) and the
    # mixture of hypergenerators learns what PCA leaves; the last tenth of the training images (at most
    # VALIDATION) validates, and the best validation's model is kept, the PCA start included.
    return VaMoH(grid.manifold, in_channels=C, encoder=spec, likelihood=likelihood, factor_grid=(H, W), **kw)


def run_vamoh(args, train_img, test_img, levels, out: Path) -> Dict[str, Any]:
    import lightning.pytorch as pl

    from pcfunc.training import Convergence, FunctionDataModule, VaMoHModule, fit

    pl.seed_everything(args.seed, workers=True, verbose=False)
    H, W, C = train_img.shape[1:]
    grid = ImageGrid(H, W)
    model = build_vamoh(args, grid, C, levels)
    n_val = min(VALIDATION, max(1, len(train_img) // 10))
    fit_img, val_img = train_img[:-n_val], train_img[-n_val:]
    flat = lambda a: grid.to_batch(torch.as_tensor(a)).x.view(len(a), -1, C)  # noqa: E731
    pix = grid.to_batch(torch.as_tensor(fit_img))
    # Every generator starts at the mean image (and the likelihood's scale at the pixels' spread), the factors
    # at the fitted images' principal components.
    model.initialize_generators(pix.pos, pix.x, generator=torch.Generator().manual_seed(args.seed))
    model.initialize_factors(flat(fit_img), grid.pos)
    module = VaMoHModule(model, lr=1e-3, warmup_steps=200, seed=args.seed)
    own = args.steps or args.epochs or args.minutes
    planned = args.steps or (args.epochs * math.ceil(len(fit_img) / args.batch_size) if args.epochs else DEFAULT_STEPS)
    watch = Convergence("val/psnr", patience=None if own else PATIENCE, restore_best=True)
    trainer = trainer_for(args, out / "vamoh", DEFAULT_STEPS, limit_val_batches=1.0,
                          val_every_steps=max(1, planned // 30), callbacks=[watch])
    dm = FunctionDataModule(ImageDataset(fit_img), ImageDataset(val_img), batch_size=args.batch_size,
                            seed=args.seed)
    t0 = time.perf_counter()
    trainer.validate(module, datamodule=dm, verbose=False)  # the start (PCA) is the first validation
    fit(trainer, module, dm, overwrite=True)  # each run starts afresh: no --resume
    print(f"validation PSNR: {watch.report['verdict']}", flush=True)
    if watch.restored_step == 0:  # never beaten on validation: the PCA start, refitted to every training image
        print(f"validation PSNR was best at the start (PCA): the model is the start with its factors refitted "
              f"to all {len(train_img)} training images", flush=True)
        module.model.initialize_factors(flat(train_img), grid.pos)
    trainer.save_checkpoint(out / "vamoh" / "model.ckpt", weights_only=True)  # the model evaluated
    train_s = time.perf_counter() - t0
    model = module.model.eval()
    n_show = min(8, len(test_img))
    test = torch.as_tensor(test_img)
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    centre = (((rows - (H - 1) / 2).abs() < H / 4) & ((cols - (W - 1) / 2).abs() < W / 4)).reshape(-1)
    # The quality harness on every held-out image: the tasks next to the mean image and PCA with as many
    # components as the latent (all images refined in one call: q(z) of each image is its own parameter).
    quality = evaluate_vamoh(model, grid, flat(train_img[:2000]), flat(test),
                             masks={"centre_hidden": ~centre, "centre_only": centre}, seed=args.seed,
                             refine_steps=args.refine_steps, fields_per_call=256, num_prior_samples=SAMPLES)
    print(format_report(quality))
    res: Dict[str, Any] = {"train_seconds": round(train_s, 1), "steps": int(module.global_step),
                           "validation_images": int(n_val), "convergence": watch.report,
                           "model_checkpoint": str(out / "vamoh" / "model.ckpt"), "quality": quality}
    for name, task in (("reconstruction", "reconstruction"), ("inpainting", "inpaint_centre_hidden"),
                       ("outpainting", "inpaint_centre_only")):
        row = quality["tasks"][task]
        res[name] = {"psnr_db": row["vamoh"]["psnr"], "baseline_mean_image_psnr_db": row["training_mean"]["psnr"],
                     "pixels": row["vamoh"]["points"]}

    refine = dict(refine_steps=args.refine_steps)  # the figures: the first held-out images
    shown = test[:n_show]
    y = flat(shown)
    rec = model.reconstruct(grid.to_batch(shown), **refine).view_as(y)
    tasks = {}
    for name, observed in (("inpainting", ~centre), ("outpainting", centre)):
        tasks[name] = (model.inpaint(points_batch(grid, y, observed), grid.pos, **refine), observed)
    as_img = lambda v: v.reshape(-1, H, W, C)[:n_show]  # noqa: E731
    panels = [as_img(y), as_img(rec)]
    masks = [np.ones((n_show, H, W), bool)] * 2
    for name in ("inpainting", "outpainting"):
        pred, observed = tasks[name]
        m = observed.reshape(H, W).numpy()[None].repeat(n_show, 0)
        panels += [as_img(y), as_img(pred)]
        masks += [m, np.ones((n_show, H, W), bool)]
    save_image_grid(torch.cat(panels), out / "vamoh_tasks.png", ncols=n_show, masks=np.concatenate(masks),
                    scale=max(1, 64 // H),
                    row_titles=["test images", "reconstruction", "input (centre hidden)", "in-painted",
                                "input (centre only)", "out-painted"], title="VaMoH on held-out images")
    fine = grid.super_resolution(4)
    s1 = model.sample(n_show, grid.pos, generator=torch.Generator().manual_seed(1)).reshape(-1, H, W, C)
    s4 = model.sample(n_show, fine.pos, generator=torch.Generator().manual_seed(1)).reshape(-1, *fine.shape, C)
    save_image_grid(s1, out / "vamoh_samples.png", ncols=n_show, scale=max(1, 64 // H),
                    title=f"VaMoH samples at {H}x{W}")
    save_image_grid(s4, out / "vamoh_samples_x4.png", ncols=n_show, scale=max(1, 64 // fine.shape[0]),
                    title=f"the same samples at {fine.shape[0]}x{fine.shape[1]}")
    maps = model.component_maps(grid.to_batch(test[:n_show]), posterior=True)
    ent = maps.entropy.reshape(-1, H, W) / math.log(model.num_components)
    seg = maps.segmentation.reshape(-1, H, W).float() / max(1, model.num_components - 1)
    save_image_grid(torch.cat([as_img(y).mean(-1), ent, seg]), out / "vamoh_components.png", ncols=n_show,
                    cmap="viridis", row_titles=["image", "entropy / log K", "segmentation"], scale=max(1, 64 // H),
                    title="VaMoH mixture assignments q(c | x, y, z)")
    res["figures"] = ["vamoh_tasks.png", "vamoh_samples.png", "vamoh_samples_x4.png", "vamoh_components.png"]
    return res


def run_gasp(args, train_img, out: Path, test_img: Optional[np.ndarray] = None) -> Dict[str, Any]:
    import lightning.pytorch as pl

    from pcfunc.models import GASP
    from pcfunc.training import FunctionDataModule, GASPModule, fit

    pl.seed_everything(args.seed, workers=True, verbose=False)
    H, W, C = train_img.shape[1:]
    grid = ImageGrid(H, W)
    model = GASP(grid.manifold, in_channels=C, latent_dim=8 if args.tiny else 32,
                 hypernet_hidden=(16,) if args.tiny else (128, 256), inr_hidden=(8,) if args.tiny else (64, 64, 64),
                 num_frequencies=16 if args.tiny else 64, sigma=1.0,
                 disc_channels=(4, 8) if args.tiny else (32, 64), weight_hidden=(8,) if args.tiny else (16, 16))
    module = GASPModule(model, 1e-4 if not args.tiny else 1e-3, 4e-4 if not args.tiny else 1e-3, seed=args.seed)

    # The generator starts at the mean training image (in GASP's [-1, 1]); the game then learns what varies.
    pix = grid.to_batch(torch.as_tensor(train_img))
    model.initialize_generator(pix.pos, pix.x * 2 - 1, generator=torch.Generator().manual_seed(args.seed))
    t0 = time.perf_counter()
    fit(trainer_for(args, out / "gasp", DEFAULT_GASP_STEPS), module,
        FunctionDataModule(ImageDataset(train_img, transform=ToSymmetric()), batch_size=args.batch_size,
                           seed=args.seed),
        overwrite=True)
    train_s = time.perf_counter() - t0
    model = module.model.eval()
    fine = grid.super_resolution(4)
    s1 = (model.sample(8, grid.pos, generator=torch.Generator().manual_seed(1)) + 1) / 2
    s4 = (model.sample(8, fine.pos, generator=torch.Generator().manual_seed(1)) + 1) / 2
    save_image_grid(s1.reshape(-1, H, W, C), out / "gasp_samples.png", ncols=8, scale=max(1, 64 // H),
                    title=f"GASP samples at {H}x{W}")
    save_image_grid(s4.reshape(-1, *fine.shape, C), out / "gasp_samples_x4.png", ncols=8,
                    scale=max(1, 64 // fine.shape[0]),
                    title=f"the same samples at {fine.shape[0]}x{fine.shape[1]}")
    quality = None
    if test_img is not None and len(test_img) >= 2:
        flat = lambda a: grid.to_batch(torch.as_tensor(a)).x.view(len(a), -1, C)  # noqa: E731
        quality = evaluate_gasp(model, grid, flat(test_img), train=flat(train_img), transform=lambda v: (v + 1) / 2,
                                seed=args.seed, num_samples=SAMPLES)
    return {"train_seconds": round(train_s, 1), "batches": int(module.global_step // 2),
            "figures": ["gasp_samples.png", "gasp_samples_x4.png"], "quality": quality}


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    images, levels, name = load_images(args)
    n_test = max(1, len(images) // 10)
    train_img, test_img = images[:-n_test], images[-n_test:]
    summary: Dict[str, Any] = {"data": name, "images": int(len(images)), "train": int(len(train_img)),
                               "test": int(len(test_img)), "shape": list(images.shape[1:]), "levels": levels}
    if args.model in ("both", "vamoh"):
        summary["vamoh"] = run_vamoh(args, train_img, test_img, levels, out)
    if args.model in ("both", "gasp"):
        summary["gasp"] = run_gasp(args, train_img, out, test_img)
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
