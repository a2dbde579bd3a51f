"""The scores a weather and climate scientist reads (WeatherBench 2's conventions): area-weighted RMSE, bias and MAE
of each field, the spread-skill ratio of an ensemble with its finite-ensemble correction, the rank histogram, and
the PIT histogram of Gaussian predictions."""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import Tensor

__all__ = ["weighted_scores", "spread_skill", "rank_histogram", "pit_histogram"]


def _fields(name: str, t: Tensor, lead: int) -> Tensor:
    """``t`` as ``(*lead dims, B, N, C)`` float64: a trailing channel added to ``(..., B, N)``."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dim() == lead + 2:
        t = t.unsqueeze(-1)
    if t.dim() != lead + 3:
        shape = "[S, B, N] or [S, B, N, C]" if lead else "[B, N] or [B, N, C]"
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    return t.double()


def _weights(weights: Optional[Tensor], n: int, device: torch.device) -> Tensor:
    if weights is None:
        return torch.ones(n, dtype=torch.float64, device=device)
    if not isinstance(weights, Tensor) or weights.shape != (n,):
        raise ValueError(f"weights must have shape [N] = [{n}] (one per point, e.g. LatLonGrid.point_areas), got "
                         f"{tuple(weights.shape) if isinstance(weights, Tensor) else type(weights).__name__}")
    w = weights.to(device, torch.float64)
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or not bool((w > 0).any()):
        raise ValueError("weights must be finite, non-negative and not all zero")
    return w


def _mean(values: Tensor, w: Tensor, valid: Tensor) -> Tensor:
    """Weighted mean over the points (dim -2) of the valid entries; NaN for a field without any."""
    ww = w.view(-1, 1) * valid
    total = ww.sum(-2)
    return torch.where(valid, values, 0.0).mul(ww).sum(-2) / torch.where(total > 0, total, math.nan)


def weighted_scores(pred: Tensor, target: Tensor, weights: Optional[Tensor] = None) -> Dict[str, Tensor]:
    r"""Area-weighted RMSE, bias and MAE of each field.

    .. math::
        \text{RMSE}_b = \sqrt{\frac{\sum_n w_n (\hat y_{bn} - y_{bn})^2}{\sum_n w_n}}, \quad
        \text{bias}_b = \frac{\sum_n w_n (\hat y_{bn} - y_{bn})}{\sum_n w_n}, \quad
        \text{MAE}_b = \frac{\sum_n w_n |\hat y_{bn} - y_{bn}|}{\sum_n w_n},

    with :math:`w_n` the area each point stands for (:attr:`LatLonGrid.point_areas
    <pcfunc.data.LatLonGrid.point_areas>`): on a latitude/longitude grid an unweighted mean counts a polar row as
    much as an equatorial one, though its cells are a fraction of the area (WeatherBench 2 weights by cell area).
    Points where ``target`` is missing (NaN) are left out, with their weight. Without ``weights``, the plain means.

    Args:
        pred (Tensor): Predictions :math:`(B, N)` or :math:`(B, N, C)`.
        target (Tensor): Truth, the same shape; NaN where missing.
        weights (Tensor, optional): Non-negative weights :math:`(N,)`. (default: equal)

    Returns:
        dict: ``rmse``, ``bias`` and ``mae``, each :math:`(B, C)` (NaN for a field without valid points), in the
        data's units.
    """
    p, y = _fields("pred", pred, 0), _fields("target", target, 0)
    if p.shape != y.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    w = _weights(weights, p.size(1), p.device)
    err = p - y
    valid = torch.isfinite(y)
    if not bool(torch.isfinite(torch.where(valid, p, 0.0)).all()):
        raise ValueError("pred must be finite where target is")
    return {"rmse": _mean(err * err, w, valid).sqrt(), "bias": _mean(err, w, valid), "mae": _mean(err.abs(), w, valid)}


def spread_skill(samples: Tensor, target: Tensor, weights: Optional[Tensor] = None) -> Dict[str, Tensor]:
    r"""The spread-skill ratio of an ensemble of :math:`S` members, with the finite-ensemble correction (Fortin et
    al., 2014, Eq. 7):

    .. math::
        \text{skill}_b = \sqrt{\overline{(\bar x_{bn} - y_{bn})^2}}, \quad
        \text{spread}_b = \sqrt{\overline{\tfrac{1}{S-1} \textstyle\sum_s (x_{sbn} - \bar x_{bn})^2}}, \quad
        \text{ratio}_b = \sqrt{\frac{S+1}{S}}\, \frac{\text{spread}_b}{\text{skill}_b},

    the bars being (area-)weighted means over the points. A ratio of 1 is what a calibrated ensemble gives on
    average (the truth behaves like one more member); below 1 the ensemble is under-dispersed (over-confident).

    Args:
        samples (Tensor): Members :math:`(S, B, N)` or :math:`(S, B, N, C)`, :math:`S \ge 2`.
        target (Tensor): Truth :math:`(B, N)` or :math:`(B, N, C)`; NaN where missing.
        weights (Tensor, optional): Non-negative weights :math:`(N,)`. (default: equal)

    Returns:
        dict: ``spread``, ``skill`` and ``ratio``, each :math:`(B, C)`.
    """
    x, y = _fields("samples", samples, 1), _fields("target", target, 0)
    if x.shape[1:] != y.shape or x.size(0) < 2:
        raise ValueError(f"samples must have shape [S, *target.shape] with S >= 2, got {tuple(samples.shape)} for "
                         f"target {tuple(target.shape)}")
    S = x.size(0)
    w = _weights(weights, y.size(1), y.device)
    valid = torch.isfinite(y)
    mean = x.mean(0)
    skill = _mean((mean - y) ** 2, w, valid).sqrt()
    spread = _mean(x.var(0, unbiased=True), w, valid).sqrt()
    return {"spread": spread, "skill": skill, "ratio": math.sqrt((S + 1) / S) * spread / skill}


def rank_histogram(samples: Tensor, target: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    r"""The rank histogram (Talagrand diagram) of an ensemble: how many truths fall in each of the :math:`S + 1`
    intervals the sorted members make.

    The rank of a truth :math:`y` among members :math:`x_1, \dots, x_S` is the number of members below it; ties
    (members equal to :math:`y`) are broken uniformly at random. A calibrated ensemble gives a flat histogram; a
    U shape is under-dispersion, a dome over-dispersion, a slope a bias. Missing truths (NaN) are not counted.

    Args:
        samples (Tensor): Members :math:`(S, *)`.
        target (Tensor): Truths :math:`(*)`.
        generator (torch.Generator, optional): For the tie-breaking.

    Returns:
        Tensor: Counts :math:`(S + 1,)`, int64.
    """
    if not isinstance(samples, Tensor) or not isinstance(target, Tensor):
        raise TypeError("samples and target must be tensors")
    if samples.dim() < 1 or samples.shape[1:] != target.shape or samples.size(0) < 1:
        raise ValueError(f"samples must have shape [S, *target.shape] with S >= 1, got {tuple(samples.shape)} for "
                         f"target {tuple(target.shape)}")
    S = samples.size(0)
    x, y = samples.detach().double().cpu().flatten(1), target.detach().double().cpu().reshape(1, -1)
    keep = torch.isfinite(y[0])
    x, y = x[:, keep], y[:, keep]
    below = (x < y).sum(0)
    ties = (x == y).sum(0)
    u = torch.rand(below.shape, generator=generator, dtype=torch.float64)
    rank = below + torch.floor(u * (ties + 1)).long()
    return torch.bincount(rank, minlength=S + 1)


def pit_histogram(mean: Tensor, std: Tensor, target: Tensor, bins: int = 10) -> Tensor:
    r"""The probability integral transform histogram of Gaussian predictions: the share of truths whose
    predictive CDF value :math:`u = \Phi\big((y - \mu) / \sigma\big)` falls in each of ``bins`` equal bins of
    :math:`[0, 1]`.

    The continuous counterpart of :func:`rank_histogram` for a predictive given by its mean and standard
    deviation: flat (every share :math:`1/\text{bins}`) when the predictions are calibrated; a U shape is
    over-confidence, a dome under-confidence, a slope a bias. Missing truths (NaN) are not counted.

    Args:
        mean (Tensor): Predictive means, any shape.
        std (Tensor): Predictive standard deviations, positive, same shape.
        target (Tensor): Truths, same shape.
        bins (int): Number of bins. (default: ``10``)

    Returns:
        Tensor: Shares :math:`(\text{bins},)`, float64, summing to 1 (NaN when no truth is present).
    """
    if not all(isinstance(t, Tensor) for t in (mean, std, target)):
        raise TypeError("mean, std and target must be tensors")
    if not mean.shape == std.shape == target.shape:
        raise ValueError(f"mean, std and target must have one shape, got {tuple(mean.shape)}, {tuple(std.shape)} and "
                         f"{tuple(target.shape)}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    m, s, y = (t.detach().double().cpu().reshape(-1) for t in (mean, std, target))
    keep = torch.isfinite(y)
    if bool((s[keep] <= 0).any()) or not bool(torch.isfinite(s[keep]).all()):
        raise ValueError("std must be positive and finite where target is present")
    u = torch.special.ndtr((y[keep] - m[keep]) / s[keep])
    counts = torch.bincount((u * bins).long().clamp_(0, bins - 1), minlength=bins).double()
    return counts / counts.sum() if counts.sum() > 0 else torch.full((bins,), math.nan, dtype=torch.float64)
