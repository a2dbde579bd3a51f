"""Per-point likelihoods :math:`p(y \\mid \\theta_k)` that VaMoH's generators parameterise, and their mixture."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._likelihood_base import Likelihood
from ._likelihood_math import (
    _LINKS,
    _SCALE_MODES,
    _check_num_bins,
    _clamp_log_scale,
    _continuous_bernoulli_icdf,
    _discretized_logistic_log_prob,
    _logistic_clipped_mean,
    continuous_bernoulli_log_norm,
    continuous_bernoulli_mean,
    continuous_bernoulli_variance,
)

__all__ = [
    "Likelihood",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "DiscretizedLogisticLikelihood",
    "GaussianLikelihood",
    "get_likelihood",
]


# --------------------------------------------------------------------------- modules
class BernoulliLikelihood(Likelihood):
    r"""Bernoulli likelihood from logits, for binary data (voxel occupancy; VaMoH on ShapeNet).

    .. math::
        \log p(y \mid \eta) = y \log \sigma(\eta) + (1 - y) \log \sigma(-\eta), \qquad y \in \{0, 1\},

    via :class:`torch.distributions.Bernoulli` (binary cross-entropy with logits,
    stable for any :math:`\eta`). ``num_params`` is 1: the generator outputs the
    logits :math:`\eta` (a generator ending in a sigmoid must pass its pre-sigmoid
    output). ``mean`` is :math:`\sigma(\eta)`, the occupancy probability.
    ``y`` may be float, integer or bool with values in :math:`\{0, 1\}`.

    Args:
        num_channels (int, optional): :math:`C`, checked if given.
        validate_args (bool): Check ``y`` on every call (default: ``True``).
    """

    name = "bernoulli"
    support = (0.0, 1.0)

    def _checked_y(self, y: Tensor, validate: bool, name: str = "y") -> Tensor:
        if isinstance(y, Tensor) and not torch.is_floating_point(y) and not torch.is_complex(y):
            y = y.float()
        y = super()._checked_y(y, validate, name)
        if validate and bool(((y != 0) & (y != 1)).any()):
            raise ValueError(f"{name} must be binary (values 0 or 1) for the Bernoulli likelihood; use "
                             "'continuous_bernoulli' for data in [0, 1]")
        return y

    def _dist(self, logits: Tensor) -> torch.distributions.Bernoulli:
        return torch.distributions.Bernoulli(logits=logits, validate_args=False)

    def _log_prob(self, parts: Tuple[Tensor, ...], y: Tensor) -> Tensor:
        return self._dist(parts[0]).log_prob(y)

    def _mean(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return torch.sigmoid(parts[0])

    def _variance(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return torch.sigmoid(parts[0]) * torch.sigmoid(-parts[0])

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

    ``num_params`` is 1 (the logits :math:`\eta`). ``mean`` is
    :func:`continuous_bernoulli_mean` (not :math:`\sigma(\eta)`); ``sample``
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

    def _variance(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return continuous_bernoulli_variance(parts[0])

    def _sample(self, parts: Tuple[Tensor, ...]) -> Tensor:
        logits = parts[0]
        return _continuous_bernoulli_icdf(logits, torch.rand_like(logits))


class _LocationScaleLikelihood(Likelihood):
    """A location output by the generator and a log-scale that is learned, predicted or fixed."""

    sigmoid_location = True

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
    by all channels, so ``num_params`` is 1. With ``scale="predicted"`` the
    generator also outputs :math:`\log s` (``num_params`` 2); with
    ``scale="fixed"`` :math:`s` = ``init_scale`` is a buffer.

    ``mean`` is :math:`\mathbb{E}[\operatorname{clip}(X, 0, 1)]` for
    :math:`X \sim \operatorname{Logistic}(\mu, s)`, in closed form; it differs
    from the exact mean of the discretised variable by less than half a bin
    (the midpoint rule), and by :math:`O(h^2 / s^2)` when :math:`s \gg h`.
    ``sample`` draws :math:`X` and rounds it to its bin (not differentiable).

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
    ``"learned"`` (default; a per-channel or shared parameter, ``num_params``
    1), ``"predicted"`` (the generator outputs :math:`\mu` then
    :math:`\log \sigma`, ``num_params`` 2) or ``"fixed"``. ``mean`` is
    :math:`\mu`; ``sample`` is reparameterised.

    Args:
        num_channels (int, optional): :math:`C`; gives one scale per channel.
        scale (str): ``"learned"`` (default), ``"predicted"`` or ``"fixed"``.
        init_scale (float): Initial (learned) or constant (fixed) :math:`\sigma` (default: 1.0).
        validate_args (bool): Check ``y`` (finite) on every call (default: ``True``).
        dtype (torch.dtype, optional): dtype of the log-scale parameter.
        device (torch.device, optional): Device of the log-scale parameter.
        link (str): How a model's raw output becomes :math:`\mu`: ``"sigmoid"`` (into :math:`(0, 1)`, for data
            scaled to :math:`[0, 1]`, as the paper's generators end) or ``"identity"`` (the raw output is
            :math:`\mu`: a model linear in its output, e.g. VaMoH's linear factors, is then exactly linear in the
            data). (default: ``"sigmoid"``)
    """

    name = "gaussian"
    support = None

    def __init__(
        self,
        num_channels: Optional[int] = None,
        scale: str = "learned",
        init_scale: float = 1.0,
        validate_args: bool = True,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
        link: str = "sigmoid",
    ) -> None:
        if link not in _LINKS:
            raise ValueError(f"link must be one of {_LINKS}, got {link!r}")
        super().__init__(num_channels, scale, init_scale, validate_args, dtype, device)
        self.link = link
        self.sigmoid_location = link == "sigmoid"

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, link={self.link!r}"

    def _dist(self, parts: Tuple[Tensor, ...]) -> torch.distributions.Normal:
        loc, log_scale = self._loc_log_scale(parts)
        return torch.distributions.Normal(loc, _clamp_log_scale(log_scale).exp(), validate_args=False)

    def _log_prob(self, parts: Tuple[Tensor, ...], y: Tensor) -> Tensor:
        return self._dist(parts).log_prob(y)

    def _mean(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return self._dist(parts).mean

    def _variance(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return self._dist(parts).variance

    def _sample(self, parts: Tuple[Tensor, ...]) -> Tensor:
        return self._dist(parts).rsample()


_REGISTRY: Dict[str, Callable[..., Likelihood]] = {
    cls.name: cls
    for cls in (ContinuousBernoulliLikelihood, BernoulliLikelihood, DiscretizedLogisticLikelihood, GaussianLikelihood)
}


def get_likelihood(likelihood: Union[str, Likelihood, Tuple[str, Dict[str, Any]]], **kwargs: Any) -> Likelihood:
    """Return ``likelihood`` itself, or build the likelihood of that name with ``kwargs``; a pair ``(name,
    options)`` (or a list, as a saved configuration has it) is the name with those options, e.g.
    ``("gaussian", {"scale": "predicted"})``.

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
    if isinstance(likelihood, (tuple, list)):
        if len(likelihood) != 2 or not isinstance(likelihood[0], str) or not isinstance(likelihood[1], dict):
            raise TypeError(f"likelihood as a pair must be (name, dict of options), got {likelihood!r}")
        return get_likelihood(likelihood[0], **{**likelihood[1], **kwargs})
    if not isinstance(likelihood, str):
        raise TypeError(f"likelihood must be a Likelihood, a name or (name, options), got {type(likelihood).__name__}")
    try:
        factory = _REGISTRY[likelihood.lower()]
    except KeyError:
        raise ValueError(f"unknown likelihood {likelihood!r}; known names: {sorted(_REGISTRY)}") from None
    return factory(**kwargs)
