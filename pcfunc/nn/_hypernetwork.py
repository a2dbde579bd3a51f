"""The hypernetwork that outputs the weights of a :class:`FunctionRepresentation`."""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._random import rand, randint
from .._validation import check_positive_int
from ._function_representation import FunctionRepresentation, _check_sizes
from ._kernels import stacked_mlp

__all__ = ["HyperNetwork", "fit_function"]


class HyperNetwork(torch.nn.Module):
    r"""An MLP :math:`g_\phi` from a latent vector to the weights of a :class:`FunctionRepresentation`.

    GASP's function generator (Section 3.2 and Appendix A.1 of `"Generative
    Models as Distributions of Functions" <https://arxiv.org/abs/2102.04776>`_)
    and VaMoH's hypernetworks (Section 3.1, Table 3 of `"Variational Mixture of
    HyperGenerators" <https://arxiv.org/abs/2302.06223>`_):

    .. math::
        \theta = g_\phi(\mathbf{z}) = W_{L+1}\, a\big(\cdots a(W_1 \mathbf{z} + \mathbf{b}_1) \cdots\big)
        + \mathbf{b}_{L+1} \in \mathbb{R}^{P}, \qquad
        \mathbf{y}_i = f_{g_\phi(\mathbf{z})}(\mathbf{x}_i),

    with :math:`P` = ``target.num_weights``. The output is linear and not
    rescaled, and every layer starts from :class:`torch.nn.Linear`'s default
    initialisation: neither paper describes an output scaling or a special
    initialisation, and GASP's released code uses neither. The hidden
    activation defaults to LeakyReLU(0.1), the slope of GASP's code (the
    papers say only "LeakyReLU").

    With ``num_components=K`` the module holds :math:`K` independent
    hypernetworks :math:`g_{\phi_1}, \dots, g_{\phi_K}` of the same shape (VaMoH's
    mixture of hypergenerators), evaluated together with batched matrix
    products, and returns weights of shape :math:`(B, K, P)`.

    The last layer is the widest (:math:`K \times P \times` its input width, 38 M weights in VaMoH's ERA5
    model) and sees only :math:`B` latents per call; its fast path on the CPU is described in
    ``pcfunc.nn._kernels``.

    Parameter counts of the papers' ERA5 configurations: GASP (latent 64,
    hidden (256, 512), 66,049 target weights) 34,031,361; VaMoH (latent 32,
    hidden (256, 512), 24,833 target weights) 12,879,361 per component.

    Args:
        latent_dim (int): Size of :math:`\mathbf{z}`.
        hidden (sequence of int): Hidden widths. (default: ``(256, 512)``)
        target (FunctionRepresentation): The function representation whose weights are output
            (a submodule, so its encoding's :math:`B` is saved with the hypernetwork).
        activation (callable): Elementwise hidden activation. (default: ``LeakyReLU(0.1)``)
        num_components (int, optional): Number :math:`K` of independent hypernetworks; ``None``
            for one, with outputs without the :math:`K` axis. (default: ``None``)

    Shapes:
        - **input:** latents :math:`(B, \text{latent\_dim})`
        - **output:** weights :math:`(B, P)`, or :math:`(B, K, P)` with ``num_components=K``

    Non-finite inputs are not checked here (an inner layer, called many times per step): NaN or Inf in gives NaN or
    Inf out (in the weights of that latent's functions), never a finite value. The models check their inputs once,
    at their boundary (:class:`~pcfunc.models.VaMoH`, :class:`~pcfunc.models.GASP`: a clear error naming the
    argument); see :doc:`/reliability`.
    """

    def __init__(
        self,
        latent_dim: int,
        hidden: Sequence[int] = (256, 512),
        target: Optional[FunctionRepresentation] = None,
        activation: Callable[[Tensor], Tensor] = torch.nn.LeakyReLU(0.1),
        num_components: Optional[int] = None,
    ) -> None:
        super().__init__()
        if not isinstance(target, FunctionRepresentation):
            raise TypeError(f"target must be a FunctionRepresentation, got {type(target).__name__}")
        if not callable(activation):
            raise TypeError(f"activation must be callable, got {type(activation).__name__}")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.hidden = _check_sizes(hidden, "hidden")
        self.num_components = None if num_components is None else check_positive_int(num_components,
                                                                                     "num_components")
        self.target = target
        self.activation = activation
        K = 1 if self.num_components is None else self.num_components
        widths = (self.latent_dim, *self.hidden, target.num_weights)
        # Stacked per-component parameters [K, out, in] / [K, out]; K = 1 without components.
        self.weights = torch.nn.ParameterList(torch.nn.Parameter(torch.empty(K, o, i))
                                              for i, o in zip(widths[:-1], widths[1:]))
        self.biases = torch.nn.ParameterList(torch.nn.Parameter(torch.empty(K, o)) for o in widths[1:])
        self.reset_parameters()

    @property
    def num_weights(self) -> int:
        """Size :math:`P` of each output weight vector (``target.num_weights``)."""
        return self.target.num_weights

    def reset_parameters(self) -> None:
        """Re-initialise every layer like :class:`torch.nn.Linear` (uniform, bound :math:`1/\\sqrt{\\text{in}}`),
        and the target's encoding."""
        with torch.no_grad():
            for W, b in zip(self.weights, self.biases):
                bound = 1.0 / math.sqrt(W.size(-1))
                W.uniform_(-bound, bound)
                b.uniform_(-bound, bound)
        self.target.reset_parameters()

    def forward(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor):
            raise TypeError(f"z must be a torch.Tensor, got {type(z).__name__}")
        if z.dim() != 2 or z.size(1) != self.latent_dim:
            raise ValueError(f"z must have shape [B, {self.latent_dim}] (latent_dim={self.latent_dim}), "
                             f"got {tuple(z.shape)}")
        if not torch.is_floating_point(z):
            raise TypeError(f"z must be a floating-point tensor, got dtype {z.dtype}")
        h = stacked_mlp(z, list(self.weights), list(self.biases), self.activation)  # [K, P, B]
        if self.num_components is None:
            return h[0].t().contiguous()
        return h.permute(2, 0, 1).contiguous()

    @torch.no_grad()
    def start_at(self, weights: Tensor, residual_scale: float = 0.1) -> None:
        r"""Make every latent map near the INR weights ``weights`` :math:`(P,)`: the last bias of every component
        becomes :math:`\theta_0` = ``weights`` and the last weight is scaled by ``residual_scale``, so that
        :math:`g_\phi(\mathbf z) = \theta_0 + \text{residual\_scale} \cdot W \mathbf h(\mathbf z)`.
        See ``fit_function`` for a :math:`\theta_0` fitted to data."""
        if not isinstance(weights, Tensor) or weights.shape != (self.num_weights,):
            raise ValueError(f"weights must have shape [{self.num_weights}], got {getattr(weights, 'shape', weights)}")
        if not (isinstance(residual_scale, (int, float)) and 0 < residual_scale <= 1):
            raise ValueError(f"residual_scale must be in (0, 1], got {residual_scale!r}")
        self.biases[-1].copy_(weights.detach().to(self.biases[-1]).expand_as(self.biases[-1]))
        self.weights[-1].mul_(residual_scale)

    def decode(self, z: Tensor, pos: Tensor, chunk_size: Optional[int] = None) -> Tensor:
        r"""Values :math:`f_{g_\phi(\mathbf{z})}(\mathbf{x})` of the functions of ``z`` at the points ``pos``.

        Args:
            z (Tensor): Latents, :math:`(B, \text{latent\_dim})`.
            pos (Tensor): Coordinates, :math:`(N, d)` shared or :math:`(B, N, d)` per sample.
            chunk_size (int, optional): See :meth:`FunctionRepresentation.forward`.

        Returns:
            Tensor: :math:`(B, N, \text{out\_dim})`, or :math:`(B, K, N, \text{out\_dim})` with components.
        """
        return self.target(pos, self(z), chunk_size=chunk_size)

    def function(self, z: Tensor) -> Callable[..., Tensor]:
        r"""The functions of ``z`` as a callable ``f(pos, chunk_size=None) -> y``.

        The weights are computed once; ``f`` can then be probed at any
        coordinates (e.g. a finer grid) with the shapes of :meth:`decode`.
        """
        weights = self(z)
        target = self.target

        def f(pos: Tensor, chunk_size: Optional[int] = None) -> Tensor:
            return target(pos, weights, chunk_size=chunk_size)

        return f

    def extra_repr(self) -> str:
        k = "" if self.num_components is None else f", num_components={self.num_components}"
        return f"latent_dim={self.latent_dim}, hidden={self.hidden}, num_weights={self.num_weights}{k}"


def fit_function(target: FunctionRepresentation, pos: Tensor, loss: Callable[[Tensor, Tensor], Tensor],
                 y: Tensor, steps: int = 500, lr: float = 1e-2, num_points: int = 4096,
                 extra_params: Sequence[Tensor] = (),
                 generator: Optional[torch.Generator] = None) -> Tuple[Tensor, float]:
    r"""Fit one weight vector :math:`\theta_0` of ``target`` to points: Adam on ``loss(f_\theta(x), y)`` over random
    subsets of ``num_points`` points, from :class:`torch.nn.Linear`'s initialisation layer by layer.

    Used to start hypernetworks at the function that best explains the pooled training data
    (:meth:`HyperNetwork.start_at`, :meth:`pcfunc.models.VaMoH.initialize_generators`,
    :meth:`pcfunc.models.GASP.initialize_generator`).

    Args:
        target (FunctionRepresentation): The INR.
        pos (Tensor): Coordinates :math:`(N, d)`.
        loss (callable): ``loss(out, y)`` with ``out`` :math:`(m, \text{out\_dim})` the INR's outputs at a subset
            and ``y`` :math:`(m, C)` the values there; returns a scalar mean over the points.
        y (Tensor): Values :math:`(N, C)`.
        steps, lr, num_points: Adam steps, learning rate and points per step.
        extra_params (sequence of Tensor): Other leaves ``loss`` depends on, optimised too (e.g. a likelihood's
            learned scale).
        generator (torch.Generator, optional): Randomness of the initial weights and the subsets.

    Returns:
        (Tensor, float): :math:`\theta_0` :math:`(P,)` and the final loss over all points.
    """
    steps = check_positive_int(steps, "steps")
    num_points = check_positive_int(num_points, "num_points")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    dtype = pos.dtype
    theta = torch.empty(target.num_weights, dtype=dtype, device=pos.device)
    with torch.no_grad():
        for (W, b), (o, i) in zip(target.split_weights(theta), target.layer_shapes):
            bound = 1.0 / math.sqrt(i)
            W.copy_(rand((o, i), generator, device=W.device, dtype=dtype).mul_(2 * bound).sub_(bound))
            b.copy_(rand((o,), generator, device=b.device, dtype=dtype).mul_(2 * bound).sub_(bound))
    theta.requires_grad_(True)
    opt = torch.optim.Adam([theta, *extra_params], lr=lr)
    n = pos.size(0)
    with torch.enable_grad():
        for _ in range(steps):
            idx = randint(n, (min(num_points, n),), generator, device=pos.device)
            value = loss(target(pos[idx], theta[None])[0], y[idx])
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
    with torch.no_grad():
        final = sum(float(loss(target(pos[s:s + num_points], theta[None])[0], y[s:s + num_points]))
                    * min(num_points, n - s) for s in range(0, n, num_points)) / n
    return theta.detach(), final
