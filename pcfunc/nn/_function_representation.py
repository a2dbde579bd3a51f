"""The batched implicit neural representation (INR) whose weights are given at call time."""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._validation import check_finite, check_positive_int
from ._kernels import batched_mlp

__all__ = ["FunctionRepresentation", "INR_CHUNK_ELEMENTS"]

#: Largest hidden activation block (elements, all weight sets together) one chunk of points may create:
#: 2**21 = 8 MiB in float32. ``chunk_size=None`` picks the number of points per chunk from it (measured in
#: ``pcfunc.nn._kernels``).
INR_CHUNK_ELEMENTS = 1 << 21


def _check_sizes(sizes: Sequence[int], name: str) -> Tuple[int, ...]:
    if isinstance(sizes, int) or not isinstance(sizes, Sequence):
        raise TypeError(f"{name} must be a sequence of positive integers, got {sizes!r}")
    return tuple(check_positive_int(s, f"{name}[{i}]") for i, s in enumerate(sizes))


class FunctionRepresentation(torch.nn.Module):
    r"""A coordinate MLP :math:`f_\theta` whose weights :math:`\theta` are given at call time, per sample.

    The implicit neural representation of GASP (Section 3.2 of `"Generative
    Models as Distributions of Functions" <https://arxiv.org/abs/2102.04776>`_)
    and of VaMoH's hypergenerators (Appendix A.1 of `"Variational Mixture of
    HyperGenerators for Learning Distributions Over Functions"
    <https://arxiv.org/abs/2302.06223>`_):

    .. math::
        \mathbf{h}_0 = \gamma(\mathbf{x}), \qquad
        \mathbf{h}_\ell = a\big(W_\ell \mathbf{h}_{\ell-1} + \mathbf{b}_\ell\big),\ \ell = 1, \dots, L - 1,
        \qquad f_\theta(\mathbf{x}) = a_\text{out}\big(W_L \mathbf{h}_{L-1} + \mathbf{b}_L\big),

    with :math:`\gamma` the coordinate encoding (e.g. :class:`FourierFeatures`),
    :math:`a` the hidden activation and :math:`a_\text{out}` the final one. The
    module holds **no** trainable weights of its own (only those of a learnable
    encoding, if any): :math:`\theta` is a flat vector of :attr:`num_weights`
    numbers, typically the output of a :class:`HyperNetwork`, laid out layer
    by layer as :math:`W_1, \mathbf{b}_1, W_2, \mathbf{b}_2, \dots`, each
    :math:`W_\ell` of shape ``(out, in)`` in row-major order (the layout of
    :class:`torch.nn.Linear`); :meth:`split_weights` returns the views.

    A batch of :math:`B` weight vectors (or :math:`B \times K` for a mixture
    of :math:`K` generators) is evaluated at once with batched matrix
    products, without copying the coordinates per sample or per component:
    for coordinates shared by the batch, the encoded points are computed once
    and read by all :math:`BK` first layers (broadcast, not copied). Points
    are processed in chunks, each encoded once, so memory stays bounded for
    any number of points (a million-point ERA5 grid).

    Paper sizes: GASP uses 3 hidden layers of 128 units with 128 Fourier
    frequencies (256 encoded inputs), LeakyReLU(0.1) and a final tanh:
    66,049 weights for one output. VaMoH's ERA5 generator has 3 hidden
    layers of 64 units (24,833 weights) and a final sigmoid.

    Args:
        in_dim (int): Coordinate dimension :math:`d` (3 on the sphere).
        out_dim (int): Number of output features.
        hidden (sequence of int): Hidden layer widths. (default: ``(128, 128, 128)``)
        encoding (torch.nn.Module, optional): Coordinate encoding :math:`\gamma` with an
            ``out_dim`` attribute (and, if it has one, ``in_dim == in_dim``), e.g.
            :class:`FourierFeatures` or :class:`SphericalHarmonics`. ``None`` feeds the raw
            coordinates. (default: ``None``)
        activation (callable): Elementwise hidden activation :math:`a`.
            (default: ``LeakyReLU(0.1)``, as in GASP's released code)
        final_activation (callable, optional): Activation :math:`a_\text{out}` of the output,
            applied over ``(..., out_dim)`` (e.g. ``torch.nn.Tanh()`` for GASP, ``torch.nn.Sigmoid()``
            for VaMoH); ``None`` leaves it linear. (default: ``None``)

    Shapes:
        - **input:** coordinates :math:`(N, d)` shared by every sample, or :math:`(B, N, d)` per
          sample; weights :math:`(B, P)`, or :math:`(B, K, P)` for :math:`K` components, with
          :math:`P` = :attr:`num_weights`
        - **output:** :math:`(B, N, \text{out\_dim})`, or :math:`(B, K, N, \text{out\_dim})`
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (128, 128, 128),
        encoding: Optional[torch.nn.Module] = None,
        activation: Callable[[Tensor], Tensor] = torch.nn.LeakyReLU(0.1),
        final_activation: Optional[Callable[[Tensor], Tensor]] = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        self.out_dim = check_positive_int(out_dim, "out_dim")
        self.hidden = _check_sizes(hidden, "hidden")
        if encoding is not None:
            if not callable(encoding):
                raise TypeError(f"encoding must be a callable module (or None), got {type(encoding).__name__}")
            enc_out = getattr(encoding, "out_dim", None)
            if isinstance(enc_out, bool) or not isinstance(enc_out, int) or enc_out < 1:
                raise TypeError(
                    f"encoding must have an integer attribute out_dim (its feature size), "
                    f"got {type(encoding).__name__} with out_dim={enc_out!r}"
                )
            enc_in = getattr(encoding, "in_dim", None)
            if enc_in is not None and enc_in != self.in_dim:
                raise ValueError(f"encoding takes in_dim={enc_in} coordinates but in_dim={self.in_dim}")
        if not callable(activation):
            raise TypeError(f"activation must be callable, got {type(activation).__name__}")
        if final_activation is not None and not callable(final_activation):
            raise TypeError(f"final_activation must be callable or None, got {type(final_activation).__name__}")
        self.encoding = encoding
        self.activation = activation
        self.final_activation = final_activation

        widths = (self.encoded_dim, *self.hidden, self.out_dim)
        #: ``((out, in), ...)`` of every linear layer, first to last.
        self.layer_shapes: Tuple[Tuple[int, int], ...] = tuple(zip(widths[1:], widths[:-1]))
        self._offsets: List[int] = [0]
        for o, i in self.layer_shapes:
            self._offsets.append(self._offsets[-1] + o * i + o)

    @property
    def encoded_dim(self) -> int:
        """Size of the encoded coordinates, the input width of the first layer."""
        return self.in_dim if self.encoding is None else int(self.encoding.out_dim)

    @property
    def num_weights(self) -> int:
        r"""Total number :math:`P` of weights and biases, :math:`\sum_\ell (\text{in}_\ell + 1)\, \text{out}_\ell`."""
        return self._offsets[-1]

    def reset_parameters(self) -> None:
        """Reset the encoding (e.g. redraw random Fourier frequencies); the MLP has no weights of its own."""
        if self.encoding is not None and hasattr(self.encoding, "reset_parameters"):
            self.encoding.reset_parameters()

    def split_weights(self, weights: Tensor) -> List[Tuple[Tensor, Tensor]]:
        r"""Views of the per-layer :math:`(W_\ell, \mathbf{b}_\ell)` in a batch of flat weight vectors.

        Args:
            weights (Tensor): Shape :math:`(*, P)`.

        Returns:
            list of (Tensor, Tensor): For each layer, :math:`W` of shape :math:`(*, \text{out}, \text{in})`
            and :math:`\mathbf{b}` of shape :math:`(*, \text{out})`, views of ``weights``.
        """
        self._check_weights(weights, any_lead=True)
        lead = weights.shape[:-1]
        out = []
        for (o, i), start in zip(self.layer_shapes, self._offsets):
            W = weights[..., start:start + o * i].unflatten(-1, (o, i))
            b = weights[..., start + o * i:start + o * i + o]
            out.append((W, b.reshape(*lead, o)))
        return out

    def default_chunk_size(self, num_functions: int, num_point_sets: int = 1) -> int:
        r"""The most points evaluated at once by default: as many as keep the hidden activations of
        ``num_functions`` networks and the encoded points of ``num_point_sets`` coordinate sets (1 when the
        points are shared, :math:`B` when each sample has its own) under ``INR_CHUNK_ELEMENTS``
        elements. :meth:`forward` splits :math:`N` points into the fewest blocks of at most this size,
        all of (nearly) equal size.

        Args:
            num_functions (int): Number of networks :math:`B` (or :math:`B K`) evaluated together.
            num_point_sets (int): Number of distinct coordinate sets. (default: ``1``)
        """
        num_functions = check_positive_int(num_functions, "num_functions")
        num_point_sets = check_positive_int(num_point_sets, "num_point_sets")
        widest = max(w for w, _ in self.layer_shapes)
        return max(1, INR_CHUNK_ELEMENTS // (num_functions * widest + num_point_sets * self.encoded_dim))

    def _check_weights(self, weights: Tensor, any_lead: bool = False) -> None:
        if not isinstance(weights, Tensor):
            raise TypeError(f"weights must be a torch.Tensor, got {type(weights).__name__}")
        if not torch.is_floating_point(weights):
            raise TypeError(f"weights must be a floating-point tensor, got dtype {weights.dtype}")
        ok_dim = weights.dim() >= 1 if any_lead else weights.dim() in (2, 3)
        if not ok_dim or weights.size(-1) != self.num_weights:
            expected = "[..., num_weights]" if any_lead else "[B, num_weights] or [B, K, num_weights]"
            raise ValueError(
                f"weights must have shape {expected} with num_weights={self.num_weights}, got {tuple(weights.shape)}"
            )
        if weights.numel() == 0:
            raise ValueError(f"weights holds no function (shape {tuple(weights.shape)}); give at least one row of "
                             f"{self.num_weights} weights")

    def _check_coordinates(self, pos: Tensor, weights: Tensor) -> None:
        if not isinstance(pos, Tensor):
            raise TypeError(f"pos must be a torch.Tensor, got {type(pos).__name__}")
        if pos.dim() not in (2, 3) or pos.size(-1) != self.in_dim:
            raise ValueError(
                f"pos must have shape [N, {self.in_dim}] (shared by the batch) or [B, N, {self.in_dim}] "
                f"(in_dim={self.in_dim}), got {tuple(pos.shape)}"
            )
        if pos.dim() == 3 and pos.size(0) != weights.size(0):
            raise ValueError(
                f"pos holds coordinates for {pos.size(0)} samples but weights for {weights.size(0)} "
                f"(pos: {tuple(pos.shape)}, weights: {tuple(weights.shape)})"
            )
        check_finite(pos, "pos")
        if pos.dtype != weights.dtype and not torch.is_autocast_enabled(pos.device.type):
            raise TypeError(f"pos and weights must have the same dtype, got {pos.dtype} and {weights.dtype}")

    def forward(self, pos: Tensor, weights: Tensor, chunk_size: Optional[int] = None) -> Tensor:
        r"""Evaluate the :math:`B` (or :math:`B K`) functions given by ``weights`` at the points ``pos``.

        Args:
            pos (Tensor): Coordinates, :math:`(N, d)` for all samples or :math:`(B, N, d)` per sample.
            weights (Tensor): Flat weights, :math:`(B, P)` or :math:`(B, K, P)`.
            chunk_size (int, optional): Points evaluated at once. By default the fewest equal blocks
                of at most :meth:`default_chunk_size` points, which keeps each hidden activation block
                under ``INR_CHUNK_ELEMENTS`` elements (e.g. at most 2,730 points for 4 GASP
                functions). Chunking saves memory without autograd; with autograd every chunk's
                activations are kept for the backward pass.

        Returns:
            Tensor: :math:`(B, N, \text{out\_dim})` or :math:`(B, K, N, \text{out\_dim})`.
        """
        self._check_weights(weights)
        self._check_coordinates(pos, weights)
        if chunk_size is not None:
            chunk_size = check_positive_int(chunk_size, "chunk_size")
        B = weights.size(0)
        G = B * (weights.size(1) if weights.dim() == 3 else 1)  # number of networks
        N = pos.size(-2)
        layers = [(W.reshape(G, o, i), b.reshape(G, 1, o)) for (W, b), (o, i) in
                  zip(self.split_weights(weights), self.layer_shapes)]
        if chunk_size is None:
            # The fewest equal blocks under the default size: N = 3962 points in blocks of at most 630 are 7
            # blocks of 566, not 6 of 630 and one of 182 (each block costs a fixed overhead per layer).
            cap = self.default_chunk_size(G, 1 if pos.dim() == 2 else B)
            chunk_size = math.ceil(N / max(1, math.ceil(N / cap))) if N else cap
        y = batched_mlp(pos, layers, B, self.encoding, self.activation, chunk_size)  # h_L = W_L h_{L-1} + b_L
        if self.final_activation is not None:
            y = self.final_activation(y)
        return y.reshape(*weights.shape[:-1], N, self.out_dim)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, hidden={self.hidden}, "
            f"num_weights={self.num_weights}"
        )
