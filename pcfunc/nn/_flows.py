"""Planar normalizing flows (Rezende & Mohamed, 2015) and the flow prior of VaMoH (Koyuncu et al., 2023)."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional, Sequence, Tuple, TypeVar, Union

import torch
from torch import Tensor, nn

from .._random import randn
from .._validation import check_positive_int
from ._planar_math import (DEFAULT_MAX_ITER, _check_activation, _check_input, _constrained_u, _forward, _inverse,
                           planar_flow, planar_flow_inverse)

__all__ = ["PlanarFlow", "FlowPrior", "planar_flow", "planar_flow_inverse"]


class PlanarFlow(nn.Module):
    r"""A planar normalizing-flow layer with an exact inverse and log-determinant.

    Rezende & Mohamed, `Variational Inference with Normalizing Flows <https://arxiv.org/abs/1505.05770>`_
    (ICML 2015); the building block of the prior of VaMoH (Koyuncu et al., ICML 2023, §3.1).

    .. math::
        f(z) = z + \hat u\, h(w^\top z + b), \qquad
        \log \lvert \det J_f(z) \rvert = \log\bigl(1 + h'(w^\top z + b)\, w^\top \hat u\bigr),

    with learnable :math:`u, w \in \mathbb{R}^D`, :math:`b \in \mathbb{R}` and
    :math:`\hat u = u + (m(w^\top u) - w^\top u)\, w / \lVert w \rVert^2`,
    :math:`m(x) = -1 + \operatorname{softplus}(x)`. The layer is invertible when
    :math:`1 + h'(a)\, w^\top \hat u > 0` for all :math:`a`; as :math:`0 < h' \le 1` (``"tanh"``, or
    ``"leaky_relu"`` with slope :math:`\alpha \in (0, 1]`) this is :math:`w^\top \hat u > -1`, which the
    reparameterisation guarantees for any value of the raw :math:`u`. :meth:`inverse` is closed-form for
    ``"leaky_relu"`` (the paper's choice) and a safeguarded float64 Newton solve for ``"tanh"``; see
    :func:`planar_flow` and :func:`planar_flow_inverse` for the functional forms.

    Args:
        dim (int): Dimension :math:`D` of the points.
        activation (str): ``"leaky_relu"`` or ``"tanh"`` (default: ``"leaky_relu"``).
        negative_slope (float): Slope :math:`\alpha \in (0, 1]` of the leaky ReLU for negative inputs
            (default: ``0.2``); unused by ``"tanh"``.
        device (torch.device, optional): Device of the parameters.
        dtype (torch.dtype, optional): Floating dtype of the parameters.

    Shapes:
        - **input:** :math:`(*, D)`
        - **output:** :math:`(*, D)` and log-determinant :math:`(*)`, for :meth:`forward` and :meth:`inverse`

    Non-finite inputs are not checked here (an inner layer, called many times per step): NaN or Inf in gives NaN or
    Inf out (both the point and the log-determinant, in that row), never a finite value. The models check their
    inputs once, at their boundary (:class:`~pcfunc.models.VaMoH`, :class:`~pcfunc.models.GASP`: a clear error
    naming the argument); see :doc:`/reliability`.
    """

    def __init__(self, dim: int, activation: str = "leaky_relu", negative_slope: float = 0.2, *,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        _check_activation(activation, negative_slope)
        self.activation = activation
        self.negative_slope = float(negative_slope)
        self.u = nn.Parameter(torch.empty(self.dim, device=device, dtype=dtype))
        self.w = nn.Parameter(torch.empty(self.dim, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty((), device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw ``u``, ``w`` and ``bias`` from :math:`U(-1/\\sqrt{D}, 1/\\sqrt{D})`."""
        bound = 1 / math.sqrt(self.dim)
        for p in (self.u, self.w, self.bias):
            nn.init.uniform_(p, -bound, bound)

    @property
    def u_hat(self) -> Tensor:
        r"""The constrained direction :math:`\hat u`, with :math:`w^\top \hat u > -1`."""
        return _constrained_u(self.u, self.w)[0]

    def forward(self, z: Tensor) -> Tuple[Tensor, Tensor]:
        """``(f(z), log|det J_f(z)|)``; ``z`` of shape ``[..., dim]``."""
        _check_input(z, "z", self.dim, self.u.dtype)
        u_hat, s = _constrained_u(self.u, self.w)
        return _forward(z, u_hat, s, self.w, self.bias, self.activation, self.negative_slope)

    def inverse(self, y: Tensor, max_iter: int = DEFAULT_MAX_ITER) -> Tuple[Tensor, Tensor]:
        """``(f⁻¹(y), log|det J_f⁻¹(y)|)``; ``y`` of shape ``[..., dim]`` (``max_iter``: tanh solver only)."""
        _check_input(y, "y", self.dim, self.u.dtype)
        u_hat, s = _constrained_u(self.u, self.w)
        return _inverse(y, u_hat, s, self.w, self.bias, self.activation, self.negative_slope,
                        check_positive_int(max_iter, "max_iter"))

    def extra_repr(self) -> str:
        slope = f", negative_slope={self.negative_slope}" if self.activation == "leaky_relu" else ""
        return f"dim={self.dim}, activation={self.activation!r}{slope}"


_F = TypeVar("_F", bound=Callable[..., Any])


def _own_precision(method: _F) -> _F:
    """Run a :class:`FlowPrior` method with autocast off: a density and its log-determinants are computed in the
    parameters' dtype whatever the caller's mixed precision (bfloat16 keeps 3 significant digits)."""
    @functools.wraps(method)
    def wrapper(self: "FlowPrior", *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(self.base_loc.device.type, enabled=False):
            return method(self, *args, **kwargs)
    return wrapper  # type: ignore[return-value]


class FlowPrior(nn.Module):
    r"""A standard normal pushed through ``num_layers`` planar flows: the latent prior of VaMoH.

    Koyuncu et al., *Variational Mixture of HyperGenerators for Learning Distributions over Functions*
    (ICML 2023), §3.1 "Flow-based prior on z", Algorithm 1 and
    App. A.5 (Table 3: :math:`T = 3` to :math:`80` layers, leaky-ReLU). With
    :math:`z = f_T \circ \dots \circ f_1(z_0)`, :math:`z_0 \sim \mathcal{N}(0, I)` and :class:`PlanarFlow`
    layers :math:`f_t`,

    .. math::
        \log p(z) = \log \mathcal{N}(z_0; 0, I) - \sum_{t=1}^{T} \log \lvert \det J_{f_t}(z_{t-1}) \rvert
                  = \log \mathcal{N}(z_0; 0, I) + \sum_{t=1}^{T} \log \lvert \det J_{f_t^{-1}}(z_t) \rvert .

    :meth:`log_prob` inverts the layers (exactly for leaky-ReLU), so the KL term of the ELBO can be
    estimated at reparameterised posterior samples with gradients to both the encoder and the flow;
    :meth:`rsample` runs the base sample forward with gradients to the flow parameters. Every layer is
    invertible for any parameter values (:math:`w^\top \hat u > -1`, see :class:`PlanarFlow`).
    ``num_layers=0`` is the plain :math:`\mathcal{N}(0, I)` used during VaMoH's warm-up. Under autocast (mixed
    precision) it still computes in its parameters' dtype.

    Args:
        dim (int): Dimension :math:`D` of the latent :math:`z`.
        num_layers (int): Number :math:`T \ge 0` of planar layers.
        activation (str): ``"leaky_relu"`` or ``"tanh"`` (default: ``"leaky_relu"``).
        negative_slope (float): Leaky-ReLU slope :math:`\alpha \in (0, 1]` (default: ``0.2``).
        device (torch.device, optional): Device of the parameters and of the samples.
        dtype (torch.dtype, optional): Floating dtype of the parameters and of the samples.

    Shapes:
        - **log_prob:** :math:`(*, D) \to (*)`
        - **sample, rsample:** ``sample_shape`` :math:`\to` ``(*sample_shape, D)``
    """

    def __init__(self, dim: int, num_layers: int, activation: str = "leaky_relu", negative_slope: float = 0.2, *,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.dim = check_positive_int(dim, "dim")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"num_layers must be a non-negative integer, got {num_layers!r}")
        _check_activation(activation, negative_slope)
        self.flows = nn.ModuleList(
            PlanarFlow(dim, activation, negative_slope, device=device, dtype=dtype) for _ in range(num_layers)
        )
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        # Buffers (not saved in checkpoints) carry the device and dtype even without layers.
        self.register_buffer("base_loc", torch.zeros(self.dim, device=device, dtype=dtype), persistent=False)
        self.register_buffer("base_scale", torch.ones(self.dim, device=device, dtype=dtype), persistent=False)

    @property
    def num_layers(self) -> int:
        return len(self.flows)

    def reset_parameters(self) -> None:
        for flow in self.flows:
            flow.reset_parameters()

    @_own_precision
    def log_prob(self, z: Tensor) -> Tensor:
        """Log-density at ``z`` of shape ``[..., dim]``, shape ``[...]``; differentiable in ``z`` and the flow."""
        _check_input(z, "z", self.dim, self.base_loc.dtype)
        total = z.new_zeros(z.shape[:-1])
        for flow in reversed(self.flows):
            z, logdet = flow.inverse(z)
            total = total + logdet
        return self._base_log_prob(z) + total

    @_own_precision
    def rsample(self, sample_shape: Union[int, Sequence[int]] = (),
                generator: Optional[torch.Generator] = None) -> Tensor:
        """Reparameterised samples of shape ``(*sample_shape, dim)``."""
        return self._push(self._base_sample(sample_shape, generator), with_log_prob=False)[0]

    def sample(self, sample_shape: Union[int, Sequence[int]] = (),
               generator: Optional[torch.Generator] = None) -> Tensor:
        """Samples of shape ``(*sample_shape, dim)``, without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    @_own_precision
    def rsample_and_log_prob(self, sample_shape: Union[int, Sequence[int]] = (),
                             generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
        """Reparameterised samples and their log-density from the forward pass (no inversion)."""
        z0 = self._base_sample(sample_shape, generator)
        z, logdet = self._push(z0, with_log_prob=True)
        return z, self._base_log_prob(z0) - logdet

    def _push(self, z: Tensor, with_log_prob: bool) -> Tuple[Tensor, Tensor]:
        total = z.new_zeros(z.shape[:-1])
        for flow in self.flows:
            z, logdet = flow(z)
            if with_log_prob:
                total = total + logdet
        return z, total

    def _base_sample(self, sample_shape: Union[int, Sequence[int]], generator: Optional[torch.Generator]) -> Tensor:
        shape = _as_sample_shape(sample_shape) + (self.dim,)
        eps = randn(shape, generator, device=self.base_loc.device, dtype=self.base_loc.dtype)
        return self.base_loc + self.base_scale * eps

    def _base_log_prob(self, z0: Tensor) -> Tensor:
        x = (z0 - self.base_loc) / self.base_scale
        return -0.5 * (x * x).sum(-1) - self.base_scale.log().sum() - 0.5 * self.dim * math.log(2 * math.pi)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_layers={self.num_layers}"


def _as_sample_shape(sample_shape: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"sample_shape must be a non-negative int or a sequence of them, got {sample_shape!r}")
    return shape
