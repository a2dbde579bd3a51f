"""Learning curve: held-out reconstruction and in-painting against the number of training fields, VaMoH next to
the training mean and PCA with as many components as the latent dimension.

Each point of the curve is one run of ``examples/era5_sphere.py`` with its default recipe (the budget follows the
data, early stopping on the held-out PSNR) on the **last N** training steps of a file, scored on the same held-out
steps (the last quarter of the file) by the quality harness (:func:`pcfunc.evaluation.evaluate_vamoh`) with the
example's refinement, chosen per task on its validation fields (``--refine-steps 0``: the paper's single forward
pass for every task). The baselines are fitted on the same N fields. Runs one after the other in this process; prints one table and writes
``--out/learning_curve.json``.

Examples::

    python benchmarks/learning_curve.py --dataset era5 --sizes 6 12 18
    python benchmarks/learning_curve.py --dataset winds --sizes 24 99
    python benchmarks/learning_curve.py --dataset file --data t2m_month.nc --resolution 0.5 --sizes 64 256 558
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
#: The development datasets: name -> the example's data arguments.
DATASETS: Dict[str, List[str]] = {
    "era5": [],  # the embedded sample: 2 m temperature, 18 training fields at 4 degrees, truth at 1 degree
    "winds": ["--data", str(ROOT.parent / "shared" / "data" / "fnoc_winds_1982_1992.nc"), "--variable", "u10",
              "--resolution", "5"],  # 99 monthly fields at 5 degrees, truth at 2.5 degrees
}
ROWS = ("reconstruction", "inpaint_patch", "inpaint_half")


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("era5_sphere", ROOT / "examples" / "era5_sphere.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=[*DATASETS, "file"], default="era5")
    p.add_argument("--data", type=Path, default=None, help="with --dataset file: a NetCDF/Zarr file")
    p.add_argument("--variable", default=None, help="with --dataset file: its variable")
    p.add_argument("--resolution", type=float, default=None, help="with --dataset file: training grid (degrees)")
    p.add_argument("--sizes", type=int, nargs="+", required=True, help="training fields of each run")
    p.add_argument("--refine-steps", type=int, default=None,
                   help="refinement steps at inference for every task (default: the example's choice per task on "
                        "its validation fields)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further arguments of the example")
    p.add_argument("--out", type=Path, default=Path("outputs/learning_curve"))
    args = p.parse_args(argv)
    if args.dataset == "file" and args.data is None:
        p.error("--dataset file needs --data")
    if any(n < 1 for n in args.sizes):
        p.error(f"--sizes must be positive, got {args.sizes}")
    if args.refine_steps is not None and args.refine_steps < 0:
        p.error(f"--refine-steps must be >= 0, got {args.refine_steps}")
    return args


def data_arguments(args: argparse.Namespace) -> List[str]:
    if args.dataset != "file":
        return list(DATASETS[args.dataset])
    out = ["--data", str(args.data)]
    if args.variable:
        out += ["--variable", args.variable]
    if args.resolution:
        out += ["--resolution", str(args.resolution)]
    return out


def psnr_cells(tasks: Dict[str, Dict[str, Dict[str, float]]]) -> Dict[str, float]:
    """``task/method`` -> PSNR of the harness's tasks in :data:`ROWS` (``pca_<k>`` named ``pca``, ``pca_<k>_kriged``
    ``pca_kriged``), and VaMoH on its own training fields."""
    out = {}
    for task in ROWS:
        for method, v in tasks[task].items():
            name = ("pca_kriged" if method.endswith("_kriged") else "pca") if method.startswith("pca_") else method
            out[f"{task}/{name}"] = round(v["psnr"], 2)
    out["reconstruction_train/vamoh"] = round(tasks["reconstruction_train"]["vamoh"]["psnr"], 2)
    return out


def run(args: argparse.Namespace) -> List[Dict[str, Any]]:
    era5 = _example()
    results = []
    for n in args.sizes:
        out = args.out / f"{args.dataset}_n{n}"
        refine = [] if args.refine_steps is None else ["--refine-steps", str(args.refine_steps)]
        argv = [*data_arguments(args), "--train-fields", str(n), *refine, "--predictive-samples", "0", "--globe-size", "64", "--no-progress", "--seed", str(args.seed),
                "--out", str(out), *args.extra]
        if (out / "checkpoints").is_dir():
            argv.append("--resume")
        t0 = time.perf_counter()
        summary = era5.main(argv)
        tasks = summary["quality"]["tasks"]
        row: Dict[str, Any] = {"train_fields": n, "test_fields": summary["test_fields"], "steps": summary["steps"],
                               "train_seconds": summary["train_seconds"], "seconds": round(time.perf_counter() - t0, 1),
                               "convergence": summary["convergence"]["verdict"]}
        row.update(psnr_cells(tasks))
        results.append(row)
        (args.out / "learning_curve.json").write_text(json.dumps(results, indent=2))
    return results


#: The methods of each task in the table: in-painting also with kriged residuals (ResidualKriging).
METHODS = {"reconstruction": ("vamoh", "pca", "training_mean"),
           "inpaint_patch": ("vamoh", "vamoh_kriged", "pca", "pca_kriged", "training_mean"),
           "inpaint_half": ("vamoh", "vamoh_kriged", "pca", "pca_kriged", "training_mean")}


def table(results: Sequence[Dict[str, Any]]) -> str:
    cols = [(t, m) for t in ROWS for m in METHODS[t]]
    lines = [f"{'fields':>6} {'steps':>6} " + " ".join(f"{t[:14] + ' ' + m.replace('training_', ''):>27}"
                                                     for t, m in cols)]
    for r in results:
        cells = [r.get(f"{t}/{m}") for t, m in cols]
        lines.append(f"{r['train_fields']:>6} {r['steps']:>6} " + " ".join(
            f"{c:>27.2f}" if c is not None else f"{'-':>27}" for c in cells))
    lines.append("PSNR (dB) on the held-out fields; in-painting scored on the hidden points.")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(args)
    print(table(results))
    for r in results:
        print(f"N={r['train_fields']}: {r['steps']} steps in {r['train_seconds']} s; {r['convergence']}")
    return results


if __name__ == "__main__":
    main()
