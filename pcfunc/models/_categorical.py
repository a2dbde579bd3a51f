"""VaMoH's per-point categorical networks: the prior p(c | x, z) and the posterior q(c | x, y, z)."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .._validation import check_positive_int
from ..nn._activations import in_place

__all__ = ["CategoricalNet"]


class CategoricalNet(nn.Module):
    r"""An MLP from a point's encoded coordinates, (optionally) its features and the global latent to :math:`K` logits.

    VaMoH's prior :math:`p_{\psi_c}(c_d \mid \mathbf x_d, \mathbf z)` (Eq. 2, no features) and posterior
    :math:`q_{\gamma_c}(c_d \mid \mathbf z, \mathbf y_d, \mathbf x_d)` (Eq. 5, with features):

    .. math::
        \boldsymbol\ell_d = W_L\, a\big(\cdots a(A\,\gamma(\mathbf x_d) + F\,\mathbf y_d + Z\,\mathbf z + \mathbf b_1)
        \cdots\big) + \mathbf b_L, \qquad \pi_d = \operatorname{softmax}(\boldsymbol\ell_d).

    The first layer is the linear map of the concatenation :math:`[\gamma(\mathbf x_d), \mathbf y_d, \mathbf z]`
    computed in three parts, so that on coordinates shared by a batch :math:`A\gamma(\mathbf x)` is computed
    once for all samples and :math:`Z\mathbf z` once per sample, never copied per point.

    The output are plain logits (the paper's softmax). ``logit_cap=c`` bounds them to
    :math:`c \tanh(\ell / c)`, as the reference code does with :math:`c = 1`; it is off by default.

    Args:
        coord_dim (int): Size of the encoded coordinates :math:`\gamma(\mathbf x)`.
        latent_dim (int): Size of :math:`\mathbf z`.
        num_components (int): :math:`K`.
        feature_dim (int): Size of :math:`\mathbf y` (0 for the prior). (default: ``0``)
        hidden (sequence of int): Hidden widths (VaMoH Table 3: ``(32, 32)``). (default: ``(32, 32)``)
        negative_slope (float): LeakyReLU slope. (default: ``0.1``)
        logit_cap (float, optional): The tanh bound, or ``None``. (default: ``None``)

    Shapes:
        - **coords:** :math:`(N, E)` shared or :math:`(B, N, E)`
        - **z:** :math:`(B, Z)`
        - **y:** :math:`(B, N, F)` or ``None``
        - **output:** logits :math:`(B, N, K)`
    """

    def __init__(self, coord_dim: int, latent_dim: int, num_components: int, feature_dim: int = 0,
                 hidden: Sequence[int] = (32, 32), negative_slope: float = 0.1,
                 logit_cap: Optional[float] = None) -> None:
        super().__init__()
        self.coord_dim = check_positive_int(coord_dim, "coord_dim")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.num_components = check_positive_int(num_components, "num_components")
        if isinstance(feature_dim, bool) or not isinstance(feature_dim, int) or feature_dim < 0:
            raise ValueError(f"feature_dim must be a non-negative integer, got {feature_dim!r}")
        hidden = tuple(hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive integers, got {hidden!r}")
        if logit_cap is not None and not (isinstance(logit_cap, (int, float)) and math.isfinite(logit_cap)
                                          and logit_cap > 0):
            raise ValueError(f"logit_cap must be a positive number or None, got {logit_cap!r}")
        self.feature_dim, self.hidden, self.logit_cap = feature_dim, hidden, logit_cap
        h0 = hidden[0]
        self.coord_in = nn.Linear(coord_dim, h0)
        self.latent_in = nn.Linear(latent_dim, h0, bias=False)
        self.feature_in = nn.Linear(feature_dim, h0, bias=False) if feature_dim else None
        widths = (*hidden, num_components)
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:]))
        self.act = nn.LeakyReLU(negative_slope)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise like one :class:`torch.nn.Linear` on the concatenated input (uniform, bound
        :math:`1/\\sqrt{E + F + Z}`), and the other layers with their defaults."""
        fan_in = self.coord_dim + self.feature_dim + self.latent_dim
        bound = 1.0 / math.sqrt(fan_in)
        with torch.no_grad():
            for lin in (self.coord_in, self.latent_in, self.feature_in):
                if lin is not None:
                    lin.weight.uniform_(-bound, bound)
            self.coord_in.bias.uniform_(-bound, bound)
        for lin in self.layers:
            lin.reset_parameters()

    def forward(self, coords: Tensor, z: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if (y is None) != (self.feature_in is None):
            raise ValueError("y must be given exactly when the network was built with feature_dim > 0 "
                             f"(feature_dim={self.feature_dim})")
        h = self.coord_in(coords)  # [N, H] or [B, N, H]
        h = h + self.latent_in(z).unsqueeze(-2)  # [B, N, H]
        if y is not None:
            h = h + self.feature_in(y)
        # Every h the activation reads is a fresh sum or layer output that nothing else reads: applied in place,
        # it keeps one [B, N, H] tensor per layer for the backward pass instead of two (VaMoH ERA5 at batch 16:
        # 32 MB less for the prior and posterior nets together). The layers run on a 2-D view, so that their
        # outputs are not views themselves: an in-place change of a view would make autograd copy it back.
        act = in_place(self.act)
        lead = h.shape[:-1]
        h = act(h).reshape(-1, h.size(-1))
        for i, lin in enumerate(self.layers):
            h = lin(act(h) if i else h)
        h = h.view(*lead, h.size(-1))
        if self.logit_cap is not None:
            h = self.logit_cap * torch.tanh(h / self.logit_cap)
        return h

    def extra_repr(self) -> str:
        return (f"coord_dim={self.coord_dim}, feature_dim={self.feature_dim}, latent_dim={self.latent_dim}, "
                f"num_components={self.num_components}, hidden={self.hidden}, logit_cap={self.logit_cap}")
