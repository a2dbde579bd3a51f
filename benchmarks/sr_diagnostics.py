"""Where VaMoH's super-resolution error comes from, on the embedded ERA5 sample (4 to 1 degree).

Loads a model saved by ``benchmarks/quality.py --save`` and prints, on the held-out (and the training) fields:

* the baselines: bilinear interpolation, and bilinear plus the training fields' mean sub-grid residual;
* the model's super-resolution with its residuals at the 4-degree points interpolated three ways (inverse squared
  distance of the 4 or 8 nearest, as ``reconstruct(..., residual_neighbors=k)``, and bilinear on the grid), each
  also with a static bias correction, the training fields' mean error of the same method at each 1-degree point;
* the sub-grid part of the model's prediction (1-degree values minus bilinear interpolation of its 4-degree ones)
  against the true sub-grid part, next to the mean residual's: RMS in kelvin;
* the blend ``baseline + a (model - baseline)`` of the model (bilinear residuals) with bilinear plus the mean
  residual, for a in 0, 0.25, ..., 1: how much of what the model adds carries over to held-out fields.

Run: ``bash scripts/run python benchmarks/sr_diagnostics.py --variant default_fine_base --load outputs/quality``
(after ``benchmarks/quality.py --dataset era5 --variants default_fine_base --save --out outputs/quality``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import quality as Q  # noqa: E402

from pcfunc.evaluation import BilinearDownscaling, score  # noqa: E402
from pcfunc.evaluation._baselines import _bilinear  # noqa: E402
from pcfunc.evaluation._harness import points_batch  # noqa: E402
from pcfunc.models._points import as_points  # noqa: E402
from pcfunc.ops import knn  # noqa: E402


def idw(grid: Any, fine: Any, values: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse squared distance interpolation of fields ``(B, N, C)`` on ``grid`` from the ``k`` nearest points."""
    q, n = (t.view(-1, k) for t in knn(grid.pos.double(), fine.pos.double(), k))
    w = 1.0 / (fine.pos.double()[q] - grid.pos.double()[n]).pow(2).sum(-1).clamp_min(1e-24)
    w = w / w.sum(1, keepdim=True)
    return (values[:, n] * w[None, :, :, None].to(values.dtype)).sum(2)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="default_fine_base", help="a VaMoH variant of benchmarks/quality.py")
    p.add_argument("--load", type=Path, required=True, help="the --out directory of quality.py --save")
    p.add_argument("--refine-steps", type=int, default=100)
    p.add_argument("--predictive-samples", type=int, default=0,
                   help="also score the posterior predictive mean of this many draws (residuals included)")
    a = p.parse_args(argv)
    data = Q.era5_data()
    model = Q.build_vamoh(data, Q.VARIANTS[a.variant])
    model.load_state_dict(torch.load(a.load / f"era5_{a.variant}.pt", weights_only=True))
    model.eval()
    grid, test, train, scale = data["grid"], data["test"], data["train"], data["scale"]
    fg, ftest, ftrain = data["fine"]
    psnr = lambda pred, truth: round(score(pred, truth, scale=scale)["psnr"], 2)  # noqa: E731
    rms = lambda t: round(float(t.pow(2).mean().sqrt()) * scale, 3)  # noqa: E731
    down = BilinearDownscaling(grid, fg, train, ftrain)
    mean_residual = down.mean.float()
    out: Dict[str, Any] = {"bilinear": psnr(down.interpolate(test), ftest),
                           "bilinear_mean_residual": psnr(down.predict(test), ftest)}
    decoded = {}
    for name, coarse in (("train", train), ("test", test)):
        pts = as_points(points_batch(grid, coarse), model.manifold, 1, "batch")
        z = model.posterior(pts, a.refine_steps)[0]
        with torch.no_grad():
            decoded[name] = (model.decode(z, grid.pos), model.decode(z, fg.pos))
    methods: Dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "idw4": lambda r: idw(grid, fg, r, 4), "idw8": lambda r: idw(grid, fg, r, 8),
        "bilinear": lambda r: _bilinear(grid, r, fg)}
    for label, interp in methods.items():
        sr = {n: decoded[n][1] + interp(c - decoded[n][0]) for n, c in (("train", train), ("test", test))}
        bias = (ftrain - sr["train"]).mean(0)
        out[f"vamoh_residuals_{label}"] = psnr(sr["test"], ftest)
        out[f"vamoh_residuals_{label}_bias_corrected"] = psnr(sr["test"] + bias, ftest)
        if label == "bilinear":
            # How much of the model's difference from the baseline carries over: the blend base + a (model - base).
            base = down.predict(test)
            out["blend_with_baseline"] = {f"{a:g}": psnr(base + a * (sr["test"] - base), ftest)
                                          for a in (0.0, 0.25, 0.5, 0.75, 1.0)}
    # The posterior predictive mean (residuals included) instead of the posterior mean's decode: averaging the
    # sub-grid part over q(z) shrinks what is specific to one latent.
    if a.predictive_samples:
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            pm = model.predictive(points_batch(grid, test), fg.pos, num_samples=a.predictive_samples,
                                  include_noise=False, generator=g, refine_steps=a.refine_steps,
                                  residual_neighbors=4).mean
        out[f"vamoh_predictive_mean_{a.predictive_samples}_idw4"] = psnr(pm.to(ftest.dtype), ftest)
    for name, coarse, fine in (("train", train, ftrain), ("test", test, ftest)):
        dc, df = decoded[name]
        model_sub = df - _bilinear(grid, dc, fg)
        true_sub = fine - _bilinear(grid, coarse, fg)
        out[f"subgrid_rms_error_{name}"] = {"vamoh": rms(model_sub - true_sub), "mean_residual": rms(mean_residual
                                                                                                    - true_sub),
                                            "vamoh_mean_vs_mean_residual": rms(model_sub.mean(0) - mean_residual)}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
