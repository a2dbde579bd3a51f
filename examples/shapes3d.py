"""VaMoH and GASP on 3D shapes: occupancy functions learned from voxels, rendered as PyTorch3D meshes.

With no arguments it voxelises the Stanford bunny point cloud that ships with PyGSP (2,503 real scanned
surface points) at 32^3 and augments it (rotations about the vertical axis, small tilts, anisotropic
scaling) into a small dataset of 48 shapes, trains both models for a fixed number of optimiser steps
(--steps; about 5 minutes in all on two CPU cores), started at the training shapes' mean occupancy, on
random subsets of 4,096 points per shape, and writes to outputs/shapes3d/:

* training_shapes.png: three training shapes, rendered the same way as the samples;
* vamoh_samples.png and gasp_samples.png: samples, the INR evaluated on a 128^3 grid, the 0.5
  level set extracted with pytorch3d.ops.marching_cubes and shaded with PyTorch3D;
* vamoh_reconstruction.png: a held-out shape and its reconstruction from 4,096 of its points;
* metrics.json: the intersection over union of VaMoH's reconstructions of the held-out shapes
  (occupancy > 0.5 on the voxel grid) next to that of the training shapes' mean occupancy, and the occupied
  fraction of the samples next to the data's.

--data FOLDER takes any folder of .npy occupancy arrays or .binvox files (ShapeNet style).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import pcfunc  # noqa: F401  (before torch: quiets OpenMP's idle threads, pcfunc.OMP_SPIN_COUNT)
import torch

from pcfunc.data import (RandomSubset, ToSymmetric, VoxelDataset, VoxelGrid, augmented_voxels, load_bunny_points,
                         load_voxel_folder)
from pcfunc.manifolds import Euclidean
from pcfunc.nn import LayerSpec
from pcfunc.render import render_occupancy


DEFAULT_STEPS = 600
DEFAULT_GASP_STEPS = 800


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="folder of .npy/.binvox voxel grids (default: bunny)")
    p.add_argument("--num-shapes", type=int, default=48, help="augmented bunnies (default: 48)")
    p.add_argument("--resolution", type=int, default=32, help="voxel resolution of the bunny dataset")
    p.add_argument("--points", type=int, default=4096, help="random points per shape and step (default: 4096)")
    p.add_argument("--model", choices=["both", "vamoh", "gasp"], default="both")
    p.add_argument("--steps", type=int, default=None,
                   help=f"optimiser steps per model (default: {DEFAULT_STEPS} for VaMoH, {DEFAULT_GASP_STEPS} for "
                        "GASP: the same model on every machine)")
    p.add_argument("--minutes", type=float, default=None, help="a wall-time budget per model instead of --steps")
    p.add_argument("--epochs", type=int, default=None, help="epochs per model instead of --steps")
    p.add_argument("--no-init", action="store_true",
                   help="start the generators at random (the papers) instead of at the training shapes' mean")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--render-resolution", type=int, default=128, help="grid on which the INRs are evaluated")
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--tiny", action="store_true", help="tiny networks (tests)")
    p.add_argument("--out", type=Path, default=Path("outputs/shapes3d"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def trainer_for(args: argparse.Namespace, out: Path, default_steps: int):
    from pcfunc.training import make_trainer, training_budget

    limits = training_budget(default_steps, args.steps, args.minutes, args.epochs)
    return make_trainer(out, checkpoint_every=200, accelerator="cpu", log_every=10,
                        progress_bar=not args.no_progress, tensorboard=False, limit_val_batches=0, **limits)


def run_vamoh(args, train_vox, test_vox, out: Path) -> Dict[str, Any]:
    import lightning.pytorch as pl

    from pcfunc.models import VaMoH
    from pcfunc.training import FunctionDataModule, VaMoHModule, fit

    pl.seed_everything(args.seed, workers=True, verbose=False)
    n = min(args.points, int(np.prod(train_vox.shape[1:])))
    c = [max(8, n // 4), max(8, n // 16), max(8, n // 64)]
    w = (8, 8, 8) if args.tiny else (32, 64, 128)
    spec = [LayerSpec(w[i], 16 if i == 0 else min(16, c[i - 1]), c[i]) for i in range(3)]
    model = VaMoH(Euclidean(3), 1, spec, latent_dim=8 if args.tiny else 32, num_components=3,
                  hypernet_hidden=(16,) if args.tiny else (128, 256), generator_hidden=(8,) if args.tiny else (32, 32, 32),
                  num_frequencies=8 if args.tiny else 64, sigma=1.0, categorical_hidden=(8,) if args.tiny else (32, 32),
                  flow_layers=2 if args.tiny else 10, likelihood="bernoulli",
                  weight_hidden=(8,) if args.tiny else (16, 16))
    if not args.no_init:
        # Every generator starts at the training shapes' mean occupancy; training then learns what varies.
        pos, y = _pooled(train_vox)
        model.initialize_generators(pos, y, generator=torch.Generator().manual_seed(args.seed))
    module = VaMoHModule(model, lr=1e-3, warmup_steps=100, seed=args.seed)
    data = VoxelDataset(train_vox, transform=RandomSubset(n, torch.Generator().manual_seed(args.seed)))
    t0 = time.perf_counter()
    fit(trainer_for(args, out / "vamoh", DEFAULT_STEPS), module,
        FunctionDataModule(data, batch_size=args.batch_size, seed=args.seed), overwrite=True)  # no --resume here
    res: Dict[str, Any] = {"train_seconds": round(time.perf_counter() - t0, 1), "steps": int(module.global_step)}
    model = module.model.eval()
    grid = VoxelGrid(*test_vox.shape[1:])
    ious, base = [], []
    g = torch.Generator().manual_seed(1)
    recon = None
    iou = lambda a, b: float((a & b).sum() / (a | b).sum().clamp_min(1))  # noqa: E731
    mean_shape = torch.as_tensor(train_vox.reshape(len(train_vox), -1).mean(0)) > 0.5  # the baseline
    for v in test_vox:
        full = grid.to_data(torch.as_tensor(v))
        obs = RandomSubset(n, g)(full)
        pred = model.inpaint(obs, grid.pos)[0, :, 0] > 0.5
        truth = full.x[:, 0] > 0.5
        ious.append(iou(pred, truth))
        base.append(iou(grid.to_data(mean_shape.reshape(v.shape).float()).x[:, 0] > 0.5, truth))
        if recon is None:
            recon = model.encode(obs)[0]
    res["reconstruction_iou"] = {"mean": float(np.mean(ious)), "per_shape": ious, "observed_points": n,
                                 "baseline_training_mean_iou": float(np.mean(base))}
    R = args.render_resolution
    samples = model.sample_latent(3, torch.Generator().manual_seed(2))
    res["sample_occupied_fraction"] = float(model.decode(samples, grid.pos).gt(0.5).float().mean())
    imgs = []
    for i in range(3):
        imgs += render_occupancy(lambda p, i=i: model.decode(samples[i:i + 1], p)[0, :, 0], resolution=R,
                                 views=(("sample", 20.0, -60.0),), image_size=args.image_size)
    _save_row(imgs, out / "vamoh_samples.png", f"VaMoH samples (INR on a {R}^3 grid, marching cubes at 0.5)")
    row = render_occupancy(test_vox[0], image_size=args.image_size, views=(("held-out shape", 20.0, -60.0),))
    row += render_occupancy(lambda p: model.decode(recon, p)[0, :, 0], resolution=R, image_size=args.image_size,
                            views=(("reconstruction", 20.0, -60.0),))
    _save_row(row, out / "vamoh_reconstruction.png", f"VaMoH reconstruction from {n} points")
    res["figures"] = ["vamoh_samples.png", "vamoh_reconstruction.png"]
    return res


def run_gasp(args, train_vox, out: Path) -> Dict[str, Any]:
    import lightning.pytorch as pl

    from pcfunc.models import GASP
    from pcfunc.training import FunctionDataModule, GASPModule, fit

    pl.seed_everything(args.seed, workers=True, verbose=False)
    model = GASP(Euclidean(3), 1, latent_dim=8 if args.tiny else 32, hypernet_hidden=(16,) if args.tiny else (128, 256),
                 inr_hidden=(8,) if args.tiny else (64, 64, 64), num_frequencies=None,
                 disc_channels=(4, 8) if args.tiny else (16, 32, 64), weight_hidden=(8,) if args.tiny else (16, 16))
    module = GASPModule(model, 2e-4, 8e-4, num_points=args.points, seed=args.seed)
    if not args.no_init:
        pos, y = _pooled(train_vox)
        model.initialize_generator(pos, y * 2 - 1, generator=torch.Generator().manual_seed(args.seed))

    t0 = time.perf_counter()
    fit(trainer_for(args, out / "gasp", DEFAULT_GASP_STEPS), module,
        FunctionDataModule(VoxelDataset(train_vox, transform=ToSymmetric()), batch_size=args.batch_size,
                           seed=args.seed), overwrite=True)
    res: Dict[str, Any] = {"train_seconds": round(time.perf_counter() - t0, 1), "batches": int(module.global_step // 2)}
    model = module.model.eval()
    grid = VoxelGrid(*train_vox.shape[1:])
    z = model.sample_latent(3, torch.Generator().manual_seed(2))
    with torch.no_grad():
        res["sample_occupied_fraction"] = float(model.generate(z, grid.pos).gt(0).float().mean())
    R = args.render_resolution
    imgs = []
    for i in range(3):
        imgs += render_occupancy(lambda p, i=i: (model.generate(z[i:i + 1], p)[0, :, 0] + 1) / 2, resolution=R,
                                 views=(("sample", 20.0, -60.0),), image_size=args.image_size)
    _save_row(imgs, out / "gasp_samples.png", f"GASP samples (INR on a {R}^3 grid, marching cubes at 0.5)")
    res["figures"] = ["gasp_samples.png"]
    return res


def _pooled(vox: np.ndarray):
    """Every training shape's voxel centres and occupancies, pooled: ``pos`` :math:`(T N, 3)`, ``y`` :math:`(T N, 1)`."""
    b = VoxelGrid(*vox.shape[1:4]).to_batch(torch.as_tensor(vox, dtype=torch.float32))
    return b.pos, b.x


def _save_row(images, path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    s = images[0].shape[0]
    fig = Figure(figsize=(len(images) * s / 100, s / 100 + 0.4), dpi=100)
    for i, img in enumerate(images):
        ax = fig.add_axes((i / len(images), 0.0, 1 / len(images), s / 100 / fig.get_figheight()))
        ax.imshow(img)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    t_start = time.perf_counter()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        vox = augmented_voxels(load_bunny_points(), args.num_shapes, args.resolution, seed=args.seed)
        name = "Stanford bunny (PyGSP point cloud), voxelised and augmented"
    else:
        vox, name = load_voxel_folder(args.data), str(args.data)
    n_test = max(1, len(vox) // 8)
    train_vox, test_vox = vox[:-n_test], vox[-n_test:]
    summary: Dict[str, Any] = {"data": name, "shapes": int(len(vox)), "train": int(len(train_vox)),
                               "test": int(len(test_vox)), "grid": list(vox.shape[1:]),
                               "data_occupied_fraction": float(vox.mean())}
    rows = []
    for v in train_vox[:3]:
        rows += render_occupancy(v, views=(("training shape", 20.0, -60.0),), image_size=args.image_size)
    _save_row(rows, out / "training_shapes.png", f"training shapes ({'x'.join(map(str, vox.shape[1:]))} voxels)")
    summary["figures"] = ["training_shapes.png"]
    if args.model in ("both", "vamoh"):
        summary["vamoh"] = run_vamoh(args, train_vox, test_vox, out)
    if args.model in ("both", "gasp"):
        summary["gasp"] = run_gasp(args, train_vox, out)
    summary["total_seconds"] = round(time.perf_counter() - t_start, 1)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
