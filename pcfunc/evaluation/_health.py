"""Figures that tell whether a generative model uses what it has: active latents, mixture usage, sample spread."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
from torch import Tensor

from .._validation import check_finite
from ._scoring import channel_scale

__all__ = ["active_units", "mixture_usage", "energy_distance", "nearest_neighbor_accuracy", "sample_statistics"]


def active_units(mean: Tensor, threshold: float = 0.01) -> int:
    r"""Number of active latent dimensions (`Burda et al., 2016 <https://arxiv.org/abs/1509.00519>`_).

    .. math::
        A = \#\{u : \operatorname{Cov}_{\mathbf x}\big(\mathbb E_{q(\mathbf z \mid \mathbf x)}[z_u]\big) > \delta\}

    A dimension whose posterior mean does not move with the data carries no information about it.

    Args:
        mean (Tensor): Posterior means of the data, :math:`(B, Z)`, :math:`B \ge 2`.
        threshold (float): :math:`\delta` (default: ``0.01``).
    """
    if not isinstance(mean, Tensor) or mean.dim() != 2:
        raise ValueError(f"mean must have shape [B, Z], got {getattr(mean, 'shape', mean)}")
    if mean.size(0) < 2:
        raise ValueError(f"mean needs at least 2 rows for a variance, got {mean.size(0)}")
    if not threshold >= 0:
        raise ValueError(f"threshold must be non-negative, got {threshold!r}")
    return int((mean.double().var(0) > threshold).sum())


def mixture_usage(probs: Tensor, mask: Optional[Tensor] = None) -> Dict[str, object]:
    r"""How a mixture's assignments are used: mean entropy (nats) and the share of points each component wins.

    Args:
        probs (Tensor): Assignment probabilities :math:`(B, N, K)` (rows sum to 1).
        mask (Tensor, optional): Bool :math:`(B, N)` of the points to count.

    Returns:
        dict: ``mean_entropy``, ``max_entropy`` (:math:`\log K`), ``entropy_gap`` (their difference) and
        ``shares`` (list of :math:`K` fractions of points whose argmax is each component).
    """
    if not isinstance(probs, Tensor) or probs.dim() != 3:
        raise ValueError(f"probs must have shape [B, N, K], got {getattr(probs, 'shape', probs)}")
    K = probs.size(-1)
    p = probs.double()
    ent = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    win = p.argmax(-1)
    if mask is None:
        mask = torch.ones(ent.shape, dtype=torch.bool)
    if mask.shape != ent.shape:
        raise ValueError(f"mask must have shape {tuple(ent.shape)}, got {tuple(mask.shape)}")
    n = int(mask.sum())
    if n == 0:
        raise ValueError("mask selects no point")
    mean_ent = float(ent[mask].mean())
    shares = torch.bincount(win[mask], minlength=K).double() / n
    return {"mean_entropy": mean_ent, "max_entropy": math.log(K), "entropy_gap": math.log(K) - mean_ent,
            "shares": [float(s) for s in shares]}


def energy_distance(x: Tensor, y: Tensor) -> float:
    r"""Energy distance between two samples of vectors (`Székely & Rizzo, 2013
    <https://doi.org/10.1016/j.jspi.2013.03.018>`_), the V-statistic

    .. math::
        \mathcal E(X, Y) = 2\,\overline{\lVert x_i - y_j \rVert} - \overline{\lVert x_i - x_{i'} \rVert}
        - \overline{\lVert y_j - y_{j'} \rVert} \;\ge\; 0,

    zero exactly when the two empirical distributions coincide.

    Args:
        x (Tensor): :math:`(n, d)` (e.g. sampled fields, flattened).
        y (Tensor): :math:`(m, d)`.
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.size(0) == 0:
            raise ValueError(f"{name} must have shape [n, d] with n >= 1, got {getattr(t, 'shape', t)}")
    if x.size(1) != y.size(1):
        raise ValueError(f"x and y must have the same dimension, got {x.size(1)} and {y.size(1)}")
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def nearest_neighbor_accuracy(x: Tensor, y: Tensor) -> float:
    r"""The 1-nearest-neighbour two-sample test's accuracy, 1-NNA (`Lopez-Paz & Oquab, 2017
    <https://arxiv.org/abs/1610.06545>`_; the sample-quality score of PointFlow and GASP's successors).

    Every vector of :math:`X \cup Y` is labelled by the set its nearest other vector (Euclidean, leave-one-out)
    belongs to; 1-NNA is the accuracy of those labels, each set weighted equally:

    .. math::
        \text{1-NNA} = \frac{1}{2}\Big(\frac{1}{n}\sum_{x \in X} \mathbb 1[N(x) \in X]
        + \frac{1}{m}\sum_{y \in Y} \mathbb 1[N(y) \in Y]\Big),
        \qquad N(v) = \operatorname*{arg\,min}_{u \in X \cup Y \setminus \{v\}} \lVert u - v \rVert.

    50% is ideal (samples as close to the real fields as these are to each other); 100% means every sample is
    told apart (collapsed, memorised: a copy of a training field is near no held-out one, blurred); a set of
    near-duplicates scores high on its own side. Ties go to the first vector in the order ``x`` then ``y``.

    Args:
        x (Tensor): :math:`(n, d)`, :math:`n \ge 2` (e.g. sampled fields, flattened).
        y (Tensor): :math:`(m, d)`, :math:`m \ge 2` (e.g. held-out fields on the same points).

    Returns:
        float: The accuracy in :math:`[0, 1]`.
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor) or t.dim() != 2 or t.size(0) < 2:
            raise ValueError(f"{name} must have shape [n, d] with n >= 2, got {getattr(t, 'shape', t)}")
        check_finite(t, name)
    if x.size(1) != y.size(1):
        raise ValueError(f"x and y must have the same dimension, got {x.size(1)} and {y.size(1)}")
    n = x.size(0)
    both = torch.cat((x, y)).double()
    dist = torch.cdist(both, both)
    dist.fill_diagonal_(math.inf)
    nearest = dist.argmin(1)
    same = (nearest < n) == (torch.arange(both.size(0)) < n)
    return float(0.5 * (same[:n].double().mean() + same[n:].double().mean()))


def sample_statistics(samples: Tensor, reference: Tensor, scale: Any = 1.0) -> Dict[str, float]:
    r"""Samples of a generative model against real held-out fields on the same points.

    Args:
        samples (Tensor): Sampled fields :math:`(S, N, C)`, :math:`S \ge 2`.
        reference (Tensor): Real fields :math:`(R, N, C)`, :math:`R \ge 2`.
        scale (float or sequence of float): Multiplies every figure in data units (e.g. the normaliser's range,
            for kelvin); one factor per channel for a field of several variables.

    Returns:
        dict: ``sample_spread`` and ``reference_spread`` (the per-point standard deviation across fields,
        averaged over points), ``spread_ratio`` (samples : reference), ``mean_rmse`` (RMSE between the two
        per-point means), ``mean_within_spread`` (whether that RMSE is below the reference spread) and
        ``energy_distance`` between the sampled and real fields as vectors (divided by
        :math:`\sqrt{NC}`, so that it is in data units per point) and ``one_nn_accuracy``
        (:func:`nearest_neighbor_accuracy` of the two sets, 0.5 ideal).
    """
    for name, t in (("samples", samples), ("reference", reference)):
        if not isinstance(t, Tensor) or t.dim() != 3 or t.size(0) < 2:
            raise ValueError(f"{name} must have shape [S, N, C] with S >= 2, got {getattr(t, 'shape', t)}")
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(f"samples and reference must share [N, C], got {tuple(samples.shape[1:])} and "
                         f"{tuple(reference.shape[1:])}")
    s, r = samples.double(), reference.double()
    units = channel_scale(scale, s.size(-1)).to(s.device)
    su, ru = s * units, r * units  # data units
    s_spread = float(su.std(0).mean())
    r_spread = float(ru.std(0).mean())
    mean_rmse = float((su.mean(0) - ru.mean(0)).pow(2).mean().sqrt())
    d = s[0].numel()
    ed = energy_distance(su.flatten(1), ru.flatten(1)) / math.sqrt(d)
    return {"sample_spread": s_spread, "reference_spread": r_spread,
            "spread_ratio": s_spread / r_spread if r_spread > 0 else float("inf"),
            "mean_rmse": mean_rmse, "mean_within_spread": bool(mean_rmse <= r_spread), "energy_distance": ed,
            "one_nn_accuracy": nearest_neighbor_accuracy(s.flatten(1), r.flatten(1))}
