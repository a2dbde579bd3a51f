"""VaMoH: the variational mixture of hypergenerators (Koyuncu et al., ICML 2023)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .._random import randn
from .._validation import check_positive_int
from ..manifolds import Manifold, resolve_manifold
from ..nn import (FlowPrior, FourierFeatures, FunctionRepresentation, HyperNetwork, LayerSpec, Likelihood,
                  LinearFactors, PointTable, get_encoding, get_likelihood)
from ..ops import NeighborCache, default_cache
from ._categorical import CategoricalNet
from ._configs import vamoh_config
from ._points import Points, as_points, dense_points, point_dropout
from ._state import read_renamed_keys
from ._vamoh_inference import VaMoHInference, gaussian_log_q
from ._vamoh_setup import (base_function, build_encoder, check_training_options, initialize_factors,
                           initialize_generators, recalibrate_encoder)

__all__ = ["VaMoH", "ELBOTerms"]

_KL_ESTIMATORS = ("mc", "cross_entropy")

#: Elements (per point and function) one chunk of decoded query points may hold: 2**24 = 64 MiB of float32.
#: One 0.25-degree field (1M points, VaMoH ERA5) is then decoded in 21 chunks instead of one block of Fourier
#: features and categorical-net activations: measured 0.12 GB above the encoded state instead of 2.7 GB
#: (``benchmarks/vamoh.py``).
DECODE_CHUNK_ELEMENTS = 1 << 24


@dataclass
class ELBOTerms:
    r"""The terms of VaMoH's ELBO (Eq. 16) for each sample of a batch, in nats.

    Attributes:
        loss (Tensor): Scalar to minimise, :math:`-\frac1B \sum_b \mathcal L_b` (with ``kl_weight`` :math:`\beta
            \ne 1` the latent KL is weighted by :math:`\beta` here).
        elbo (Tensor): :math:`\mathcal L_b`, shape :math:`(B,)`.
        log_likelihood (Tensor): :math:`\sum_d \sum_k \tilde\pi_{dk} \log p_{\theta_k}(\mathbf y_d \mid \mathbf x_d)`.
        kl_z (Tensor): The estimate of :math:`D_\text{KL}(q(\mathbf z) \,\|\, p(\mathbf z))` (with
            ``kl_estimator="cross_entropy"`` the cross-entropy :math:`-\log p(\operatorname{sg}(\mathbf z))`).
        kl_c (Tensor): :math:`\sum_d D_\text{KL}(q(c_d) \,\|\, p(c_d))`, closed form.
        num_points (Tensor): Points :math:`D_b` the likelihood was evaluated on.
        num_encoded (Tensor): Points the encoder saw (fewer with point dropout).
    """

    loss: Tensor
    elbo: Tensor
    log_likelihood: Tensor
    kl_z: Tensor
    kl_c: Tensor
    num_points: Tensor
    num_encoded: Tensor

    def scalars(self) -> Dict[str, float]:
        """Batch means as floats (``elbo``, ``log_likelihood``, ``kl_z``, ``kl_c``, ``loss``) and the
        per-point ELBO ``elbo_per_point``, for logging."""
        out = {k: float(getattr(self, k).detach().mean()) for k in ("elbo", "log_likelihood", "kl_z", "kl_c")}
        out["loss"] = float(self.loss.detach())
        out["elbo_per_point"] = float((self.elbo.detach() / self.num_points.clamp_min(1)).mean())
        return out


class VaMoH(VaMoHInference, nn.Module):
    r"""Variational Mixture of HyperGenerators (`Koyuncu et al., ICML 2023 <https://arxiv.org/abs/2302.06223>`_).

    Generative model (Eq. 3): a global latent :math:`\mathbf z \sim p_{\psi_z}` (a planar-flow prior after a
    warm-up with :math:`\mathcal N(0, I)`), :math:`K` hypernetworks :math:`\theta_k = g_{\phi_k}(\mathbf z)` whose
    INRs :math:`f_{\theta_k}` read random-Fourier-feature encoded coordinates, per-point assignments
    :math:`c_d \sim \operatorname{Cat}(\pi_d)` with :math:`\pi_d = f_{\psi_c}(\mathbf x_d, \mathbf z)`, and
    :math:`\mathbf y_d \sim p_{\theta_{c_d}}(\mathbf y \mid \mathbf x_d)`. Inference model (Eq. 4):
    :math:`q(\mathbf z \mid \mathbf X, \mathbf Y)` Gaussian from a PointConv encoder and
    :math:`q(c_d \mid \mathbf z, \mathbf y_d, \mathbf x_d)` from an MLP. Training maximises (Eq. 16)

    .. math::
        \mathcal L = \sum_d \mathbb E_{q(\mathbf z)}\Big[\sum_k \tilde\pi_{dk}
        \log p_{\theta_k}(\mathbf y_d \mid \mathbf x_d)\Big]
        - D_\text{KL}\big(q(\mathbf z \mid \mathbf X, \mathbf Y) \,\|\, p_{\psi_z}(\mathbf z)\big)
        - \mathbb E_{q(\mathbf z)}\Big[\sum_d D_\text{KL}\big(q(c_d \mid \cdot) \,\|\, p(c_d \mid \mathbf x_d,
        \mathbf z)\big)\Big],

    with one reparameterised sample of :math:`\mathbf z` (``num_samples``). The categorical KL is exact. The
    KL to the flow prior is estimated by Monte Carlo, :math:`\log q(\mathbf z) - \log p_{\psi_z}(\mathbf z)`
    at the reparameterised sample, so both the encoder and the flow receive gradients
    (``kl_estimator="mc"``). ``kl_estimator="cross_entropy"`` reproduces the reference code instead:
    only :math:`-\log p_{\psi_z}(\operatorname{sg}(\mathbf z))`, which trains the flow but gives the encoder
    no gradient from this term. During the warm-up (:attr:`warmup`, Algorithm 1) the prior is
    :math:`\mathcal N(0, I)` with its closed-form KL, and the categorical prior is uniform.

    **Point dropout** (§3.3): in training mode, each batch draws :math:`p \sim \mathcal U(0, \alpha)` and
    the encoder sees each point with probability :math:`1 - p`, but never fewer points per cloud than
    the first encoder level has centroids (the paper's condition on :math:`\alpha`); the likelihood is
    evaluated at **all** points, so the model learns to infer the whole function from a part of it. On a
    grid batch the kept points are the same for every cloud (``shared_dropout``).

    **Generator output.** The INR output is linear; its role depends on the likelihood. For the
    (continuous) Bernoulli it is the logit :math:`\eta`, i.e. the paper's final sigmoid gives the
    probability :math:`\sigma(\eta)`, evaluated stably from the logit. For the discretized logistic
    and the Gaussian a sigmoid maps it to the location in :math:`[0, 1]`, unless the likelihood says
    otherwise (``GaussianLikelihood(link="identity")``: the output is the mean).

    Args:
        manifold (Manifold or str): Where the coordinates live (``"sphere"`` for ERA5).
        in_channels (int): Feature channels :math:`C` of :math:`\mathbf y`.
        encoder (sequence of LayerSpec or str): The PointConv encoder levels, or a Table 3 column name
            (``"era5"``, ...) for :func:`~pcfunc.nn.vamoh_encoder_specs`. (default: ``"era5"``)
        latent_dim (int): Size of :math:`\mathbf z`. (default: ``32``)
        num_components (int): :math:`K`. (default: ``3``)
        hypernet_hidden (sequence of int): Hidden widths of each hypernetwork. (default: ``(256, 512)``)
        generator_hidden (sequence of int): Hidden widths of each INR. (default: ``(64, 64, 64)``)
        num_frequencies (int): Random Fourier features :math:`m`. (default: ``128``)
        sigma (float): Their scale. (default: ``2.0``)
        encoding (torch.nn.Module, optional): Another coordinate encoding :math:`\gamma` of the generators and the
            categorical nets instead of the Fourier features (then ``num_frequencies`` and ``sigma`` are not
            used), e.g. :class:`~pcfunc.nn.SphericalHarmonics` on the sphere: a module with an ``out_dim`` taking
            ``manifold.ambient_dim`` coordinates (see :class:`~pcfunc.nn.FunctionRepresentation`), or a name /
            ``(name, options)`` pair of :func:`~pcfunc.nn.get_encoding` (the form a checkpoint can store, e.g.
            ``("spherical_harmonics", {"lmax": 12})``). (default: ``None``)
        categorical_hidden (sequence of int): Hidden widths of the categorical nets. (default: ``(32, 32)``)
        flow_layers (int): Planar-flow layers :math:`T` of the prior (0: always :math:`\mathcal N(0, I)`).
            (default: ``10``)
        likelihood (str, Likelihood or pair): A name, a likelihood, or ``(name, options)`` such as ``("gaussian",
            {"scale": "predicted"})`` (:func:`~pcfunc.nn.get_likelihood`). (default: ``"continuous_bernoulli"``)
        weight_hidden (sequence of int, optional): PointConv weight-network widths; by default those of the
            named Table 3 encoder, else ``(16, 16, 16, 16)``.
        max_dropout (float, optional): :math:`\alpha`; ``None`` for the largest the first encoder level
            allows, :math:`1 - \text{centroids}/N`; ``0`` disables point dropout. (default: ``None``)
        shared_dropout (bool): On a batch whose clouds share coordinates (a grid), drop the same points from
            every cloud (one mask per batch, like the rate :math:`p`), so that the encoder still computes its
            neighbour hierarchy and weight networks once per batch; ``False`` draws a mask per cloud. The paper
            draws :math:`p` per batch and is silent on the mask. (default: ``True``)
        kl_estimator (str): ``"mc"`` or ``"cross_entropy"``. (default: ``"mc"``)
        logit_cap (float, optional): Bound the categorical logits with :math:`c\tanh(\ell/c)`.
            (default: ``None``)
        negative_slope (float): LeakyReLU slope of the hypernetworks, INRs and categorical nets.
            (default: ``0.1``)
        cache (NeighborCache, optional): Neighbour cache of the encoder.
        kl_weight (float): :math:`\beta` on :math:`D_\text{KL}(q(\mathbf z) \| p(\mathbf z))` in the loss
            (`Higgins et al., 2017 <https://openreview.net/forum?id=Sy2fzU9gl>`_); the reported ELBO is always
            the paper's. (default: ``1``, the ELBO)
        encoder_norm (str): Normalisation in the encoder (:func:`~pcfunc.nn.norm_layer`): ``"batch"``
            (BatchNorm, the paper's) or ``"layer"`` (LayerNorm: the same function in training and evaluation
            mode; BatchNorm's running statistics, gathered on clouds thinned by point dropout, do not fit
            whole clouds or observed patches) or ``"none"``. (default: ``"batch"``)
        base_hidden (sequence of int, optional): Hidden widths of a **base function** :math:`g(\mathbf x)`,
            one ordinary INR (random Fourier features and an MLP, its own weights, not generated) shared by
            every field and component and added to each component's likelihood parameters before their link:
            :math:`\mu_k(\mathbf x) = \text{link}(f_{\theta_k(\mathbf z)}(\mathbf x) + g(\mathbf x))`.
            It holds what every field shares (orography, coastlines: the mean's fine detail) at a size a
            hypernetwork could not emit; with a predicted scale (``likelihood=("gaussian", {"scale":
            "predicted"})``) also a static map of the log noise level (larger over mountains and coasts, where
            the sub-grid detail varies most). Its last layer starts at zero, so a new model is unchanged.
            ``None``: no base (the paper). (default: ``None``)
        base_frequencies (int): Random Fourier features of the base function. (default: ``256``)
        base_sigma (float): Their scale. (default: ``4.0``)
        base_grid (int or tuple of int, optional): A second base term, a :class:`~pcfunc.nn.PointTable` on
            ``manifold.grid(base_grid)`` (e.g. ``(181, 360)``, the 1-degree lat/lon grid on the sphere): one
            learned value per grid point, interpolated between them. An MLP smooths detail finer than its
            capacity; the table holds it at the grid's resolution exactly (the mean's coastlines and
            orography at the data's finest grid), at a cost per point that does not grow with the grid.
            :meth:`initialize_generators` sets it to the training fields' mean. ``None``: none (the paper).
            (default: ``None``)
        base_neighbors (int): Grid points each query of the table reads. (default: ``4``)
        factor_grid (int or tuple of int, optional): A linear factor model (:class:`~pcfunc.nn.LinearFactors`) on
            ``manifold.grid(factor_grid)`` (e.g. the training grid): :math:`\sum_j z_j \phi_j(\mathbf x)` added
            to every component's location before its link, and its linear analysis (the least-squares fit of the
            analysis functions to the points a cloud has, :meth:`LinearFactors.analysis
            <pcfunc.nn.LinearFactors.analysis>`) added to the encoder's mean.
            :meth:`initialize_factors` sets both to the training fields' principal components, so the model
            starts at PCA with as many components as the latent and the hypergenerators learn what it leaves.
            ``None``: none (the paper). (default: ``None``)

    Shapes:
        Batches are PyG batches (``x`` :math:`(N, C)`, ``pos`` :math:`(N, D)`, ``batch``). Query
        coordinates ``pos`` are :math:`(M, D)` for every sample or :math:`(B, M, D)`; predictions are
        :math:`(B, M, C)`.
    """

    def __init__(
        self,
        manifold: Union[str, Manifold],
        in_channels: int = 1,
        encoder: Union[str, Sequence[Union[LayerSpec, Dict[str, Any]]]] = "era5",
        latent_dim: int = 32,
        num_components: int = 3,
        hypernet_hidden: Sequence[int] = (256, 512),
        generator_hidden: Sequence[int] = (64, 64, 64),
        num_frequencies: int = 128,
        sigma: float = 2.0,
        categorical_hidden: Sequence[int] = (32, 32),
        flow_layers: int = 10,
        likelihood: Union[str, Likelihood] = "continuous_bernoulli",
        weight_hidden: Optional[Sequence[int]] = None,
        max_dropout: Optional[float] = None,
        shared_dropout: bool = True,
        kl_estimator: str = "mc",
        logit_cap: Optional[float] = None,
        negative_slope: float = 0.1,
        cache: Optional[NeighborCache] = default_cache,
        encoder_norm: str = "batch",
        kl_weight: float = 1.0,
        base_hidden: Optional[Sequence[int]] = None,
        base_frequencies: int = 256,
        base_sigma: float = 4.0,
        base_grid: Optional[Union[int, Sequence[int]]] = None,
        base_neighbors: int = 4,
        encoding: Optional[Union[str, Tuple[str, Dict[str, Any]], nn.Module]] = None,
        factor_grid: Optional[Union[int, Sequence[int]]] = None,
    ) -> None:
        super().__init__()
        self.manifold = resolve_manifold(manifold)
        self.in_channels = check_positive_int(in_channels, "in_channels")
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.num_components = check_positive_int(num_components, "num_components")
        check_training_options(kl_estimator, _KL_ESTIMATORS, max_dropout, kl_weight)
        self.kl_estimator = kl_estimator
        #: :math:`\beta`, the weight of the latent KL in the loss (1: the ELBO).
        self.kl_weight = float(kl_weight)
        self.max_dropout = None if max_dropout is None else float(max_dropout)
        self.shared_dropout = bool(shared_dropout)
        self.encoder = build_encoder(self.in_channels, encoder, self.manifold, self.latent_dim, weight_hidden, cache,
                                     encoder_norm)
        first = self.encoder.specs[0]
        #: Points the first encoder level needs per cloud (its centroids), kept by point dropout.
        self.min_encoder_points = first.num_centroids or first.num_neighbors
        self.likelihood = get_likelihood(likelihood)
        if self.likelihood.num_channels not in (None, self.in_channels):
            raise ValueError(f"likelihood has num_channels={self.likelihood.num_channels} but "
                             f"in_channels={self.in_channels}")
        act = nn.LeakyReLU(negative_slope)
        dim = self.manifold.ambient_dim
        #: The coordinate encoding :math:`\gamma` shared by the generators and the categorical nets.
        enc = get_encoding(encoding, dim)
        self.encoding = FourierFeatures(dim, num_frequencies, sigma) if enc is None else enc
        inr = FunctionRepresentation(dim, self.in_channels * self.likelihood.num_params, generator_hidden,
                                     encoding=self.encoding, activation=act)
        self.hypernet = HyperNetwork(self.latent_dim, hypernet_hidden, inr, activation=act,
                                     num_components=self.num_components)
        enc_dim = inr.encoded_dim
        self.prior_c = CategoricalNet(enc_dim, self.latent_dim, self.num_components, 0, categorical_hidden,
                                      negative_slope, logit_cap)
        self.posterior_c = CategoricalNet(enc_dim, self.latent_dim, self.num_components, self.in_channels,
                                          categorical_hidden, negative_slope, logit_cap)
        self.flow = FlowPrior(self.latent_dim, flow_layers)
        self.base = None if base_hidden is None else base_function(
            dim, self.in_channels * self.likelihood.num_params, base_hidden, base_frequencies, base_sigma,
            negative_slope)
        self.base_table = None if base_grid is None else PointTable(
            self.manifold.grid(base_grid), self.in_channels * self.likelihood.num_params, base_neighbors)
        self.factors = None if factor_grid is None else LinearFactors(
            self.manifold.grid(factor_grid), self.latent_dim, self.in_channels, base_neighbors)
        # Saved with the weights, so a resumed run knows which stage of Algorithm 1 it is in.
        self.register_buffer("_warmup", torch.tensor(True))
        self._location_link = bool(self.likelihood.sigmoid_location)
        self._identity_link = not self._location_link and self.likelihood.support is None
        read_renamed_keys(self, {"fourier": "encoding"})  # checkpoints before the rename call it `fourier`

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, name: str, **overrides: Any) -> "VaMoH":
        """The paper configuration ``name`` (Table 3: ``"era5"``, ``"celeba_hq"``, ``"shapes3d"``,
        ``"polymnist"``, ``"shapenet"``), with keyword ``overrides``."""
        cfg = vamoh_config(name)
        cfg.pop("training")
        cfg.update(overrides)
        return cls(**cfg)

    @property
    def warmup(self) -> bool:
        """Whether the model is in the warm-up of Algorithm 1 (a :math:`\\mathcal N(0, I)` prior on
        :math:`\\mathbf z` and a uniform prior on :math:`c`). Set it to ``False`` to introduce the flow
        and the learned categorical prior."""
        return bool(self._warmup)

    @warmup.setter
    def warmup(self, value: bool) -> None:
        self._warmup.fill_(bool(value))

    # ------------------------------------------------------------------ pieces
    def encode(self, batch: Any) -> Tuple[Tensor, Tensor]:
        r"""Mean and log-variance of the amortised :math:`q(\mathbf z \mid \mathbf X, \mathbf Y)`, each :math:`(B, Z)`
        (:meth:`posterior` also refines them)."""
        pts = batch if isinstance(batch, Points) else as_points(batch, self.manifold, self.in_channels, "batch",
                                                                  self.dtype)
        # Under autocast the encoder runs in low precision; q(z) is kept in the parameters' dtype.
        mu, logvar = self.encoder(pts.x, pts.pos, pts.batch)
        mu = mu.to(self.dtype)
        if self.factors is not None:
            mu = mu + self.factors.analysis(pts.x.to(self.dtype), pts.pos.to(self.dtype), pts.batch, mu.size(0))
        return mu, logvar.to(self.dtype)

    def prior_log_prob(self, z: Tensor) -> Tensor:
        r""":math:`\log p(\mathbf z)` under the current prior (flow, or :math:`\mathcal N(0, I)` in warm-up)."""
        if self.warmup:
            return -0.5 * (z * z).sum(-1) - 0.5 * self.latent_dim * math.log(2 * math.pi)
        return self.flow.log_prob(z)

    def sample_latent(self, num: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """``num`` latents from the current prior, :math:`(num, Z)`."""
        num = check_positive_int(num, "num")
        if self.warmup:
            p = next(self.parameters())
            return randn((num, self.latent_dim), generator, device=p.device, dtype=p.dtype)
        return self.flow.sample(num, generator=generator)

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' floating dtype; under autocast (mixed precision) the likelihood, the KL terms and
        the flow are still computed in it."""
        return self.flow.base_loc.dtype

    def generator_weights(self, z: Tensor) -> Tensor:
        r"""The :math:`K` INRs' weights :math:`\theta_k = g_{\phi_k}(\mathbf z)` of every latent, :math:`(B, K, P)`."""
        return self.hypernet(z)

    def component_params(self, z: Tensor, pos: Tensor, weights: Optional[Tensor] = None) -> Tensor:
        r"""Likelihood parameters of the :math:`K` generators at ``pos`` (:math:`(N, D)` or :math:`(B, N, D)`),
        :math:`(B, N, K, P C)`, in :attr:`dtype`: :math:`f_{\theta_k}(\mathbf x)` plus the base function, if any,
        through the likelihood's link. ``weights`` from :meth:`generator_weights` (computed once for many chunks
        of points) or computed here."""
        if weights is None:
            weights = self.generator_weights(z)
        raw = self.hypernet.target(pos, weights).transpose(1, 2).to(self.dtype)  # [B, N, K, P C]
        if self.base is not None:
            raw = raw + self.base(pos).to(raw.dtype).unsqueeze(-2)  # [N, 1, P C] or [B, N, 1, P C]
        if self.base_table is not None:
            raw = raw + self.base_table(pos).to(raw.dtype).unsqueeze(-2)
        if self.factors is not None:
            c = self.in_channels
            linear = self.factors.synthesis(z.to(self.dtype), pos.to(self.dtype)).unsqueeze(-2)  # [B, N, 1, C]
            raw = torch.cat([raw[..., :c] + linear, raw[..., c:]], dim=-1)
        return self._link(raw)

    def _link(self, raw: Tensor) -> Tensor:
        """INR outputs :math:`(..., P C)` to likelihood parameters: a sigmoid on the location (its first ``C``
        entries) for the location-scale likelihoods, the identity (logits) for the Bernoullis."""
        if not self._location_link:
            return raw
        c = self.in_channels
        return torch.cat([torch.sigmoid(raw[..., :c]), raw[..., c:]], dim=-1)

    def _raw_location(self, mean: Tensor, eps: float) -> Tensor:
        """The raw output (before the link) whose location is ``mean``: itself with the identity link, else its logit
        (the sigmoid link, or the Bernoullis' logits), ``mean`` clamped into ``[eps, 1 - eps]`` first."""
        return mean if self._identity_link else torch.logit(mean.clamp(eps, 1 - eps))

    def _prior_logits(self, coords: Tensor, z: Tensor, n: int) -> Tensor:
        if self.warmup:
            return z.new_zeros(z.size(0), n, self.num_components, dtype=self.dtype)
        return self.prior_c(coords, z).to(self.dtype)

    def mixture_logits(self, z: Tensor, pos: Tensor, y: Optional[Tensor] = None) -> Tensor:
        r"""Logits of the prior :math:`p(c_d \mid \mathbf x_d, \mathbf z)` over the :math:`K` generators at ``pos``
        (uniform in the warm-up), or with the values ``y`` :math:`(B, N, C)` of the posterior
        :math:`q(c_d \mid \mathbf z, \mathbf y_d, \mathbf x_d)`: :math:`(B, N, K)`, in :attr:`dtype`."""
        coords = self.encoding(pos)
        if y is not None:
            return self.posterior_c(coords, z, y).to(self.dtype)
        return self._prior_logits(coords, z, pos.size(-2))

    def default_chunk_size(self, num_functions: int, num_point_sets: int = 1) -> int:
        """Query points decoded at once by default for ``num_functions`` latents (and ``num_point_sets``
        coordinate sets: 1 when shared): at most ``DECODE_CHUNK_ELEMENTS`` elements per chunk, a whole
        number of the INRs' own blocks (:meth:`~pcfunc.nn.FunctionRepresentation.default_chunk_size`)."""
        num = max(check_positive_int(num_functions, "num_functions"), 1)
        # Per point and function: the Fourier features of the categorical nets, their hidden layers and the K
        # components' outputs (the INRs chunk again inside).
        per_point = self.encoding.out_dim + sum(self.prior_c.hidden) + 4 * self.num_components
        size = max(256, DECODE_CHUNK_ELEMENTS // (num * per_point))
        # Only the last chunk ends in a short INR block (batch 16 on the 46 x 90 grid: 7 blocks instead of 8,
        # one of them 8 points).
        inner = self.hypernet.target.default_chunk_size(num * self.num_components, num_point_sets)
        return max(inner, size // inner * inner)

    # ------------------------------------------------------------------ around training (_vamoh_setup.py)
    initialize_generators = initialize_generators
    initialize_factors = initialize_factors
    recalibrate_encoder = recalibrate_encoder

    # ------------------------------------------------------------------ training
    def elbo(self, batch: Any, num_samples: int = 1, dropout: Optional[bool] = None,
             generator: Optional[torch.Generator] = None, target: Any = None) -> ELBOTerms:
        r"""The ELBO of Eq. 16 for each sample of ``batch`` and the loss to minimise.

        With ``target``, the encoder sees ``batch`` (e.g. a coarse field) and the likelihood terms are those
        of the ``target`` points of the same fields (e.g. a random subset of a finer grid): the bound
        :math:`\mathbb E_{q(\mathbf z \mid \mathbf X, \mathbf Y)}[\log p(\mathbf Y' \mid \mathbf X', \mathbf z)]
        - \mathrm{KL}`, so the generators learn what the target points show and the observed points do not
        ("fine supervision", for super-resolution). Memory grows with the number of target points, not
        with the resolution they were drawn from.

        Args:
            batch: A PyG ``Batch`` (or ``Data``) with ``x`` :math:`(N, C)` in the likelihood's support,
                ``pos`` :math:`(N, D)` and ``batch``.
            num_samples (int): Reparameterised samples of :math:`\mathbf z` averaged. (default: ``1``)
            dropout (bool, optional): Apply point dropout; ``None`` for ``self.training``.
            generator (torch.Generator, optional): Randomness of the dropout and of :math:`\mathbf z`.
            target (optional): Points :math:`(N', \cdot)` of the same fields (``x``, ``pos``, ``batch``
                numbering the same clouds as ``batch``) at which the likelihood is evaluated; ``None`` for
                ``batch`` itself (the paper). :func:`pcfunc.data.target_points` builds it from a batch of
                :class:`~pcfunc.data.ERA5Dataset` items with ``target=``.
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        pts = as_points(batch, self.manifold, self.in_channels, "batch", self.dtype)
        if self.likelihood.validate_args:  # once, here, to name batch.x; log_prob below does not repeat it
            self.likelihood.check(pts.x, "batch.x")
        lik_pts = pts
        if target is not None:
            lik_pts = as_points(target, self.manifold, self.in_channels, "target", self.dtype)
            if lik_pts.num_clouds != pts.num_clouds:
                raise ValueError(f"target must hold points of the same {pts.num_clouds} clouds as batch, got "
                                 f"{lik_pts.num_clouds}")
            if self.likelihood.validate_args:
                self.likelihood.check(lik_pts.x, "target.x")
        use_dropout = self.training if dropout is None else bool(dropout)
        enc = pts
        if use_dropout and self.max_dropout != 0.0:
            enc = point_dropout(pts, self.max_dropout, self.min_encoder_points, generator, self.shared_dropout)
        mu, logvar = self.encode(enc)
        B = mu.size(0)
        std = torch.exp(0.5 * logvar)
        eps = randn((num_samples, *mu.shape), generator, device=mu.device, dtype=mu.dtype)
        z = (mu + std * eps).reshape(num_samples * B, -1)

        dense = dense_points(lik_pts)  # pos [N, D] or [B, N, D]; y [B, N, C]; mask [B, N]
        rep = (lambda t: t.repeat(num_samples, *([1] * (t.dim() - 1)))) if num_samples > 1 else (lambda t: t)
        pos = dense.pos if dense.pos.dim() == 2 else rep(dense.pos)
        y, mask = rep(dense.y), rep(dense.mask)
        n = y.size(1)
        coords = self.encoding(pos)
        params = self.component_params(z, pos)  # [SB, N, K, PC]
        log_p = self.likelihood.log_prob(params, y.unsqueeze(-2), validate=False).sum(-1)  # [SB, N, K]
        q_logits = self.posterior_c(coords, z, y).to(self.dtype)
        log_q = torch.log_softmax(q_logits, dim=-1)
        log_prior_c = torch.log_softmax(self._prior_logits(coords, z, n), dim=-1)
        q = log_q.exp()
        m = mask.to(q.dtype)
        log_lik = ((q * log_p).sum(-1) * m).sum(-1)
        kl_c = ((q * (log_q - log_prior_c)).sum(-1) * m).sum(-1)

        if self.warmup:
            kl_z = 0.5 * (mu * mu + std * std - 1.0 - logvar).sum(-1).repeat(num_samples)
        elif self.kl_estimator == "mc":
            kl_z = gaussian_log_q(eps, logvar).reshape(-1) - self.flow.log_prob(z)
        else:
            kl_z = -self.flow.log_prob(z.detach())

        elbo = (log_lik - kl_z - kl_c).view(num_samples, B).mean(0)
        mean = lambda t: t.view(num_samples, B).mean(0)  # noqa: E731
        counts = dense.mask.sum(-1)
        loss = -elbo.mean() if self.kl_weight == 1.0 else \
            -(log_lik - self.kl_weight * kl_z - kl_c).view(num_samples, B).mean(0).mean()
        return ELBOTerms(loss=loss, elbo=elbo, log_likelihood=mean(log_lik), kl_z=mean(kl_z),
                         kl_c=mean(kl_c), num_points=counts,
                         num_encoded=torch.bincount(enc.batch, minlength=B))

    def forward(self, batch: Any) -> ELBOTerms:
        """Same as :meth:`elbo` with its defaults."""
        return self.elbo(batch)
