"""Scores of probabilistic predictions: CRPS (Gaussian and ensemble), central-interval coverage, and the
one-scalar calibration of predictive standard deviations."""

from __future__ import annotations

import math
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["crps_gaussian", "crps_ensemble", "interval_coverage", "fit_std_scale"]

_SQRT2 = math.sqrt(2.0)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


def _check_same(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if not isinstance(a, Tensor) or not isinstance(b, Tensor):
        raise TypeError(f"{name_a} and {name_b} must be tensors")
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _gaussian_inputs(mean: Tensor, std: Tensor, target: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""Checked ``mean``, ``std``, ``target`` of one shape (``std`` finite, :math:`\geq 0`), in float64."""
    _check_same("mean", mean, "target", target)
    _check_same("std", std, "target", target)
    if bool((std < 0).any()) or not bool(torch.isfinite(std).all()):
        raise ValueError("std must be finite and non-negative")
    return mean.double(), std.double(), target.double()


def _z(level: Any) -> float:
    r""":math:`\Phi^{-1}(\tfrac{1 + \text{level}}{2})`, the half-width of the central ``level`` interval in standard
    deviations."""
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a probability in (0, 1), got {level!r}")
    return _SQRT2 * float(torch.erfinv(torch.tensor(float(level), dtype=torch.float64)))


def crps_gaussian(mean: Tensor, std: Tensor, target: Tensor) -> Tensor:
    r"""Continuous ranked probability score of Gaussian predictions, elementwise (closed form; Gneiting and
    Raftery, 2007):

    .. math::
        \mathrm{CRPS}(\mathcal N(\mu, \sigma^2), y) = \sigma \left[ z \left(2 \Phi(z) - 1\right) + 2 \varphi(z)
        - \frac{1}{\sqrt\pi} \right], \qquad z = \frac{y - \mu}{\sigma},

    and :math:`|y - \mu|` where :math:`\sigma = 0` (the score of a point forecast). Lower is better; in the units
    of the data; :math:`\mathbb E\,|X - y| - \tfrac12 \mathbb E\,|X - X'|` for :math:`X, X' \sim \mathcal N(\mu,
    \sigma^2)`.

    Args:
        mean (Tensor): Predictive means, any shape.
        std (Tensor): Predictive standard deviations (:math:`\geq 0`), same shape.
        target (Tensor): Observed values, same shape.

    Returns:
        Tensor: The score of every element, the shape of ``target``.
    """
    m, s, y = _gaussian_inputs(mean, std, target)
    err = y - m
    safe = s.clamp_min(1e-300)
    z = err / safe
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + torch.erf(z / _SQRT2))
    out = safe * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - _INV_SQRT_PI)
    return torch.where(s > 0, out, err.abs()).to(target.dtype)


def crps_ensemble(samples: Tensor, target: Tensor, fair: bool = False) -> Tensor:
    r"""CRPS of the empirical distribution of ``S`` samples, elementwise:

    .. math::
        \mathrm{CRPS} = \frac1S \sum_s |x_s - y| - \frac{1}{2 S^2} \sum_{s, s'} |x_s - x_{s'}|,

    the second sum in :math:`O(S \log S)` from the sorted samples, :math:`\sum_{s,s'} |x_s - x_{s'}| =
    2 \sum_i (2 i - S - 1)\, x_{(i)}`. For predictive draws that are not Gaussian (mixtures). With
    ``fair=True`` the second term is divided by :math:`2 S (S - 1)` instead (Ferro, 2014): the expected score
    of an ensemble of :math:`S` draws then equals the CRPS of the distribution they are drawn from, so
    ensembles of different sizes compare fairly (WeatherBench 2's ensemble CRPS).

    Args:
        samples (Tensor): Draws, shape :math:`(S, *)` (:math:`S \ge 2` with ``fair``).
        target (Tensor): Observed values, shape :math:`(*)`.
        fair (bool): The fair (unbiased) estimator. (default: ``False``)

    Returns:
        Tensor: Shape :math:`(*)`.
    """
    if not isinstance(samples, Tensor) or not isinstance(target, Tensor):
        raise TypeError("samples and target must be tensors")
    if samples.dim() < 1 or samples.shape[1:] != target.shape:
        raise ValueError(f"samples must have shape [S, *target.shape] = [S, {', '.join(map(str, target.shape))}], "
                         f"got {tuple(samples.shape)}")
    S = samples.size(0)
    if S < 1:
        raise ValueError("samples must hold at least one draw")
    x = samples.double()
    first = (x - target.double()).abs().mean(0)
    srt = x.sort(0).values
    i = torch.arange(1, S + 1, dtype=torch.float64, device=x.device).view(S, *([1] * target.dim()))
    if fair and S < 2:
        raise ValueError("the fair CRPS needs at least two draws")
    spread = ((2 * i - S - 1) * srt).sum(0) * (2.0 / (S * (S - 1) if fair else S * S))
    return (first - 0.5 * spread).to(target.dtype)


def interval_coverage(mean: Tensor, std: Tensor, target: Tensor, level: float = 0.9) -> Tensor:
    r"""Whether each target lies in the central ``level`` interval of its Gaussian prediction,
    :math:`|y - \mu| \leq \Phi^{-1}\!\left(\tfrac{1 + \text{level}}{2}\right) \sigma`.

    The mean of the result is the interval's coverage: about ``level`` for calibrated predictions, less
    for over-confident ones.

    Args:
        mean (Tensor): Predictive means, any shape.
        std (Tensor): Predictive standard deviations (:math:`\geq 0`), same shape.
        target (Tensor): Observed values, same shape.
        level (float): Probability of the interval, in :math:`(0, 1)`. (default: ``0.9``)

    Returns:
        Tensor: bool, the shape of ``target``.
    """
    m, s, y = _gaussian_inputs(mean, std, target)
    return (y - m).abs() <= _z(level) * s


def fit_std_scale(mean: Tensor, std: Tensor, target: Tensor, mask: Optional[Tensor] = None,
                  level: Optional[float] = None) -> float:
    r"""The factor :math:`s` by which to multiply predictive standard deviations, fitted on held-out data (a
    one-parameter recalibration, as temperature scaling is for classifiers).

    With ``level=None``, the :math:`s` that minimises the mean Gaussian CRPS,

    .. math::
        s^\star = \arg\min_{s > 0} \frac1n \sum_i \mathrm{CRPS}\left(\mathcal N(\mu_i, s^2 \sigma_i^2), y_i\right),

    convex in :math:`s` (:math:`\partial^2 / \partial s^2 \geq 0` term by term), found by golden-section search
    on :math:`\log s`. With a ``level``, the :math:`s` whose central ``level`` interval
    :math:`\mu_i \pm \Phi^{-1}(\tfrac{1 + \text{level}}{2})\, s \sigma_i` covers that fraction of the
    points: the ``level`` quantile of :math:`|y_i - \mu_i| / \sigma_i` over
    :math:`\Phi^{-1}(\tfrac{1 + \text{level}}{2})` (split conformal prediction with normalised scores; `Lei et
    al., 2018 <https://arxiv.org/abs/1604.04173>`_). Errors with heavier tails than a Gaussian's need a
    different factor for each level.

    Fit it on fields and points that neither trained the model nor are scored with it (a calibration split),
    then pass it as ``std_scale`` to :meth:`~pcfunc.models.VaMoH.predictive`.

    Args:
        mean (Tensor): Predictive means, any shape.
        std (Tensor): Predictive standard deviations (:math:`\geq 0`, not all zero), same shape.
        target (Tensor): Held-out values, same shape.
        mask (Tensor, optional): bool, broadcastable to ``target``'s shape: the elements to use.
        level (float, optional): Interval probability in :math:`(0, 1)`, or ``None`` for the CRPS.

    Returns:
        float: The factor (for the CRPS within :math:`[10^{-4}, 10^{4}]`).
    """
    m, s, y = _gaussian_inputs(mean, std, target)
    if mask is not None:
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise TypeError("mask must be a bool tensor")
        try:
            mask = mask.expand_as(y)
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to {tuple(y.shape)}") from None
        m, s, y = m[mask], s[mask], y[mask]
    keep = s > 0
    if not bool(keep.any()):
        raise ValueError("std must be positive somewhere (in mask)")
    m, s, y = m[keep], s[keep], y[keep]
    if level is not None:
        z = _z(level)
        score = ((y - m).abs() / s).flatten()
        # The ceil(level (n + 1))-th smallest score: the split-conformal quantile.
        rank = min(score.numel(), math.ceil(float(level) * (score.numel() + 1)))
        return float(score.kthvalue(rank).values) / z

    def loss(log_scale: float) -> float:
        return float(crps_gaussian(m, s * math.exp(log_scale), y).mean())

    lo, hi = math.log(1e-4), math.log(1e4)
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(80):  # interval shrinks by 0.618 per step: 80 steps reach ~1e-15 of 18.4
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return math.exp(0.5 * (lo + hi))
