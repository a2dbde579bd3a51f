"""The mathematics of the likelihoods: stable log-probabilities, normalisers, means and mixtures (no modules)."""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "discretized_logistic_log_prob",
    "discretized_logistic_mixture_log_prob",
    "continuous_bernoulli_log_norm",
    "continuous_bernoulli_mean",
    "continuous_bernoulli_variance",
    "mixture_log_prob",
    "mixture_mean",
]

_LN2 = math.log(2.0)
# Below this |logit| continuous Bernoulli sampling uses the first-order expansion of its inverse CDF.
_CB_SAMPLE_TAYLOR = 1e-6
_SCALE_MODES = ("learned", "predicted", "fixed")
_LINKS = ("sigmoid", "identity")


# --------------------------------------------------------------------------- math
def _cb_taylor_bound(dtype: torch.dtype) -> float:
    # Below this |logit| the continuous Bernoulli uses Taylor series (the closed forms are 0/0 at 0): where the
    # closed forms' rounding error (~eps / |logit|) and the truncated series' error (~|logit|^9 / 1e8) cross.
    return 0.5 if torch.finfo(dtype).eps > 1e-10 else 0.1


def _log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(-x))`` for ``x > 0`` (Maechler 2012); both branches finite so gradients stay finite."""
    small, large = x.clamp(max=_LN2), x.clamp(min=_LN2)
    return torch.where(x < _LN2, torch.log(-torch.expm1(-small)), torch.log1p(-torch.exp(-large)))


def _clamp_log_scale(log_scale: Tensor) -> Tensor:
    # Keep 1/s finite in the dtype; scales beyond the bound are numerically degenerate anyway.
    bound = 0.85 * math.log(torch.finfo(log_scale.dtype).max)
    return log_scale.clamp(-bound, bound)


def _discretized_logistic_log_prob(y: Tensor, loc: Tensor, log_scale: Tensor, num_bins: int) -> Tensor:
    last = num_bins - 1
    index = torch.round(y * last)
    inv_scale = torch.exp(-_clamp_log_scale(log_scale))
    # Edges as (i +- 1/2) / last: the upper edge of bin i is the same float as the lower edge of bin i + 1.
    upper = ((index + 0.5) / last - loc) * inv_scale
    lower = ((index - 0.5) / last - loc) * inv_scale
    log_cdf_upper = F.logsigmoid(upper)
    log_sf_lower = F.logsigmoid(-lower)
    # sigma(a) - sigma(b) = sigma(a) sigma(-b) (1 - exp(-(a - b))): exact, and never underflows in log space.
    interior = log_cdf_upper + log_sf_lower + _log1mexp(inv_scale / last)
    return torch.where(index <= 0, log_cdf_upper, torch.where(index >= last, log_sf_lower, interior))


def _logistic_clipped_mean(loc: Tensor, log_scale: Tensor) -> Tensor:
    # E[clip(X, 0, 1)] = 1 - s [softplus((1 - mu)/s) - softplus(-mu/s)], with the difference of softplus
    # written as log1p(sigmoid(u0) expm1(1/s)) when 1/s is small (no cancellation for large s).
    log_scale = _clamp_log_scale(log_scale)
    scale, inv_scale = torch.exp(log_scale), torch.exp(-log_scale)
    u0 = -loc * inv_scale
    w_small = inv_scale.clamp(max=20.0)
    diff_small = torch.log1p(torch.sigmoid(u0) * torch.expm1(w_small))
    diff_large = F.softplus(u0 + inv_scale) - F.softplus(u0)
    return 1.0 - scale * torch.where(inv_scale <= 20.0, diff_small, diff_large)


def continuous_bernoulli_log_norm(logits: Tensor) -> Tensor:
    r"""Log normalising constant :math:`\log C(\lambda)` of the continuous Bernoulli, from its logits.

    `Loaiza-Ganem & Cunningham, NeurIPS 2019 <https://arxiv.org/abs/1907.06845>`_.
    With :math:`\lambda = \sigma(\eta)`,

    .. math::
        C(\lambda) = \frac{2 \operatorname{artanh}(1 - 2\lambda)}{1 - 2\lambda}
        = \frac{\eta}{\tanh(\eta / 2)}, \qquad C(\tfrac12) = 2,

    evaluated as :math:`\log|\eta| - \log(1 - e^{-|\eta|}) + \log(1 + e^{-|\eta|})`,
    and by its Taylor series :math:`\log 2 + \eta^2/12 - 7\eta^4/1440 + \dots` for
    :math:`|\eta| < 0.5` (0.1 in float64). Unlike ``torch.distributions.ContinuousBernoulli``, which
    clamps :math:`\lambda` to :math:`[\epsilon, 1 - \epsilon]` and so saturates at
    :math:`|\eta| \approx 16` in float32 (pytorch/pytorch#72525), this is accurate
    for every finite logit, where :math:`\log C(\eta) \to \log|\eta|`.

    Args:
        logits (Tensor): Natural parameters :math:`\eta`, any shape.

    Returns:
        Tensor: :math:`\log C`, same shape as ``logits``.
    """
    bound = _cb_taylor_bound(logits.dtype)
    a = logits.abs()
    big = a.clamp(min=bound)
    direct = torch.log(big) - _log1mexp(big) + F.softplus(-big)
    e2 = logits.clamp(-bound, bound).square()
    taylor = _LN2 + e2 * (1 / 12 + e2 * (-7 / 1440 + e2 * (31 / 90720 - e2 * 127 / 4838400)))
    return torch.where(a < bound, taylor, direct)


def continuous_bernoulli_mean(logits: Tensor) -> Tensor:
    r"""Mean of the continuous Bernoulli with logits :math:`\eta`.

    .. math::
        \mathbb{E}[y] = \frac{1}{1 - e^{-\eta}} - \frac{1}{\eta}, \qquad \mathbb{E}[y] = \tfrac12 \text{ at } \eta = 0,

    evaluated as :math:`1 + r - 1/\eta` for :math:`\eta > 0` and :math:`1/|\eta| - r` for
    :math:`\eta < 0`, :math:`r = 1/(e^{|\eta|} - 1)` (no overflow, accurate near 0 and 1), and by
    the series :math:`\tfrac12 + \eta/12 - \eta^3/720 + \dots` for :math:`|\eta| < 0.5` (0.1 in float64).
    It tends to 0 and 1 as :math:`\eta \to \mp\infty` (torch's clamped version stops
    at 0.063 / 0.937 in float32).

    Args:
        logits (Tensor): Natural parameters :math:`\eta`, any shape.

    Returns:
        Tensor: Means in :math:`(0, 1)`, same shape as ``logits``.
    """
    bound = _cb_taylor_bound(logits.dtype)
    a = logits.abs()
    big = a.clamp(min=bound)
    r = torch.exp(-big) / -torch.expm1(-big)  # 1 / expm1(|eta|), without overflow
    direct = torch.where(logits >= 0, 1.0 + r - 1.0 / big, 1.0 / big - r)
    e = logits.clamp(-bound, bound)
    e2 = e.square()
    taylor = 0.5 + e * (1 / 12 + e2 * (-1 / 720 + e2 * (1 / 30240 - e2 / 1209600)))
    return torch.where(a < bound, taylor, direct)


def continuous_bernoulli_variance(logits: Tensor) -> Tensor:
    r"""Variance of the continuous Bernoulli with logits :math:`\eta`, the derivative of its mean.

    .. math::
        \operatorname{Var}[y] = \frac{1}{\eta^2} - \frac{e^{\eta}}{(e^{\eta} - 1)^2},
        \qquad \operatorname{Var}[y] = \tfrac1{12} \text{ at } \eta = 0 \text{ (uniform)},

    evaluated as :math:`1/\eta^2 - r (1 + r)`, :math:`r = 1/(e^{|\eta|} - 1)` (even in :math:`\eta`, no
    overflow), and by the series :math:`\tfrac1{12} - \eta^2/240 + \eta^4/6048 - \dots` where
    :func:`continuous_bernoulli_mean` uses its own. It falls as :math:`1/\eta^2` for large :math:`|\eta|`.

    Args:
        logits (Tensor): Natural parameters :math:`\eta`, any shape.

    Returns:
        Tensor: Variances in :math:`(0, \tfrac1{12}]`, same shape as ``logits``.
    """
    bound = _cb_taylor_bound(logits.dtype)
    a = logits.abs()
    big = a.clamp(min=bound)
    r = torch.exp(-big) / -torch.expm1(-big)
    direct = 1.0 / big.square() - r * (1.0 + r)
    e2 = logits.clamp(-bound, bound).square()
    taylor = 1 / 12 + e2 * (-1 / 240 + e2 * (1 / 6048 - e2 / 172800))
    return torch.where(a < bound, taylor, direct)


def _continuous_bernoulli_icdf(logits: Tensor, u: Tensor) -> Tensor:
    # F^{-1}(u) = log1p(u expm1(eta)) / eta, written for |eta| and reflected so nothing overflows.
    a = logits.abs()
    big = a.clamp(min=_CB_SAMPLE_TAYLOR)
    u_reflected = torch.where(logits >= 0, u, 1.0 - u)  # y(eta, u) = 1 - y(-eta, 1 - u)
    tiny = torch.finfo(u.dtype).tiny
    moderate = torch.log1p((1.0 - u_reflected) * torch.expm1(-big.clamp(max=1.0))) / big.clamp(max=1.0)
    strong = torch.logaddexp(u_reflected.clamp(min=tiny).log(), torch.log1p(-u_reflected) - big) / big
    upper = 1.0 + torch.where(a < 1.0, moderate, strong)
    direct = torch.where(logits >= 0, upper, 1.0 - upper)
    taylor = u + logits.clamp(-_CB_SAMPLE_TAYLOR, _CB_SAMPLE_TAYLOR) * u * (1.0 - u) / 2
    return torch.where(a < _CB_SAMPLE_TAYLOR, taylor, direct).clamp(0.0, 1.0)


# --------------------------------------------------------------------------- checks
def _check_tensor(t: Any, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not torch.is_floating_point(t):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def _check_support(y: Tensor, name: str, low: Optional[float], high: Optional[float], hint: str = "") -> None:
    bad = ~torch.isfinite(y)
    outside = bad if low is None else bad | (y < low) | (y > high)
    if not bool(outside.any()):  # the only device synchronisation on valid data
        return
    if bool(bad.any()):
        raise ValueError(f"{name} contains {int(bad.sum())} NaN or Inf values")
    raise ValueError(f"{name} must lie in [{low:g}, {high:g}]{hint}, got values in "
                     f"[{float(y.min()):g}, {float(y.max()):g}]")


def _check_num_bins(num_bins: Any) -> int:
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 2:
        raise ValueError(f"num_bins must be an integer >= 2, got {num_bins!r}")
    return num_bins


def _broadcast(name_a: str, a: torch.Size, name_b: str, b: torch.Size) -> None:
    try:
        torch.broadcast_shapes(a, b)
    except RuntimeError:
        raise ValueError(f"{name_a} of shape {tuple(a)} and {name_b} of shape {tuple(b)} do not broadcast") from None


# --------------------------------------------------------------------------- functions
def discretized_logistic_log_prob(y: Tensor, loc: Tensor, log_scale: Tensor, num_bins: int = 256) -> Tensor:
    r"""Log-probability of the discretized logistic for data in :math:`[0, 1]` quantised to ``num_bins`` levels.

    `Salimans et al., PixelCNN++, ICLR 2017 <https://arxiv.org/abs/1701.05517>`_, Eq. (2);
    VaMoH App. A.6, Eq. (17). The bin centres are :math:`c_i = i / (B - 1)`,
    :math:`i = 0, \dots, B - 1` (8-bit data: ``y = pixel / 255``), the half-width
    :math:`h = 1 / (2 (B - 1))`, and

    .. math::
        p(y = c_i) =
        \begin{cases}
            \sigma\big((c_0 + h - \mu)/s\big) & i = 0 \\
            \sigma\big((c_i + h - \mu)/s\big) - \sigma\big((c_i - h - \mu)/s\big) & 0 < i < B - 1 \\
            1 - \sigma\big((c_{B-1} - h - \mu)/s\big) & i = B - 1,
        \end{cases}

    so the edge bins take all the mass below :math:`h` and above :math:`1 - h`,
    and the :math:`B` probabilities sum to one. With :math:`a, b` the standardised
    upper and lower edges, the interior case is computed as
    :math:`\log\sigma(a) + \log\sigma(-b) + \log(1 - e^{-(a - b)})` with
    :math:`a - b = 2h / s`: exact and free of cancellation for any :math:`\mu, s`,
    so PixelCNN++'s fallback to the density at the bin centre (needed there
    because it subtracts the two CDFs) is not needed.

    ``y`` is rounded to the nearest bin centre, so the result is the probability
    of the bin that contains ``y``. PixelCNN++'s code uses data in :math:`[-1, 1]`;
    pcfunc uses :math:`[0, 1]` (VaMoH's data range): a scale :math:`s` here is
    half the PixelCNN++ scale for the same data. :math:`\log s` is clamped to
    :math:`\pm 0.85 \log(\text{dtype max})` (:math:`\pm 75` in float32) so that
    :math:`1/s` stays finite.

    Args:
        y (Tensor): Data in :math:`[0, 1]`.
        loc (Tensor): Locations :math:`\mu` (any real; typically in :math:`[0, 1]`).
        log_scale (Tensor): Log-scales :math:`\log s`.
        num_bins (int): Number of levels :math:`B` (default: 256).

    Shapes:
        - **y**, **loc**, **log_scale**: broadcastable to a common shape :math:`(*)`.
        - **output**: :math:`(*)`.
    """
    num_bins = _check_num_bins(num_bins)
    for t, name in ((y, "y"), (loc, "loc"), (log_scale, "log_scale")):
        _check_tensor(t, name)
    _broadcast("y", y.shape, "loc", loc.shape)
    _broadcast("y", y.shape, "log_scale", log_scale.shape)
    _check_support(y, "y", 0.0, 1.0, " (8-bit data: divide by 255)")
    return _discretized_logistic_log_prob(y, loc, log_scale, num_bins)


def discretized_logistic_mixture_log_prob(
    y: Tensor, logits: Tensor, loc: Tensor, log_scale: Tensor, num_bins: int = 256,
) -> Tensor:
    r"""Log-probability of a mixture of :math:`K` discretized logistics (PixelCNN++, Eq. 2; VaMoH Eq. 18).

    .. math::
        \log p(y) = \log \sum_{k=1}^K \pi_k\, p(y \mid \mu_k, s_k),
        \qquad \pi = \operatorname{softmax}(\text{logits}),

    with :math:`p(y \mid \mu_k, s_k)` as in :func:`discretized_logistic_log_prob`
    (same :math:`[0, 1]` data convention), combined by :func:`mixture_log_prob`.

    Args:
        y (Tensor): Data in :math:`[0, 1]`.
        logits (Tensor): Unnormalised mixture log-weights.
        loc (Tensor): Component locations :math:`\mu_k`.
        log_scale (Tensor): Component log-scales :math:`\log s_k`.
        num_bins (int): Number of levels (default: 256).

    Shapes:
        - **y**: :math:`(*)`.
        - **logits**, **loc**, **log_scale**: :math:`(*, K)` (broadcastable).
        - **output**: :math:`(*)`.
    """
    _check_tensor(y, "y")
    component = discretized_logistic_log_prob(y.unsqueeze(-1), loc, log_scale, num_bins)
    return mixture_log_prob(component, logits)


def mixture_log_prob(component_log_probs: Tensor, log_weights: Tensor) -> Tensor:
    r"""Log-density of a mixture from per-component log-densities, by log-sum-exp.

    .. math::
        \log p(y) = \log \sum_{k=1}^K \pi_k\, p_k(y)
        = \operatorname{logsumexp}_k \big(\log p_k(y) + \log \pi_k\big).

    ``log_weights`` are normalised over :math:`K` with a log-softmax, so either
    log-probabilities :math:`\log \pi_k` (unchanged) or unnormalised logits may be
    given. In VaMoH, :math:`p_k` is the likelihood of generator :math:`k` summed
    over channels, and :math:`\pi_{dk}` the per-point assignment probabilities.

    Args:
        component_log_probs (Tensor): :math:`\log p_k(y)`.
        log_weights (Tensor): :math:`\log \pi_k` or logits.

    Shapes:
        - **component_log_probs**, **log_weights**: :math:`(*, K)` (broadcastable).
        - **output**: :math:`(*)`.
    """
    _check_mixture_args(component_log_probs, "component_log_probs", log_weights, 1)
    return torch.logsumexp(component_log_probs + torch.log_softmax(log_weights, dim=-1), dim=-1)


def mixture_mean(component_means: Tensor, log_weights: Tensor) -> Tensor:
    r"""Mean of a mixture from its components' means: :math:`\sum_k \pi_k\, \mathbb{E}_k[y]`.

    ``log_weights`` are normalised with a softmax, as in :func:`mixture_log_prob`.

    Args:
        component_means (Tensor): Per-component means, e.g. :meth:`Likelihood.mean` of each generator.
        log_weights (Tensor): :math:`\log \pi_k` or logits.

    Shapes:
        - **component_means**: :math:`(*, K, C)`.
        - **log_weights**: :math:`(*, K)` (leading dims broadcastable with ``component_means``).
        - **output**: :math:`(*, C)`.
    """
    _check_mixture_args(component_means, "component_means", log_weights, 2)
    weights = torch.softmax(log_weights, dim=-1).unsqueeze(-1)
    return (weights * component_means).sum(dim=-2)


def _check_mixture_args(values: Tensor, name: str, log_weights: Tensor, k_from_end: int) -> None:
    _check_tensor(values, name)
    _check_tensor(log_weights, "log_weights")
    if values.dim() < k_from_end or log_weights.dim() < 1:
        shape = "[..., K]" if k_from_end == 1 else "[..., K, C]"
        raise ValueError(f"{name} must have shape {shape} and log_weights [..., K], got "
                         f"{tuple(values.shape)} and {tuple(log_weights.shape)}")
    k = values.size(-k_from_end)
    if log_weights.size(-1) != k:
        raise ValueError(f"log_weights has {log_weights.size(-1)} components (last dim) but {name} has {k} "
                         f"(shape {tuple(values.shape)})")
    lead = values.shape[: values.dim() - k_from_end]
    _broadcast(name, lead, "log_weights", log_weights.shape[:-1])
