"""The in-painting tasks of a lat/lon grid, every task's prediction of one field (for maps), the refinement chosen
on validation fields, and a flat view of a quality report for metrics files."""

from __future__ import annotations

import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..manifolds import latlon_to_xyz, xyz_to_latlon
from ._points import RefineSteps, _chunks, points_batch, refine_steps_for
from ._scoring import score

__all__ = ["inpainting_masks", "task_predictions", "choose_refine_steps", "flat_report", "NORTH_AMERICA"]

#: Centre latitude, longitude and great-circle radius (degrees) of the in-painting patch on a global grid.
NORTH_AMERICA = (45.0, -100.0, 30.0)


def inpainting_masks(grid: Any, patch: Tuple[float, float, float] = NORTH_AMERICA) -> Dict[str, Tensor]:
    r"""The observed points of two in-painting tasks on a lat/lon grid, as bool masks :math:`(N,)`.

    * ``"patch"``: every point but those within a great-circle disc: ``patch`` = (latitude, longitude, radius)
      in degrees on a global grid (North America by default); on a regional grid (or a polar cap), a disc at the
      box's centre of a quarter of its smaller side.
    * ``"half"``: the eastern half observed: on a global grid the longitudes in :math:`[0, 180)`; on a regional
      one, the points east of the box's central meridian.

    Args:
        grid (LatLonGrid): The grid (``pos``, ``lat``, ``lon``, ``is_global``).
        patch (tuple of float): The global grid's disc. (default: :data:`NORTH_AMERICA`)
    """
    lat, lon = (t.double() for t in xyz_to_latlon(grid.pos.double()))
    if grid.is_global:
        centre_lat, centre_lon, radius = patch
        west = torch.remainder(lon, 360.0) >= 180.0
    else:  # a regional box: its longitudes unwrapped east from the western edge
        west_edge = float(grid.lon[0])
        east = torch.remainder(lon - west_edge + 1e-3, 360.0)  # the western edge at 0 (float32 points), not 360
        width = float(torch.remainder(grid.lon[-1] - grid.lon[0], 360.0)) if grid.lon.numel() > 1 else 0.0
        centre_lat = 0.5 * (float(grid.lat.max()) + float(grid.lat.min()))
        centre_lon = west_edge + 0.5 * width
        height = float(grid.lat.max()) - float(grid.lat.min())
        radius = 0.25 * min(height, width * math.cos(math.radians(centre_lat))) if width else 0.25 * height
        west = east < 0.5 * width
    centre = latlon_to_xyz(torch.tensor(centre_lat, dtype=torch.float64), torch.tensor(centre_lon, dtype=torch.float64))
    in_patch = torch.acos((grid.pos.double() @ centre).clamp(-1, 1)) < math.radians(radius)
    return {"patch": ~in_patch, "half": ~west}


def task_predictions(model: Any, grid: Any, values: Tensor, fine_grid: Optional[Any] = None,
                     masks: Optional[Mapping[str, Tensor]] = None, *, refine_steps: RefineSteps = 0, seed: int = 0,
                     num_samples: int = 32, **residuals: Any) -> Dict[str, Any]:
    r"""A VaMoH's prediction of every task on one field, for maps (:func:`pcfunc.render.plot_task_maps`), each call
    seeded with ``seed`` afresh:

    * ``"reconstruction"``: :meth:`~pcfunc.models.VaMoH.reconstruct` at ``grid``'s points, :math:`(N, C)`;
    * ``"super_resolution"``, ``"spread"`` (with ``fine_grid``): the mean and standard deviation of
      :meth:`~pcfunc.models.VaMoH.predictive` at its points without observation noise (the spread of the
      inferred function), :math:`(M, C)`;
    * ``"inpainted"``: ``{name: (prediction at grid's points (N, C), observed mask)}`` for each of ``masks``;
    * ``"entropy"``, ``"segmentation"``: of the posterior assignments :math:`q(c \mid x, y, z)` at the observed
      points, NaN where the value is missing, :math:`(N,)`.

    Args:
        model (VaMoH): A trained model (put in eval mode).
        grid (Grid): The points of ``values``.
        values (Tensor): One field, :math:`(N, C)` or :math:`(1, N, C)`; NaN where missing.
        fine_grid (Grid, optional): Points to super-resolve at.
        masks (dict, optional): Name to observed mask (bool :math:`(N,)`) for in-painting.
        refine_steps (int or dict): Refinement of the posterior (see :meth:`~pcfunc.models.VaMoH.reconstruct`), one
            count or ``{"reconstruction": n, "inpainting": m}`` as in :func:`~pcfunc.evaluation.evaluate_vamoh`.
        seed (int): Seed of every call's draws.
        num_samples (int): Posterior draws of the super-resolution.
        **residuals: ``residual_neighbors`` / ``residual_kernel`` of the super-resolution.
    """

    model.eval()
    v = values.reshape(1, grid.num_points, -1)
    gen = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
    one = points_batch(grid, v)
    whole, part = refine_steps_for(refine_steps, False), refine_steps_for(refine_steps, True)
    out: Dict[str, Any] = {"reconstruction": model.reconstruct(one, grid.pos, refine_steps=whole)[0]}
    if fine_grid is not None:
        sr = model.predictive(one, fine_grid.pos, num_samples=num_samples, include_noise=False,
                              refine_steps=whole, generator=gen(), **residuals)
        out["super_resolution"], out["spread"] = sr.mean[0], sr.std[0]
    out["inpainted"] = {}
    for name, m in (masks or {}).items():
        out["inpainted"][name] = (model.inpaint(points_batch(grid, v, m), grid.pos, refine_steps=part)[0], m)
    maps = model.component_maps(one, posterior=True)  # at the observed (not missing) points
    valid = ~torch.isnan(v[0]).any(-1)
    entropy, seg = torch.full((2, grid.num_points), float("nan"), dtype=torch.float64)
    entropy[valid], seg[valid] = maps.entropy[0].double(), maps.segmentation[0].double()
    out["entropy"], out["segmentation"] = entropy, seg
    return out


def choose_refine_steps(model: Any, grid: Any, values: Tensor, masks: Mapping[str, Tensor],
                        candidates: Sequence[int] = (0, 10), fields_per_call: int = 16) -> Tuple[int, Dict[int, float]]:
    r"""The refinement (:meth:`~pcfunc.models.VaMoH.inpaint`'s ``refine_steps``) that predicts the validation
    fields ``values`` best from the points of ``masks``: the mean PSNR over the masks (each scored on its hidden
    points, as the harness scores; a mask that hides no point, a reconstruction, on all its points) for each of
    ``candidates``, and the one with the highest (the fewest iterations on a tie).

    Semi-amortised refinement moves each latent to its posterior mode; whether that mode predicts better than the
    encoder's single pass depends on the data, the model and the task (on a model that is still its linear factors'
    PCA start, the mode is a ridge fit: it in-paints a hidden region better than least squares and reconstructs a
    whole field a little worse), so a recipe chooses it per task on fields that neither training nor the test saw:
    ``{"all": torch.ones(N, dtype=torch.bool)}`` for reconstruction, :func:`inpainting_masks` for in-painting.

    Args:
        model (VaMoH): The trained model (put in eval mode).
        grid (Grid): The points of ``values``.
        values (Tensor): Validation fields :math:`(B, N, C)`.
        masks (dict): Name to observed mask (bool :math:`(N,)`), e.g. :func:`inpainting_masks`.
        candidates (sequence of int): Refinement iterations to compare. (default: ``(0, 10)``)
        fields_per_call (int): Fields per call (memory). (default: ``16``)

    Returns:
        tuple: The chosen iterations, and each candidate's mean PSNR (dB).
    """
    if not masks:
        raise ValueError("masks must name at least one observed mask")
    steps = [int(c) for c in candidates]
    if not steps or any(c < 0 or c != d for c, d in zip(steps, candidates)):
        raise ValueError(f"candidates must be non-negative integers, got {tuple(candidates)!r}")
    model.eval()
    scores: Dict[int, float] = {}
    for c in steps:
        psnrs = []
        for m in masks.values():
            pred = torch.cat([model.inpaint(points_batch(grid, values[s], m), grid.pos, refine_steps=c).detach()
                              for s in _chunks(values.size(0), fields_per_call)]).to(values.dtype)
            psnrs.append(score(pred, values, ~m if not bool(m.all()) else None)["psnr"])
        scores[c] = sum(psnrs) / len(psnrs)
    best = max(sorted(scores), key=lambda c: (scores[c], -c))
    return best, scores


def flat_report(report: Mapping[str, Any], coarse: str, fine: str) -> Dict[str, Dict[str, float]]:
    """The main figures of :func:`~pcfunc.evaluation.evaluate_vamoh`'s report (with ``"uncertainty"`` from
    :func:`~pcfunc.evaluation.evaluate_uncertainty`, if present) as one flat dict for a metrics file: PSNR (dB),
    RMSE and points of VaMoH and its baselines per task, and the calibrated coverage and CRPS. ``coarse`` and
    ``fine`` name the grids in the keys (e.g. ``"4deg"``, ``"1deg"``: ``"super_resolution_1deg"``)."""
    t = report["tasks"]
    def row(d: Mapping[str, Any]) -> Dict[str, float]:
        out = {"psnr_db": d["psnr"], "rmse_k": d["rmse"], "points": d["points"]}
        if "rmse_weighted" in d:  # area-weighted, on a latitude/longitude grid
            out.update(rmse_area_weighted_k=d["rmse_weighted"], bias_area_weighted_k=d["bias_weighted"])
        if "lsd" in d:  # the log-spectral distance to the truth, dB
            out["log_spectral_distance_db"] = d["lsd"]
        if "channels" in d:  # a field of several variables: each one's figures
            out["channels"] = [row(c) for c in d["channels"]]
        return out

    out: Dict[str, Dict[str, float]] = {
        f"reconstruction_{coarse}": row(t["reconstruction"]["vamoh"]),
        f"baseline_training_mean_{coarse}": row(t["reconstruction"]["training_mean"]),
    }
    if "super_resolution" in t:
        sr = t["super_resolution"]
        out[f"super_resolution_{fine}"] = row(sr["vamoh"])
        for method, key in (("vamoh_residuals", "super_resolution_residuals"), ("bilinear", "baseline_bilinear"),
                            ("bilinear_mean_residual", "baseline_bilinear_mean_residual")):
            if method in sr:
                out[f"{key}_{fine}"] = row(sr[method])
    for task, rows in report.get("uncertainty", {}).items():
        for method in ("vamoh_calibrated", "climatology_calibrated", "bilinear_mean_residual_calibrated",
                       "vamoh_mos_calibrated"):
            if method in rows:
                r = rows[method]
                out[f"uncertainty_{task}_{method}"] = {"coverage_50": r["coverage_50"],
                                                       "coverage_90": r["coverage_90"], "crps_k": r["crps"],
                                                       "psnr_db": r["psnr"], "rmse_k": r["rmse"],
                                                       **{k: r[k] for k in ("spread_skill", "pit_histogram")
                                                          if k in r}}
                if "weight" in rows.get(method[:-len("_calibrated")], {}):
                    out[f"uncertainty_{task}_{method}"]["weight"] = rows[method[:-len("_calibrated")]]["weight"]
    for task, rows in t.items():
        if task.startswith("inpaint_"):
            name = task[len("inpaint_"):]
            out[task] = row(rows["vamoh"])
            if "vamoh_kriged" in rows:  # with its residuals kriged (ResidualKriging)
                out[f"{task}_kriged"] = row(rows["vamoh_kriged"])
            for method, r in rows.items():
                if method in ("zonal_mean", "training_mean"):
                    out[f"baseline_{method}_{name}"] = row(r)
                elif method.startswith("pca_"):  # pca_<k>, pca_<k>_kriged
                    out[f"baseline_pca{'_kriged' if method.endswith('_kriged') else ''}_{name}"] = row(r)
    return out
