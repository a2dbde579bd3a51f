"""Per-point likelihoods :math:`p(y \\mid \\theta_k)` that VaMoH's generators parameterise, and their mixture."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Likelihood",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "DiscretizedLogisticLikelihood",
    "GaussianLikelihood",
    "get_likelihood",
    "discretized_logistic_log_prob",
    "discretized_logistic_mixture_log_prob",
    "continuous_bernoulli_log_norm",
    "continuous_bernoulli_mean",
    "mixture_log_prob",
    "mixture_mean",
]

_LN2 = math.log(2.0)
# Below this |logit| continuous Bernoulli sampling uses the first-order expansion of its inverse CDF.
_CB_SAMPLE_TAYLOR = 1e-6
_SCALE_MODES = ("learned", "predicted", "fixed")


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


# --------------------------------------------------------------------------- modules
class Likelihood(nn.Module):
    r"""Base class of the per-point, per-channel likelihoods :math:`p(y \mid \theta)`.

    A generator (one of VaMoH's :math:`K` hypernetwork generators) outputs
    ``params`` of shape :math:`(*, P C)` for :math:`C` feature channels, where
    :math:`P` = :attr:`num_params`; the :math:`P` parameters are laid out in
    blocks of :math:`C` (``params[..., :C]`` is the first for every channel,
    ``params[..., C:2C]`` the second, ...). Everything is elementwise over
    channels, so a model sums :meth:`log_prob` over channels and mixes the
    components with :func:`mixture_log_prob`.

    Subclasses implement :meth:`_log_prob`, :meth:`_mean`, :meth:`_sample` on the
    split parameters; this class validates shapes and the support of ``y``.

    Example:
        With :math:`K` generators evaluated at :math:`N` points (``params`` of
        shape ``[N, K, P * C]``), per-point assignment logits ``[N, K]`` and data
        ``y: [N, C]``, VaMoH's mixture likelihood (Eq. 10, marginalised over
        :math:`c_d`) is

        >>> log_p_k = likelihood.log_prob(params, y.unsqueeze(-2)).sum(-1)  # doctest: +SKIP
        >>> log_p = mixture_log_prob(log_p_k, logits)  # [N]  # doctest: +SKIP

    Args:
        num_channels (int, optional): :math:`C`, checked against the inputs if given.
        validate_args (bool): Check ``y`` (finite, in the support) on every call (default: ``True``;
            each check costs a device synchronisation).
    """

    #: Name accepted by :func:`get_likelihood`.
    name: str = "likelihood"
    #: Support of ``y`` as ``(low, high)``, or ``None`` for the real line.
    support: Optional[Tuple[float, float]] = None

    def __init__(self, num_channels: Optional[int] = None, validate_args: bool = True) -> None:
        super().__init__()
        if num_channels is not None and (isinstance(num_channels, bool) or not isinstance(num_channels, int)
                                         or num_channels < 1):
            raise ValueError(f"num_channels must be a positive integer or None, got {num_channels!r}")
        self.num_channels = num_channels
        self.validate_args = bool(validate_args)

    @property
    def num_params(self) -> int:
        """Parameters per channel the generator must output (its output size is ``num_params * C``)."""
        return 1

    def reset_parameters(self) -> None:
        """Reset learnable parameters (none by default)."""

    # ---------------------------------------------------------------- public
    def log_prob(self, params: Tensor, y: Tensor) -> Tensor:
        r"""Log-likelihood :math:`\log p(y_c \mid \theta_c)` of every point and channel.

        Shapes:
            - **params**: :math:`(*_p, P C)`.
            - **y**: :math:`(*_y, C)`, in :attr:`support`.
            - **output**: :math:`(*, C)` with :math:`*` the broadcast of :math:`*_p` and :math:`*_y`.
        """
        y = self._checked_y(y)
        if self.num_channels is not None and y.size(-1) != self.num_channels:
            raise ValueError(f"y has {y.size(-1)} channels (last dim) but {type(self).__name__} was built with "
                             f"num_channels={self.num_channels}")
        parts = self._split(params, y.size(-1))
        _broadcast("params (without its last dim)", params.shape[:-1], "y (without its last dim)", y.shape[:-1])
        return self._log_prob(parts, y.to(parts[0].dtype))

    def mean(self, params: Tensor) -> Tensor:
        r"""Predictive mean :math:`\mathbb{E}[y \mid \theta]` (used for reconstructions), shape :math:`(*, C)`."""
        return self._mean(self._split(params))

    def sample(self, params: Tensor) -> Tensor:
        r"""One sample :math:`y \sim p(y \mid \theta)` per point and channel, shape :math:`(*, C)`."""
        return self._sample(self._split(params))

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}"

    # ---------------------------------------------------------------- for subclasses
    def _log_prob(self, parts: Tuple[Tensor, ...], y: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _log_prob(parts, y)")

    def _mean(self, parts: Tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _mean(parts)")

    def _sample(self, parts: Tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _sample(parts)")

    def _checked_y(self, y: Tensor) -> Tensor:
        _check_tensor(y, "y")
        if y.dim() == 0:
            raise ValueError("y must have a channel dimension, shape [..., C], got a scalar")
        if self.validate_args:
            low, high = self.support if self.support is not None else (None, None)
            _check_support(y, "y", low, high)
        return y

    def _split(self, params: Tensor, channels: Optional[int] = None) -> Tuple[Tensor, ...]:
        _check_tensor(params, "params")
        p = self.num_params
        size = params.size(-1) if params.dim() else 0
        expected = channels if channels is not None else self.num_channels
        if size == 0 or size % p or (expected is not None and size != p * expected):
            want = f"{p} * {expected} = {p * expected}" if expected is not None else f"a multiple of {p}"
            raise ValueError(f"params must have shape [..., num_params * C] with last dim {want} "
                             f"for {type(self).__name__}, got {tuple(params.shape)}")
        return tuple(params.split(size // p, dim=-1))


class BernoulliLikelihood(Likelihood):
    r"""Bernoulli likelihood from logits, for binary data (voxel occupancy; VaMoH on ShapeNet).

    .. math::
        \log p(y \mid \eta) = y \log \sigma(\eta) + (1 - y) \log \sigma(-\eta), \qquad y \in \{0, 1\},

    via :class:`torch.distributions.Bernoulli` (binary cross-entropy with logits,
    stable for any :math:`\eta`). :attr:`num_params` is 1: the generator outputs the
    logits :math:`\eta` (a generator ending in a sigmoid must pass its pre-sigmoid
    output). :meth:`mean` is :math:`\sigma(\eta)`, the occupancy probability.
    ``y`` may be float, integer or bool with values in :math:`\{0, 1\}`.

    Args:
        num_channels (int, optional): :math:`C`, checked if given.
        validate_args (bool): Check ``y`` on every call (default: ``True``).
    """

    name = "bernoulli"
    support = (0.0, 1.0)

    def _checked_y(self, y: Tensor) -> Tensor:
        if isinstance(y, Tensor) and not torch.is_floating_point(y) and not torch.is_complex(y):
            y = y.float()
        y = super()._checked_y(y)
        if self.validate_args and bool(((y != 0) & (y != 1)).any()):
            raise ValueError("y must be binary (values 0 or 1) for the Bernoulli likelihood; use "
                             "'continuous_bernoulli' for data in [0, 1]")
        return y

    def _dist(self, logits: Tensor) -> torch.distributions.Bernoulli:
        return torch.distributions.Bernoulli(logits=logits, validate_args=False)

    def _log_prob(self, parts: Tuple[Tensor, ...], y: Tensor) -> Tensor:
        return self._dist(parts[0]).log_prob(y)

    def _mean(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return torch.sigmoid(parts[0])

    def _sample(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return self._dist(parts[0]).sample()


class ContinuousBernoulliLikelihood(Likelihood):
    r"""Continuous Bernoulli likelihood from logits, for data in :math:`[0, 1]` (VaMoH on ERA5).

    `Loaiza-Ganem & Cunningham, NeurIPS 2019 <https://arxiv.org/abs/1907.06845>`_:

    .. math::
        \log p(y \mid \eta) = y \log \sigma(\eta) + (1 - y) \log \sigma(-\eta) + \log C(\eta),
        \qquad y \in [0, 1],

    with the normaliser :math:`C` of :func:`continuous_bernoulli_log_norm`. It has
    the same parameterisation and support as
    :class:`torch.distributions.ContinuousBernoulli` and agrees with it where
    that is accurate, but evaluates :math:`\log C`, the mean and the inverse CDF
    directly from the logits: torch goes through clamped probabilities and is
    wrong for :math:`|\eta| \gtrsim 16` (float32), e.g. its mean never exceeds
    0.937, which data near the ends of :math:`[0, 1]` need.

    :attr:`num_params` is 1 (the logits :math:`\eta`). :meth:`mean` is
    :func:`continuous_bernoulli_mean` (not :math:`\sigma(\eta)`); :meth:`sample`
    is reparameterised (differentiable in ``params``).

    Args:
        num_channels (int, optional): :math:`C`, checked if given.
        validate_args (bool): Check ``y`` on every call (default: ``True``).
    """

    name = "continuous_bernoulli"
    support = (0.0, 1.0)

    def _log_prob(self, parts: Tuple[Tensor, ...], y: Tensor) -> Tensor:
        logits, y = torch.broadcast_tensors(parts[0], y)
        return -F.binary_cross_entropy_with_logits(logits, y, reduction="none") + continuous_bernoulli_log_norm(
            logits)

    def _mean(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return continuous_bernoulli_mean(parts[0])

    def _sample(self, parts: Tuple[Tensor, ...]) -> Tensor:
        logits = parts[0]
        return _continuous_bernoulli_icdf(logits, torch.rand_like(logits))


class _LocationScaleLikelihood(Likelihood):
    """A location output by the generator and a log-scale that is learned, predicted or fixed."""

    def __init__(
        self,
        num_channels: Optional[int] = None,
        scale: str = "learned",
        init_scale: float = 1.0,
        validate_args: bool = True,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> None:
        super().__init__(num_channels, validate_args)
        if scale not in _SCALE_MODES:
            raise ValueError(f"scale must be one of {_SCALE_MODES}, got {scale!r}")
        if not isinstance(init_scale, (int, float)) or isinstance(init_scale, bool) or not init_scale > 0 \
                or not math.isfinite(init_scale):
            raise ValueError(f"init_scale must be a positive finite number, got {init_scale!r}")
        self.scale = scale
        self.init_scale = float(init_scale)
        shape = () if num_channels is None else (num_channels,)
        log_scale = torch.empty(shape, dtype=dtype, device=device)
        if scale == "learned":
            self.log_scale = nn.Parameter(log_scale)
        elif scale == "fixed":
            self.register_buffer("log_scale", log_scale)
        else:
            self.log_scale = None
        self.reset_parameters()

    @property
    def num_params(self) -> int:
        """2 (location, log-scale) with ``scale="predicted"``, else 1 (location)."""
        return 2 if self.scale == "predicted" else 1

    def reset_parameters(self) -> None:
        """Set the learned or fixed log-scale to :math:`\\log` ``init_scale``."""
        if self.log_scale is not None:
            with torch.no_grad():
                self.log_scale.fill_(math.log(self.init_scale))

    def _loc_log_scale(self, parts: Tuple[Tensor, ...]) -> Tuple[Tensor, Tensor]:
        if self.scale == "predicted":
            return parts[0], parts[1]
        return parts[0], self.log_scale.to(parts[0].dtype)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}, scale={self.scale!r}, init_scale={self.init_scale:g}"


class DiscretizedLogisticLikelihood(_LocationScaleLikelihood):
    r"""Discretized logistic likelihood for quantised data in :math:`[0, 1]` (VaMoH App. A.6, images).

    .. math::
        p(y \mid \mu, s) = \sigma\Big(\frac{y + h - \mu}{s}\Big) - \sigma\Big(\frac{y - h - \mu}{s}\Big),
        \qquad h = \frac{1}{2 (B - 1)},

    with the edge bins taking the tails; see :func:`discretized_logistic_log_prob`
    for the exact definition and the data convention: **y must be in** :math:`[0, 1]`
    **with levels** :math:`i / (B - 1)` (8-bit images: ``pixel / 255``), and is
    rounded to the nearest level.

    The generator outputs the means :math:`\mu` (VaMoH's generators end in a
    sigmoid, so :math:`\mu \in [0, 1]`); by default (``scale="learned"``, as in
    VaMoH: "the scales s are learnable parameters") :math:`\log s` is a parameter
    of this module, one per channel if ``num_channels`` is given, else one shared
    by all channels, so :attr:`num_params` is 1. With ``scale="predicted"`` the
    generator also outputs :math:`\log s` (:attr:`num_params` 2); with
    ``scale="fixed"`` :math:`s` = ``init_scale`` is a buffer.

    :meth:`mean` is :math:`\mathbb{E}[\operatorname{clip}(X, 0, 1)]` for
    :math:`X \sim \operatorname{Logistic}(\mu, s)`, in closed form; it differs
    from the exact mean of the discretised variable by less than half a bin
    (the midpoint rule), and by :math:`O(h^2 / s^2)` when :math:`s \gg h`.
    :meth:`sample` draws :math:`X` and rounds it to its bin (not differentiable).

    Args:
        num_channels (int, optional): :math:`C`; gives one scale per channel.
        num_bins (int): Number of levels :math:`B` (default: 256).
        scale (str): ``"learned"`` (default), ``"predicted"`` or ``"fixed"``.
        init_scale (float): Initial (learned) or constant (fixed) :math:`s` (default: 0.1).
        validate_args (bool): Check ``y`` on every call (default: ``True``).
        dtype (torch.dtype, optional): dtype of the log-scale parameter.
        device (torch.device, optional): Device of the log-scale parameter.
    """

    name = "discretized_logistic"
    support = (0.0, 1.0)

    def __init__(
        self,
        num_channels: Optional[int] = None,
        num_bins: int = 256,
        scale: str = "learned",
        init_scale: float = 0.1,
        validate_args: bool = True,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> None:
        num_bins = _check_num_bins(num_bins)
        super().__init__(num_channels, scale, init_scale, validate_args, dtype, device)
        self.num_bins = num_bins

    def _log_prob(self, parts: Tuple[Tensor, ...], y: Tensor) -> Tensor:
        loc, log_scale = self._loc_log_scale(parts)
        return _discretized_logistic_log_prob(y, loc, log_scale, self.num_bins)

    def _mean(self, parts: Tuple[Tensor, ...]) -> Tensor:
        loc, log_scale = self._loc_log_scale(parts)
        return _logistic_clipped_mean(loc, log_scale)

    def _sample(self, parts: Tuple[Tensor, ...]) -> Tensor:
        loc, log_scale = self._loc_log_scale(parts)
        with torch.no_grad():
            loc, log_scale = torch.broadcast_tensors(loc, _clamp_log_scale(log_scale))
            eps = torch.finfo(loc.dtype).eps
            u = torch.rand_like(loc).clamp(eps, 1.0 - eps)
            x = loc + log_scale.exp() * (torch.log(u) - torch.log1p(-u))
            last = self.num_bins - 1
            return torch.round(x * last).clamp(0, last) / last

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}, " + super().extra_repr()


class GaussianLikelihood(_LocationScaleLikelihood):
    r"""Gaussian likelihood with mean :math:`\mu` and log-scale :math:`\log \sigma`.

    .. math::
        \log p(y \mid \mu, \sigma) = -\frac{(y - \mu)^2}{2 \sigma^2} - \log \sigma - \tfrac12 \log 2\pi,

    via :class:`torch.distributions.Normal`. The generator outputs :math:`\mu`;
    :math:`\sigma` follows ``scale`` as in :class:`DiscretizedLogisticLikelihood`:
    ``"learned"`` (default; a per-channel or shared parameter, :attr:`num_params`
    1), ``"predicted"`` (the generator outputs :math:`\mu` then
    :math:`\log \sigma`, :attr:`num_params` 2) or ``"fixed"``. :meth:`mean` is
    :math:`\mu`; :meth:`sample` is reparameterised.

    Args:
        num_channels (int, optional): :math:`C`; gives one scale per channel.
        scale (str): ``"learned"`` (default), ``"predicted"`` or ``"fixed"``.
        init_scale (float): Initial (learned) or constant (fixed) :math:`\sigma` (default: 1.0).
        validate_args (bool): Check ``y`` (finite) on every call (default: ``True``).
        dtype (torch.dtype, optional): dtype of the log-scale parameter.
        device (torch.device, optional): Device of the log-scale parameter.
    """

    name = "gaussian"
    support = None

    def _dist(self, parts: Tuple[Tensor, ...]) -> torch.distributions.Normal:
        loc, log_scale = self._loc_log_scale(parts)
        return torch.distributions.Normal(loc, _clamp_log_scale(log_scale).exp(), validate_args=False)

    def _log_prob(self, parts: Tuple[Tensor, ...], y: Tensor) -> Tensor:
        return self._dist(parts).log_prob(y)

    def _mean(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return self._dist(parts).mean

    def _sample(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return self._dist(parts).rsample()


_REGISTRY: Dict[str, Callable[..., Likelihood]] = {
    cls.name: cls
    for cls in (ContinuousBernoulliLikelihood, BernoulliLikelihood, DiscretizedLogisticLikelihood, GaussianLikelihood)
}


def get_likelihood(likelihood: Union[str, Likelihood], **kwargs: Any) -> Likelihood:
    """Return ``likelihood`` itself, or build the likelihood of that name with ``kwargs``.

    Names (case-insensitive): ``"continuous_bernoulli"``, ``"bernoulli"``,
    ``"discretized_logistic"``, ``"gaussian"``.

    Example:
        >>> get_likelihood("discretized_logistic", num_channels=3)
        DiscretizedLogisticLikelihood(num_bins=256, num_channels=3, scale='learned', init_scale=0.1)
    """
    if isinstance(likelihood, Likelihood):
        if kwargs:
            raise ValueError(f"keyword arguments {sorted(kwargs)} given with a Likelihood instance")
        return likelihood
    if not isinstance(likelihood, str):
        raise TypeError(f"likelihood must be a Likelihood or a name, got {type(likelihood).__name__}")
    try:
        factory = _REGISTRY[likelihood.lower()]
    except KeyError:
        raise ValueError(f"unknown likelihood {likelihood!r}; known names: {sorted(_REGISTRY)}") from None
    return factory(**kwargs)
