"""The interface of a per-point likelihood :math:`p(y \\mid \\theta)` that VaMoH's generators parameterise."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from .._random import randint
from ._likelihood_math import _broadcast, _check_support, _check_tensor

__all__ = ["Likelihood"]


class Likelihood(nn.Module):
    r"""Base class of the per-point, per-channel likelihoods :math:`p(y \mid \theta)`.

    A generator (one of VaMoH's :math:`K` hypernetwork generators) outputs
    ``params`` of shape :math:`(*, P C)` for :math:`C` feature channels, where
    :math:`P` = ``num_params``; the :math:`P` parameters are laid out in
    blocks of :math:`C` (``params[..., :C]`` is the first for every channel,
    ``params[..., C:2C]`` the second, ...). Everything is elementwise over
    channels, so a model sums :meth:`log_prob` over channels and mixes the
    components with :func:`mixture_log_prob`.

    Subclasses implement ``_log_prob``, ``_mean``, ``_sample`` on the
    split parameters, and ``_variance`` where the variance has a closed form; this
    class validates shapes and the support of ``y``.

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
    #: Whether a model passes the first :math:`C` raw outputs (the location) through a sigmoid into
    #: :math:`(0, 1)` before this likelihood reads them (VaMoH does for the location-scale likelihoods on data in
    #: :math:`[0, 1]`); ``False``: the raw outputs are the parameters (e.g. Bernoulli logits). A user's likelihood
    #: sets it; the model reads this attribute, never the name.
    sigmoid_location: bool = False

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
    def log_prob(self, params: Tensor, y: Tensor, validate: Optional[bool] = None) -> Tensor:
        r"""Log-likelihood :math:`\log p(y_c \mid \theta_c)` of every point and channel.

        Args:
            params (Tensor): Parameters, see Shapes.
            y (Tensor): Observations, see Shapes.
            validate (bool, optional): Check that ``y`` is finite and in :attr:`support` (one device
                synchronisation); ``None`` for ``validate_args``. A caller that has checked ``y``
                itself passes ``False``.

        Shapes:
            - **params**: :math:`(*_p, P C)`.
            - **y**: :math:`(*_y, C)`, in :attr:`support`.
            - **output**: :math:`(*, C)` with :math:`*` the broadcast of :math:`*_p` and :math:`*_y`.
        """
        y = self._checked_y(y, self.validate_args if validate is None else bool(validate))
        if self.num_channels is not None and y.size(-1) != self.num_channels:
            raise ValueError(f"y has {y.size(-1)} channels (last dim) but {type(self).__name__} was built with "
                             f"num_channels={self.num_channels}")
        parts = self._split(params, y.size(-1))
        _broadcast("params (without its last dim)", params.shape[:-1], "y (without its last dim)", y.shape[:-1])
        return self._log_prob(parts, y.to(parts[0].dtype))

    def mean(self, params: Tensor) -> Tensor:
        r"""Predictive mean :math:`\mathbb{E}[y \mid \theta]` (used for reconstructions), shape :math:`(*, C)`."""
        return self._mean(self._split(params))

    @property
    def has_variance(self) -> bool:
        """Whether :meth:`variance` is available in closed form (the likelihood implements ``_variance``)."""
        return type(self)._variance is not Likelihood._variance

    def variance(self, params: Tensor) -> Tensor:
        r"""Variance :math:`\operatorname{Var}[y \mid \theta]` of every point and channel, shape :math:`(*, C)`
        (:meth:`~pcfunc.models.VaMoH.predictive` uses it for the observation noise of its intervals, exactly
        instead of from sampled noise); only where :attr:`has_variance`."""
        return self._variance(self._split(params))

    def sample(self, params: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        r"""One sample :math:`y \sim p(y \mid \theta)` per point and channel, shape :math:`(*, C)`.

        With a CPU ``generator`` the sample is a function of it alone (not of the global random state): a seed
        drawn from it seeds the draw, in a forked random state (so a subclass's ``_sample`` needs no generator
        argument of its own).
        """
        parts = self._split(params)
        if generator is None:
            return self._sample(parts)
        seed = int(randint(2 ** 62, (), generator))
        cuda = [params.device] if params.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            return self._sample(parts)

    def extra_repr(self) -> str:
        return f"num_channels={self.num_channels}"

    # ---------------------------------------------------------------- for subclasses
    def _log_prob(self, parts: Tuple[Tensor, ...], y: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _log_prob(parts, y)")

    def _mean(self, parts: Tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _mean(parts)")

    def _variance(self, parts: Tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no closed-form variance (has_variance is False): "
                                  "implement _variance(parts) where it has one")

    def _sample(self, parts: Tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _sample(parts)")

    def check(self, y: Tensor, name: str = "y") -> Tensor:
        """Raise a ``ValueError`` naming ``name`` unless ``y`` is a finite tensor with a channel dimension in
        :attr:`support` (and, for a discrete likelihood, takes its values); return it (as floats where the
        likelihood converts it)."""
        return self._checked_y(y, True, name)

    def _checked_y(self, y: Tensor, validate: bool, name: str = "y") -> Tensor:
        _check_tensor(y, name)
        if y.dim() == 0:
            raise ValueError(f"{name} must have a channel dimension, shape [..., C], got a scalar")
        if validate:
            low, high = self.support if self.support is not None else (None, None)
            _check_support(y, name, low, high, f" for the {self.name} likelihood" if self.name else "")
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
