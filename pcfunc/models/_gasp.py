"""GASP: generative adversarial stochastic process (Dupont, Teh and Doucet, AISTATS 2022)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._random import rand, randn, randperm
from .._validation import check_finite, check_positive_int
from ..manifolds import Manifold, resolve_manifold
from ..nn import (FourierFeatures, FunctionRepresentation, HyperNetwork, PointConvNet, fit_function,
                  gasp_discriminator_specs, get_encoding)
from ..ops import NeighborCache, default_cache
from ._configs import copy_config
from ._points import (Points, as_points, check_pooled_points, check_query, dense_points, rank_in_cloud,
                      shared_positions)
from ._state import read_renamed_keys

__all__ = ["GASP", "GASPTerms", "GASP_CONFIGS", "gasp_config", "gan_discriminator_loss", "gan_generator_loss",
           "random_subset"]

_R1_ON = ("logit", "probability")


def gan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    r"""The discriminator's GAN loss from logits :math:`\ell = \operatorname{logit} D`, averaged over the batch:

    .. math::
        \mathcal L_D = -\frac1B \sum_b \log \sigma(\ell^\text{real}_b) - \frac1B \sum_b \log\big(1 - \sigma(\ell^\text{fake}_b)\big)
        = \overline{\operatorname{softplus}(-\ell^\text{real})} + \overline{\operatorname{softplus}(\ell^\text{fake})},

    computed with ``softplus`` so that it is exact for any logit (no :math:`\log 0`).
    """
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def gan_generator_loss(fake_logits: Tensor) -> Tensor:
    r"""The non-saturating generator loss (Goodfellow et al. 2014), used by GASP:
    :math:`\mathcal L_G = -\frac1B \sum_b \log \sigma(\ell^\text{fake}_b) = \overline{\operatorname{softplus}(-\ell^\text{fake})}`."""
    return F.softplus(-fake_logits).mean()


def random_subset(pts: Points, num: int, generator: Optional[torch.Generator] = None) -> Points:
    r"""``num`` random points of every cloud (all of a cloud with fewer). When every cloud has the same
    coordinates (a grid), **one** subset is drawn and shared by the batch, so the clouds still share
    coordinates and the discriminator computes their neighbour hierarchy once."""
    num = check_positive_int(num, "num")
    B = pts.num_clouds
    counts = torch.bincount(pts.batch, minlength=B)
    if shared_positions(pts) is not None:
        n = int(counts[0])
        if n <= num:
            return pts
        idx = randperm(n, generator, device=pts.pos.device)[:num].sort().values
        sel = (idx[None, :] + torch.arange(B, device=idx.device)[:, None] * n).reshape(-1)
    else:
        # Uniform subsets of every cloud at once: the points with the ``num`` highest random scores.
        score = rand((pts.batch.numel(),), generator, device=pts.pos.device)
        sel = (rank_in_cloud(score, pts.batch, counts) < num).nonzero().squeeze(1)
    return Points(pts.x[sel], pts.pos[sel], pts.batch[sel], B)


@dataclass
class GASPTerms:
    """The discriminator objective of one step: ``loss`` (GAN loss plus ``r1_weight`` x mean R1), its parts,
    and the logits."""

    loss: Tensor
    gan: Tensor
    r1: Tensor
    real_logits: Tensor
    fake_logits: Tensor

    def scalars(self) -> Dict[str, float]:
        """Floats for logging: losses and the mean discriminator probabilities on real and fake data."""
        return {"d_loss": float(self.loss.detach()), "d_gan": float(self.gan.detach()),
                "r1": float(self.r1.detach().mean()),
                "d_real": float(torch.sigmoid(self.real_logits.detach()).mean()),
                "d_fake": float(torch.sigmoid(self.fake_logits.detach()).mean())}


class GASP(nn.Module):
    r"""GASP (`Dupont, Teh and Doucet, AISTATS 2022 <https://arxiv.org/abs/2102.04776>`_): a GAN over functions.

    **Generator.** :math:`\mathbf z \sim \mathcal N(0, I)`, a hypernetwork :math:`\theta = g_\phi(\mathbf z)` and
    the INR :math:`f_\theta(\gamma(\mathbf x)) = \tanh(\mathrm{MLP}_\theta(\gamma(\mathbf x)))` with random Fourier
    features :math:`\gamma`: a function that can be evaluated at any coordinates. Features must be scaled to
    :math:`[-1, 1]` (App. A.1).

    **Discriminator.** A PointConv network on the point cloud :math:`\{(\mathbf x_i, \mathbf y_i)\}` (App. A.1:
    :math:`3^d` neighbours per convolution, average pooling by :math:`2^d`, BatchNorm, weight MLPs of 4 x 16),
    returning a logit :math:`\ell`; :math:`D = \sigma(\ell)`.

    **Losses.** The non-saturating GAN loss (:func:`gan_discriminator_loss`, :func:`gan_generator_loss`) and
    the point-cloud R1 penalty on real data (§3.4),

    .. math::
        R_1(\mathbf s) = \tfrac12 \sum_i \big\|\nabla_{\mathbf y_i} \ell(\mathbf s)\big\|^2,

    added as ``r1_weight`` :math:`\times` its batch mean. pcfunc takes it on the **logit** :math:`\ell` by
    default, as Mescheder et al. (2018) define R1 (on the discriminator before its final nonlinearity): the
    gradient of the probability, :math:`\sigma'(\ell)\nabla\ell`, vanishes exactly when the discriminator is
    confident, which is when the penalty should act. ``r1_on="probability"`` penalises
    :math:`\nabla_{\mathbf y} \sigma(\ell)` as the reference code does. The paper does not give
    :math:`\gamma`; the default 10 is Mescheder et al.'s.

    Args:
        manifold (Manifold or str): Space of the coordinates (``"sphere"`` for ERA5, ``Euclidean(2)`` for images).
        in_channels (int): Feature channels :math:`k`.
        dim (int, optional): Dimension :math:`d` of the domain for the discriminator's neighbour counts
            (:math:`3^d`, pooling :math:`2^d`); default: 2 on the sphere, :math:`n` on ``Torus(n)``, the
            ambient dimension otherwise.
        latent_dim (int): (default: ``64``)
        hypernet_hidden (sequence of int): (default: ``(256, 512)``)
        inr_hidden (sequence of int): (default: ``(128, 128, 128)``)
        num_frequencies (int, optional): Fourier features :math:`m` (``None``: raw coordinates, as for
            ShapeNet voxels). (default: ``128``)
        sigma (float): Fourier feature scale. (default: ``2.0``)
        encoding (torch.nn.Module, optional): Another coordinate encoding :math:`\gamma` instead of the Fourier
            features (then ``num_frequencies`` and ``sigma`` are not used), e.g.
            :class:`~pcfunc.nn.SphericalHarmonics` on the sphere; any module with an ``out_dim`` (see
            :class:`~pcfunc.nn.FunctionRepresentation`), or a name / ``(name, options)`` pair of
            :func:`~pcfunc.nn.get_encoding`. (default: ``None``)
        disc_channels (sequence of int): Discriminator channels. (default: ``(64, 128, 256, 512)``)
        weight_hidden (sequence of int): Weight-MLP widths. (default: ``(16, 16, 16, 16)``)
        r1_weight (float): :math:`\gamma`. (default: ``10.0``)
        r1_on (str): ``"logit"`` or ``"probability"``. (default: ``"logit"``)
        cache (NeighborCache, optional): Neighbour cache of the discriminator.
    """

    def __init__(self, manifold: Union[str, Manifold], in_channels: int = 1, dim: Optional[int] = None,
                 latent_dim: int = 64, hypernet_hidden: Sequence[int] = (256, 512),
                 inr_hidden: Sequence[int] = (128, 128, 128), num_frequencies: Optional[int] = 128,
                 sigma: float = 2.0, disc_channels: Sequence[int] = (64, 128, 256, 512),
                 weight_hidden: Sequence[int] = (16, 16, 16, 16), r1_weight: float = 10.0, r1_on: str = "logit",
                 cache: Optional[NeighborCache] = default_cache,
                 encoding: Optional[Union[str, Tuple[str, Dict[str, Any]], nn.Module]] = None) -> None:
        super().__init__()
        self.manifold = resolve_manifold(manifold)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        if r1_on not in _R1_ON:
            raise ValueError(f"r1_on must be one of {_R1_ON}, got {r1_on!r}")
        if not (isinstance(r1_weight, (int, float)) and r1_weight >= 0):
            raise ValueError(f"r1_weight must be a non-negative number, got {r1_weight!r}")
        self.r1_weight, self.r1_on = float(r1_weight), r1_on
        if dim is None:
            dim = int(self.manifold.intrinsic_dim)
        self.dim = check_positive_int(dim, "dim")
        amb = self.manifold.ambient_dim
        enc = get_encoding(encoding, amb)
        if enc is None and num_frequencies is not None:
            enc = FourierFeatures(amb, num_frequencies, sigma)
        inr = FunctionRepresentation(amb, self.in_channels, inr_hidden, encoding=enc,
                                     activation=nn.LeakyReLU(0.1), final_activation=nn.Tanh())
        #: The generator's hypernetwork :math:`g_\phi` (its INR is ``hypernet.target``).
        self.hypernet = HyperNetwork(self.latent_dim, hypernet_hidden, inr, activation=nn.LeakyReLU(0.1))
        self.discriminator = PointConvNet(self.in_channels, gasp_discriminator_specs(disc_channels, self.dim),
                                          self.manifold, head="logit", weight_hidden=tuple(weight_hidden),
                                          cache=cache)
        read_renamed_keys(self, {"generator": "hypernet"})  # checkpoints before the rename call it `generator`

    @property
    def generator(self) -> HyperNetwork:
        """Deprecated name of :attr:`hypernet` (``generator`` arguments are :class:`torch.Generator` objects)."""
        warnings.warn("GASP.generator is deprecated, use GASP.hypernet (the same network)", FutureWarning,
                      stacklevel=2)
        return self.hypernet

    @classmethod
    def from_config(cls, name: str, **overrides: Any) -> "GASP":
        """The paper configuration ``name`` (App. A.1: ``"mnist"``, ``"celeba_hq64"``, ``"celeba_hq128"``,
        ``"shapenet"``, ``"era5"``) with keyword ``overrides``."""
        cfg = gasp_config(name)
        cfg.pop("training")
        cfg.update(overrides)
        return cls(**cfg)

    # ------------------------------------------------------------------ generator
    def initialize_generator(self, pos: Tensor, y: Tensor, steps: int = 500, lr: float = 1e-2, num_points: int = 4096,
                             residual_scale: float = 0.1, generator: Optional[torch.Generator] = None) -> float:
        r"""Start the generator at the function that best fits the pooled training points (least squares).

        Fits one INR weight vector :math:`\theta_0` to minimise :math:`\frac1N \sum_i \lVert f_{\theta_0}(\mathbf x_i)
        - \mathbf y_i \rVert^2` (``fit_function``) and sets the hypernetwork to
        :math:`\theta_0 + \text{residual\_scale} \cdot W \mathbf h(\mathbf z)`
        (:meth:`~pcfunc.nn.HyperNetwork.start_at`):
        every latent then generates (nearly) the data's mean function at the first step, and the adversarial game
        starts from there instead of from a random field. The paper starts from a random initialisation.

        Args:
            pos (Tensor): Coordinates of the pooled training points :math:`(N, D)`.
            y (Tensor): Their features :math:`(N, C)` in :math:`[-1, 1]` (GASP's range).
            steps, lr, num_points, residual_scale, generator: As in :meth:`pcfunc.models.VaMoH.initialize_generators`.

        Returns:
            float: The final mean squared error per point.
        """
        check_pooled_points(pos, y, self.manifold, self.in_channels)
        if float(y.abs().max()) > 1.0:
            raise ValueError("y must be in [-1, 1] (GASP's feature range)")
        dtype = self.hypernet.weights[0].dtype
        theta, final = fit_function(self.hypernet.target, pos.to(dtype),
                                    lambda out, v: (out - v).pow(2).sum(-1).mean(), y.to(dtype), steps, lr,
                                    num_points, generator=generator)
        self.hypernet.start_at(theta, residual_scale)
        return final

    def sample_latent(self, num: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``num`` latents :math:`\\mathbf z \\sim \\mathcal N(0, I)`, :math:`(num, Z)`."""
        num = check_positive_int(num, "num")
        p = self.hypernet.weights[0]
        return randn((num, self.latent_dim), generator, device=p.device, dtype=p.dtype)

    def generate(self, z: Tensor, pos: Tensor, chunk_size: Optional[int] = None) -> Tensor:
        r"""Features :math:`f_{g_\phi(\mathbf z)}(\mathbf x)` of the functions of ``z`` :math:`(B, Z)` at ``pos``
        :math:`(N, D)` or :math:`(B, N, D)`: :math:`(B, N, C)` in :math:`[-1, 1]`."""
        if not isinstance(z, Tensor) or z.dim() != 2 or z.size(1) != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must have shape [B, {self.latent_dim}], got {shape}")
        check_finite(z, "z")
        check_query(pos, self.manifold, z.size(0))
        return self.hypernet.decode(z, pos, chunk_size=chunk_size)

    @torch.no_grad()
    def sample(self, num: int, pos: Tensor, generator: Optional[torch.Generator] = None,
               chunk_size: Optional[int] = None) -> Tensor:
        """``num`` samples from the model at ``pos`` :math:`(M, D)` (any resolution): :math:`(num, M, C)`."""
        return self.generate(self.sample_latent(num, generator), pos, chunk_size)

    # ------------------------------------------------------------------ discriminator
    def discriminate(self, x: Tensor, pos: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        """Logits :math:`(B,)` of the discriminator for a packed batch."""
        return self.discriminator(x, pos, batch).squeeze(-1)

    def r1_penalty(self, x: Tensor, pos: Tensor, batch: Tensor, create_graph: bool = True) -> Tuple[Tensor, Tensor]:
        r"""Per-cloud :math:`R_1 = \frac12 \sum_i \|\nabla_{\mathbf y_i} s\|^2` with :math:`s` the logit (or
        probability, see ``r1_on``), and the logits. Differentiable (``create_graph``) for training."""
        x = x.detach().requires_grad_(True)
        logits = self.discriminate(x, pos, batch)
        s = logits if self.r1_on == "logit" else torch.sigmoid(logits)
        (grad,) = torch.autograd.grad(s.sum(), x, create_graph=create_graph)
        sq = grad.pow(2).sum(-1)
        r1 = 0.5 * sq.new_zeros(logits.size(0)).index_add(0, batch, sq)
        return r1, logits

    def discriminator_loss(self, real: Any, z: Optional[Tensor] = None, num_points: Optional[int] = None,
                           generator: Optional[torch.Generator] = None) -> GASPTerms:
        r"""The discriminator's objective on a real batch and as many generated functions, at the same points.

        Args:
            real: PyG batch of real functions (features in :math:`[-1, 1]`).
            z (Tensor, optional): Latents of the fakes; drawn from the prior by default.
            num_points (int, optional): Train on a random subset of this many points per cloud (one subset
                shared by the batch on a grid); the fakes are generated at the real clouds' coordinates.
            generator (torch.Generator, optional): Randomness of the subset and of ``z``.
        """
        pts = self._real(real, num_points, generator)
        if z is None:
            z = self.sample_latent(pts.num_clouds, generator)
        with torch.no_grad():
            fake = self._fake_like(z, pts)
        if self.r1_weight > 0:
            r1, real_logits = self.r1_penalty(pts.x, pts.pos, pts.batch)
        else:
            real_logits = self.discriminate(pts.x, pts.pos, pts.batch)
            r1 = real_logits.new_zeros(real_logits.shape)
        fake_logits = self.discriminate(fake.x, fake.pos, fake.batch)
        gan = gan_discriminator_loss(real_logits, fake_logits)
        return GASPTerms(gan + self.r1_weight * r1.mean(), gan, r1, real_logits, fake_logits)

    def generator_loss(self, real: Any, z: Optional[Tensor] = None, num_points: Optional[int] = None,
                       generator: Optional[torch.Generator] = None) -> Tensor:
        """The non-saturating generator loss for functions generated at the coordinates of ``real``'s clouds."""
        pts = self._real(real, num_points, generator)
        if z is None:
            z = self.sample_latent(pts.num_clouds, generator)
        fake = self._fake_like(z, pts)
        return gan_generator_loss(self.discriminate(fake.x, fake.pos, fake.batch))

    def _real(self, real: Any, num_points: Optional[int], generator: Optional[torch.Generator]) -> Points:
        pts = as_points(real, self.manifold, self.in_channels, "real", self.hypernet.weights[0].dtype)
        if bool((pts.x.abs() > 1.0 + 1e-6).any()):
            raise ValueError("real.x must be scaled to [-1, 1] (the generator ends in a tanh), got range "
                             f"[{float(pts.x.min())}, {float(pts.x.max())}]")
        return pts if num_points is None else random_subset(pts, num_points, generator)

    def _fake_like(self, z: Tensor, pts: Points) -> Points:
        B = pts.num_clouds
        if z.dim() != 2 or z.size(0) != B:
            raise ValueError(f"z must have shape [{B}, {self.latent_dim}] (one latent per real cloud), "
                             f"got {tuple(z.shape)}")
        # One generator call at the real clouds' coordinates: shared (a grid) or padded per cloud.
        dense = dense_points(pts)
        y = self.hypernet.decode(z, dense.pos)  # z drawn by training itself: no check (a GPU sync) per step
        return Points(y[dense.mask], pts.pos, pts.batch, B)


# App. A.1 of the GASP paper. Learning rates: generator 1e-4, discriminator 4e-4, Adam betas (0.5, 0.999),
# unless stated (ShapeNet: 2e-5 / 8e-5). ("euclidean", d) stands for Euclidean(d).
GASP_CONFIGS: Dict[str, Dict[str, Any]] = {
    "mnist": dict(manifold=("euclidean", 2), in_channels=1, sigma=1.0, disc_channels=(64, 128, 256),
                  training=dict(batch_size=128, epochs=150, lr_generator=1e-4, lr_discriminator=4e-4)),
    "celeba_hq64": dict(manifold=("euclidean", 2), in_channels=3, sigma=2.0, disc_channels=(64, 128, 256, 512),
                        training=dict(batch_size=64, epochs=300, lr_generator=1e-4, lr_discriminator=4e-4)),
    "celeba_hq128": dict(manifold=("euclidean", 2), in_channels=3, sigma=3.0,
                         disc_channels=(64, 128, 256, 512, 1024),
                         training=dict(batch_size=22, epochs=70, lr_generator=1e-4, lr_discriminator=4e-4)),
    "shapenet": dict(manifold=("euclidean", 3), in_channels=1, num_frequencies=None,
                     disc_channels=(32, 64, 128, 256),
                     training=dict(batch_size=24, epochs=200, lr_generator=2e-5, lr_discriminator=8e-5)),
    "era5": dict(manifold="sphere", in_channels=1, dim=2, sigma=2.0, disc_channels=(64, 128, 256, 512),
                 training=dict(batch_size=64, epochs=300, lr_generator=1e-4, lr_discriminator=4e-4)),
}


def gasp_config(name: str) -> Dict[str, Any]:
    """A copy of GASP's paper configuration ``name`` (App. A.1): :class:`GASP` keyword arguments plus
    ``"training"`` (batch size, epochs, learning rates; Adam betas are (0.5, 0.999))."""
    return copy_config(GASP_CONFIGS, name)
