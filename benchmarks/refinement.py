"""Refinement at inference: quality and time of a trained VaMoH's tasks for several numbers of refinement steps.

The paper infers :math:`q(\\mathbf z)` in one forward pass of the encoder; ``refine_steps`` Adam steps on each
field's observed points (semi-amortised inference) trade time for quality. This script loads a checkpoint written by
``examples/era5_sphere.py``, rebuilds the same held-out fields (the last quarter of the file, normalised with the
training range) and scores reconstruction, the two in-painting masks and, where the data are finer than the training grid,
super-resolution to the data's grid with the example's interpolated residuals, with the quality harness
(:func:`pcfunc.evaluation.evaluate_vamoh`) for each step count, next to the training mean, PCA and bilinear
interpolation plus the mean residual; one table, in this process, with the seconds each evaluation took per
field.

Examples::

    python examples/era5_sphere.py --out runs/era5 --refine-steps 0 --predictive-samples 0
    python benchmarks/refinement.py runs/era5/model.ckpt --steps 0 10 30 100
    python benchmarks/refinement.py runs/winds/model.ckpt --data fnoc_winds_1982_1992.nc \\
        --variable u10 --resolution 5 --steps 0 30
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch

from pcfunc.data import LatLonGrid, MinMaxNormalizer, load_era5, load_era5_sample, regular_axes, split_by_time
from pcfunc.evaluation import evaluate_vamoh, inpainting_masks
from pcfunc.training import VaMoHModule

#: (task, the model's row) per column, and the baselines printed under them.
COLUMNS = (("reconstruction", "vamoh"), ("inpaint_patch", "vamoh"), ("inpaint_half", "vamoh"),
           ("super_resolution", "vamoh_residuals"))
#: The in-painting columns again with kriged residuals (:class:`pcfunc.evaluation.ResidualKriging`).
KRIGED = (("inpaint_patch", "vamoh_kriged"), ("inpaint_half", "vamoh_kriged"))
BASELINES = ("pca", "pca_kriged", "training_mean", "bilinear_mean_residual")
RESIDUALS = dict(residual_neighbors=16, residual_kernel="linear")  # as examples/era5_sphere.py


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a checkpoint of examples/era5_sphere.py")
    p.add_argument("--data", type=Path, default=None, help="the file it was trained on (default: embedded sample)")
    p.add_argument("--variable", nargs="+", default=None, help="its variable(s), as the example's --variable")
    p.add_argument("--resolution", type=float, default=4.0, help="its training grid in degrees (default: 4)")
    p.add_argument("--steps", type=int, nargs="+", default=[0, 10, 30, 100], help="refinement step counts")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if any(s < 0 for s in args.steps):
        p.error(f"--steps must be >= 0, got {args.steps}")
    if not args.checkpoint.is_file():
        p.error(f"checkpoint {args.checkpoint} does not exist")
    return args


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    args = parse_args(argv)
    variable = args.variable[0] if args.variable and len(args.variable) == 1 else args.variable
    field = load_era5_sample() if args.data is None else load_era5(args.data, variable)
    coarse = field.regrid(*regular_axes(args.resolution, field.lat, field.lon))
    train, test = split_by_time(coarse, (0.75, 0.25))
    norm = MinMaxNormalizer.fit(train)
    grid, fine_grid = LatLonGrid(coarse.lat, coarse.lon), LatLonGrid(field.lat, field.lon)

    def points(g: LatLonGrid, v: Any) -> torch.Tensor:
        return g.to_points(torch.as_tensor(norm.transform(v, clip=True), dtype=torch.float32))

    model = VaMoHModule.load_model(args.checkpoint)
    n = train.values.shape[0]
    train_x, test_x = points(grid, train.values), points(grid, test.values)
    fine = None if fine_grid.num_points <= grid.num_points else (
        fine_grid, points(fine_grid, field.values[n:]), points(fine_grid, field.values[:n]))
    rows = []
    for steps in args.steps:
        t0 = time.perf_counter()
        report = evaluate_vamoh(model, grid, train_x, test_x, masks=inpainting_masks(grid), fine=fine,
                                refine_steps=steps, scale=norm.range, seed=args.seed, **RESIDUALS)
        seconds = time.perf_counter() - t0
        row: Dict[str, Any] = {"steps": steps, "seconds_per_field": seconds / test_x.size(0)}
        for task, methods in report["tasks"].items():
            for method, v in methods.items():
                name = ("pca_kriged" if method.endswith("_kriged") else "pca") if method.startswith("pca") else method
                row[f"{task}/{name}"] = v["psnr"]
        rows.append(row)
    cols = [(t, m) for t, m in COLUMNS if f"{t}/{m}" in rows[0]]
    kriged = any(f"{t}/{m}" in rows[0] for t, m in KRIGED)
    print(f"held-out PSNR (dB) of VaMoH, {test_x.size(0)} fields; baselines in the last lines")
    print(f"{'steps':>22} {'s/field':>8} " + " ".join(f"{t:>16}" for t, _ in cols))
    for r in rows:
        print(f"{r['steps']:>22} {r['seconds_per_field']:>8.2f} " + " ".join(f"{r[f'{t}/{m}']:>16.2f}"
                                                                          for t, m in cols))
    for r in rows:  # the same model with its residuals at the observed points kriged (in-painting only)
        if kriged:
            print(f"{str(r['steps']) + ' + kriging':>22} {'':>8} " + " ".join(
                f"{r[f'{t}/vamoh_kriged']:>16.2f}" if f"{t}/vamoh_kriged" in r else f"{'-':>16}" for t, _ in cols))
    for name in BASELINES:
        print(f"{name:>31} " + " ".join(f"{rows[0][f'{t}/{name}']:>16.2f}" if f"{t}/{name}" in rows[0]
                                        else f"{'-':>16}" for t, _ in cols))
    return rows


if __name__ == "__main__":
    main()
