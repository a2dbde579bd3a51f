"""Scoring one method's fields on one task (PSNR, RMSE, area-weighted RMSE and bias, spectra) and printing a report
of the quality harness."""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..data import LatLonGrid
from ..metrics import psnr, rmse, weighted_scores
from ._baselines import observed_mask, valid_points

__all__ = ["score", "format_report"]

Scale = Union[float, Sequence[float], Tensor]


def channel_scale(scale: Scale, channels: int, name: str = "scale") -> Tensor:
    """``scale`` (one number, or one per channel) as a float64 tensor of ``channels`` factors, applied along the
    last axis of :math:`(B, N, C)` fields to put normalised values in data units."""
    s = torch.as_tensor(scale, dtype=torch.float64).detach().cpu().reshape(-1)
    if s.numel() == 1:
        s = s.expand(channels)
    if s.numel() != channels or not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name} must be one finite number or one per channel ({channels}), got {scale!r}")
    return s.clone()


def score(pred: Tensor, truth: Tensor, hidden: Optional[Tensor] = None, data_range: float = 1.0,
          scale: Scale = 1.0, weights: Optional[Tensor] = None) -> Dict[str, Any]:
    r"""PSNR (VaMoH App. B.3) and RMSE of ``pred`` against ``truth`` (each :math:`(B, N, C)`), per field on its
    ``hidden`` points (bool :math:`(N,)` or :math:`(B, N)`; ``None``: all) where ``truth`` is not missing (NaN),
    averaged over the fields that have such points; RMSE of the errors times ``scale`` (data units; one factor, or
    one per channel for a field of several variables). ``points``: the points scored per field (their mean,
    rounded, when fields differ). With ``weights`` (:math:`(N,)`, e.g. :attr:`LatLonGrid.point_areas
    <pcfunc.data.LatLonGrid.point_areas>`) also ``rmse_weighted`` and ``bias_weighted``
    (:func:`pcfunc.metrics.weighted_scores` on the same points, averaged over the fields, in data units). With
    :math:`C > 1` channels, ``channels`` lists the same figures for each channel alone."""
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {tuple(pred.shape)} and {tuple(truth.shape)}")
    s = channel_scale(scale, truth.size(-1))
    out: Dict[str, Any] = _score(pred, truth, hidden, data_range, s)
    if weights is not None:
        B, N = truth.shape[:2]
        keep = valid_points(truth) & (True if hidden is None else observed_mask(hidden, B, N, "hidden"))
        t = torch.where(keep[..., None], truth.double(), math.nan)
        w = weighted_scores(pred.double() * s, t * s, weights)
        fields = torch.isfinite(w["rmse"])
        out["rmse_weighted"] = float(w["rmse"][fields].mean())
        out["bias_weighted"] = float(w["bias"][fields].mean())
    if truth.size(-1) > 1:
        out["channels"] = [score(pred[..., c:c + 1], truth[..., c:c + 1], hidden, data_range, s[c], weights)
                           for c in range(truth.size(-1))]
    return out


def _score(pred: Tensor, truth: Tensor, hidden: Optional[Tensor], data_range: float, s: Tensor) -> Dict[str, float]:
    valid = valid_points(truth)
    if bool(valid.all()) and (hidden is None or hidden.dim() == 1):  # every field on the same points
        p, t = (pred, truth) if hidden is None else (pred[:, hidden], truth[:, hidden])
        if t.size(1) == 0:
            raise ValueError("hidden selects no point")
        return {"psnr": float(psnr(p.double(), t.double(), data_range=data_range).mean()),
                "rmse": float(rmse(p.double() * s, t.double() * s).mean()), "points": int(t.size(1))}
    B, N = valid.shape
    mask = valid if hidden is None else valid & observed_mask(hidden, B, N, "hidden")
    counts = mask.sum(1)
    if int(counts.sum()) == 0:
        raise ValueError("hidden selects no point that is not missing")
    fields = counts > 0
    index = torch.cumsum(fields.long(), 0) - 1  # fields with points, numbered 0..F-1
    batch = index[:, None].expand(B, N)[mask]
    p, t = pred[mask].double(), truth[mask].double()
    return {"psnr": float(psnr(p, t, data_range=data_range, batch=batch).mean()),
            "rmse": float(rmse(p * s, t * s, batch=batch).mean()),
            "points": int(round(float(counts[fields].double().mean())))}


def _spectra(grid: Any, truth: Tensor,
             preds: Mapping[str, Tensor]) -> Optional[Tuple[Dict[str, Any], Dict[str, float]]]:
    """Power spectra (first channel) of the true fields and each method's, averaged over the fields (``degree``,
    ``truth``, one entry per method), and each method's mean log-spectral distance to the truth, field by field
    (dB); ``None`` unless ``grid`` is a global latitude/longitude grid from pole to pole and nothing is missing."""
    from ..metrics import log_spectral_distance, power_spectrum

    if not isinstance(grid, LatLonGrid) or not bool(valid_points(truth).all()):
        return None
    fields = [truth, *preds.values()]  # one transform for all: the Legendre functions are computed once
    try:
        specs = power_spectrum(grid.to_array(torch.cat(fields)[..., :1].double())[..., 0], grid.lat, grid.lon)
    except ValueError:  # regional, or not evenly spaced
        return None
    ref, *rest = specs.split([f.size(0) for f in fields])
    spectra: Dict[str, Any] = {"degree": list(range(ref.size(-1))), "truth": ref.mean(0).tolist()}
    lsd: Dict[str, float] = {}
    for name, spec in zip(preds, rest):
        spectra[name], lsd[name] = spec.mean(0).tolist(), float(log_spectral_distance(spec, ref).mean())
    return spectra, lsd


def format_report(report: Mapping[str, Any], units: str = "", channels: Optional[Sequence[str]] = None) -> str:
    """A plain-text table of a report from :func:`evaluate_vamoh` or :func:`evaluate_gasp`; for a field of several
    variables, each method's row is followed by one row per channel, named by ``channels`` (default: ``ch0``,
    ``ch1``, ...)."""
    lines = []
    tasks = report.get("tasks", {})
    if tasks:
        weighted = any("rmse_weighted" in v for row in tasks.values() for v in row.values())
        extra = f"{'RMSE area-wt':>13}{'bias area-wt':>13}" if weighted else ""
        lines.append(f"{'task':<24}{'method':<16}{'PSNR dB':>9}{'RMSE ' + units:>12}{extra}{'points':>9}")
        for task, row in tasks.items():
            best = max(v["psnr"] for v in row.values())
            for i, (method, v) in enumerate(row.items()):
                mark = " *" if v["psnr"] == best else ""
                cells = (f"{v.get('rmse_weighted', math.nan):>13.3f}{v.get('bias_weighted', math.nan):>13.3f}"
                         if weighted else "")
                lines.append(f"{task if i == 0 else '':<24}{method:<16}{v['psnr']:>9.2f}{v['rmse']:>12.3f}{cells}"
                             f"{v['points']:>9}{mark}")
                for c, ch in enumerate(v.get("channels", [])):
                    name = str(channels[c]) if channels is not None and c < len(channels) else f"ch{c}"
                    cells = (f"{ch.get('rmse_weighted', math.nan):>13.3f}{ch.get('bias_weighted', math.nan):>13.3f}"
                             if weighted else "")
                    lines.append(f"{'':<24}{'  ' + name:<16}{ch['psnr']:>9.2f}{ch['rmse']:>12.3f}{cells}"
                                 f"{ch['points']:>9}")
    health = report.get("health", {})
    if health:
        lines.append("health: " + json.dumps(health, default=lambda o: round(o, 4) if isinstance(o, float) else str(o)))
    lsd = {m: v["lsd"] for m, v in tasks.get("super_resolution", {}).items() if "lsd" in v}
    if lsd:
        lines.append("log-spectral distance to the truth (dB, super-resolution): "
                     + ", ".join(f"{m} {v:.2f}" for m, v in lsd.items()))
    unc = report.get("uncertainty", {})
    if unc:
        lines.append(f"{'uncertainty':<24}{'method':<30}{'cover 50%':>10}{'cover 90%':>10}{'CRPS ' + units:>12}"
                     f"{'spread/skill':>13}{'PSNR dB':>9}")
        for task, row in unc.items():
            for i, (method, v) in enumerate(row.items()):
                lines.append(f"{task if i == 0 else '':<24}{method:<30}{v['coverage_50']:>10.3f}"
                             f"{v['coverage_90']:>10.3f}{v['crps']:>12.4f}{v.get('spread_skill', math.nan):>13.3f}"
                             f"{v['psnr']:>9.2f}")
    if "elbo_per_point" in report:
        lines.append("ELBO per point: " + ", ".join(f"{k} {v:.4f}" for k, v in report["elbo_per_point"].items()))
    return "\n".join(lines)
