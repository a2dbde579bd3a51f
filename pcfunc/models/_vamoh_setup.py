"""VaMoH around its training: where the generators start (:meth:`VaMoH.initialize_generators`) and the encoder's
BatchNorm statistics for evaluation (:meth:`VaMoH.recalibrate_encoder`). Methods of :class:`VaMoH`, kept apart
from the model's equations."""

from __future__ import annotations

import math
from typing import Any, Iterable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from .._random import randint
from .._validation import check_positive_int
from ..nn import FourierFeatures, PointConvNet, fit_function, vamoh_encoder_specs
from ._points import as_points, check_pooled_points

__all__ = ["initialize_generators", "initialize_factors", "recalibrate_encoder"]


def initialize_generators(self, pos: Tensor, y: Tensor, steps: int = 500, lr: float = 1e-2,
                          num_points: int = 4096, residual_scale: float = 0.1,
                          generator: Optional[torch.Generator] = None, base_steps: int = 1000,
                          base_lr: float = 5e-3) -> float:
    r"""Start every generator at the function that best explains the training data as a whole.

    Fits one INR weight vector :math:`\theta_0` (and the likelihood's own parameters, e.g. a learned
    scale) by maximising :math:`\sum_i \log p_{\theta_0}(\mathbf y_i \mid \mathbf x_i)` over the pooled points
    of the training functions, with Adam on random subsets of ``num_points`` points; then sets the last
    bias of every hypernetwork to :math:`\theta_0` and scales its last weight by ``residual_scale``, so
    that :math:`g_{\phi_k}(\mathbf z) = \theta_0 + \text{residual\_scale} \cdot W_k \mathbf h_k(\mathbf z)`.

    Every latent then decodes to (nearly) the pointwise mean of the data (with a predicted scale, also
    its spread) from the first step, and training spends its steps on what distinguishes one function
    from another instead of on the mean, which a randomly initialised hypernetwork reaches only after
    hundreds of steps. The paper starts from a random initialisation; this is an option.

    With a base function (``VaMoH(base_hidden=...)``), it is then fitted for ``base_steps`` Adam steps to what
    :math:`\theta_0` leaves, :math:`\log p(\mathbf y_i \mid \text{link}(f_{\theta_0}(\mathbf x_i) + g(\mathbf x_i)))`
    with :math:`\theta_0` fixed, so the shared fine detail (the mean's orography and coastlines, beyond what the
    small generator INRs hold) is in place from the first training step. With a table (``VaMoH(base_grid=...)``),
    each of its grid points is then set to what the rest leaves of the mean of the training values nearest to it
    (the logit of that mean, less :math:`f_{\theta_0}` and the base function there), and the likelihood's own
    parameters are refitted.

    Args:
        pos (Tensor): Coordinates of the pooled training points, :math:`(N, D)` (e.g. every point of
            every training field; points may repeat).
        y (Tensor): Their values, :math:`(N, C)`, in the likelihood's support.
        steps (int): Adam steps. (default: ``500``)
        lr (float): Adam learning rate. (default: ``1e-2``)
        num_points (int): Points per step. (default: ``4096``)
        residual_scale (float): Factor on the hypernetworks' last weights, in :math:`(0, 1]`. (default: ``0.1``)
        generator (torch.Generator, optional): Randomness of the initial weights and the point subsets.
        base_steps (int): Adam steps fitting the base function, if any; ``0``: leave it (and the table) at zero.
            (default: ``1000``)
        base_lr (float): Their learning rate. (default: ``5e-3``)

    Returns:
        float: The final mean negative log-likelihood per point on all points (of :math:`\theta_0` plus the
        base function, if fitted).
    """
    if not (isinstance(residual_scale, (int, float)) and 0 < residual_scale <= 1):
        raise ValueError(f"residual_scale must be in (0, 1], got {residual_scale!r}")
    check_pooled_points(pos, y, self.manifold, self.in_channels)
    if self.likelihood.validate_args:
        self.likelihood.check(y, "y")
    target = self.hypernet.target
    pos, y = pos.to(self.dtype), y.to(self.dtype)
    c = self.in_channels

    def nll(raw: Tensor, v: Tensor) -> Tensor:
        if self._location_link:
            raw = torch.cat([torch.sigmoid(raw[..., :c]), raw[..., c:]], dim=-1)
        return -self.likelihood.log_prob(raw, v, validate=False).sum(-1).mean()

    if isinstance(base_steps, bool) or not isinstance(base_steps, int) or base_steps < 0:
        raise ValueError(f"base_steps must be a non-negative integer, got {base_steps!r}")
    theta, final = fit_function(target, pos, nll, y, steps, lr, num_points, list(self.likelihood.parameters()),
                                generator)
    self.hypernet.start_at(theta, residual_scale)
    if (self.base is not None or self.base_table is not None) and base_steps:
        final = _fit_base(self, theta, pos, y, nll, base_steps, base_lr, num_points, generator)
    return final


def _fit_base(self: Any, theta: Tensor, pos: Tensor, y: Tensor, nll: Any, steps: int, lr: float, num_points: int,
              generator: Optional[torch.Generator]) -> float:
    """The base terms with the generators' INR fixed at ``theta``: Adam on the base function (and the likelihood's
    own parameters), then the table set in closed form to what they leave at each of its points (the logit of the
    mean value there) and Adam on the likelihood's parameters again; the final mean negative log-likelihood over
    all points."""
    target, base, table = self.hypernet.target, self.base, self.base_table
    theta = theta[None]
    n, m = pos.size(0), min(num_points, pos.size(0))
    if table is not None:
        # The pooled points repeat the same locations field after field: the table's neighbours and weights are
        # found once per distinct location, and every step reads the table's current values through them.
        where, inverse = torch.unique(pos, dim=0, return_inverse=True)
        t_index, t_weight = table.interpolation(where)

    def shared(p: Tensor) -> Tensor:  # theta_0's INR and the base function at the points p
        out = target(p, theta)[0]
        return out + base(p).to(p.dtype) if base is not None else out

    def raw(rows: Tensor) -> Tensor:  # every term at the pooled points pos[rows]
        p = pos[rows]
        out = shared(p)
        if table is not None:
            j = inverse[rows]
            values = table.values.detach()[t_index[j]]
            out = out + (values * t_weight[j].unsqueeze(-1).to(values.dtype)).sum(1).to(p.dtype)
        return out

    def adam(params: List[Tensor]) -> None:
        if not params:
            return
        opt = torch.optim.Adam(params, lr=lr)
        with torch.enable_grad():
            for _ in range(steps):
                idx = randint(n, (m,), generator, device=pos.device)
                value = nll(raw(idx), y[idx])
                opt.zero_grad(set_to_none=True)
                value.backward()
                opt.step()

    if base is not None:
        adam([*base.parameters(), *self.likelihood.parameters()])
    if table is not None:
        with torch.no_grad():
            c, before = self.in_channels, table.values.detach().clone()
            padded = torch.cat([y, y.new_zeros(n, table.channels - c)], dim=-1)
            hit = table.fit_nearest_(pos, padded)
            anchors = table.anchors.to(pos.dtype)
            rest = torch.cat([shared(anchors[s:s + m])[:, :c] for s in range(0, anchors.size(0), m)])
            eps = 1e-4
            before[hit, :c] = (self._raw_location(table.values[:, :c].to(pos.dtype), eps) - rest)[hit].to(before.dtype)
            table.values.copy_(before)
        adam(list(self.likelihood.parameters()))
    with torch.no_grad():
        return sum(float(nll(raw(torch.arange(s, min(s + m, n), device=pos.device)), y[s:s + m])) * min(m, n - s)
                   for s in range(0, n, m)) / n


@torch.no_grad()
def initialize_factors(self, fields: Tensor, pos: Tensor, posterior_std: float = 0.1) -> Tensor:
    r"""Start the linear factor model (``VaMoH(factor_grid=...)``) at the training fields' principal components.

    Each anchor of ``factors`` takes the values of the nearest of the points ``pos``; then
    :meth:`~pcfunc.nn.LinearFactors.fit_pca_` sets the synthesis to the whitened principal components and the
    analysis to PCA's projection. Where the synthesis is added before a sigmoid (a location-scale likelihood with
    the sigmoid link, or a Bernoulli's logits), the components are divided by the link's slope
    :math:`\mu(1 - \mu)` at the fields' mean :math:`\mu`; where the location is the generators' output
    (``GaussianLikelihood(link="identity")``) they are taken as they are. The encoder's own output then starts at
    zero mean and standard deviation ``posterior_std``, so that :math:`q(\mathbf z)` starts at the PCA coefficients
    and the decoder at the PCA reconstruction (exactly with the identity link, to first order through a sigmoid),
    and training learns what that leaves. The hypergenerators' dependence on :math:`\mathbf z` starts at zero
    (their last weights; each then generates :math:`\theta_0`) and the synthesis' offset :math:`\mathbf b` at what
    :math:`\theta_0` and the base terms leave of the mean at the anchors, so that at the PCA coefficients the
    decoder is PCA's reconstruction through the link, exactly at the mean. Call it after
    :meth:`initialize_generators`.

    Args:
        fields (Tensor): Training fields :math:`(T, N, C)` at the points ``pos``, in the likelihood's support;
            missing values NaN.
        pos (Tensor): Their coordinates :math:`(N, D)`.
        posterior_std (float): The encoder's initial posterior standard deviation. (default: ``0.1``)

    Returns:
        Tensor: The fraction of the fields' variance each of the :math:`Z` components explains.
    """
    if self.factors is None:
        raise ValueError("this VaMoH has no linear factors: build it with factor_grid=...")
    if not isinstance(fields, Tensor) or fields.dim() != 3 or fields.size(-1) != self.in_channels:
        shape = tuple(fields.shape) if isinstance(fields, Tensor) else type(fields).__name__
        raise ValueError(f"fields must have shape [T, N, {self.in_channels}], got {shape}")
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(0) != fields.size(1):
        shape = tuple(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
        raise ValueError(f"pos must have shape [{fields.size(1)}, D] (the fields' points), got {shape}")
    if not (isinstance(posterior_std, (int, float)) and posterior_std > 0):
        raise ValueError(f"posterior_std must be a positive number, got {posterior_std!r}")
    from ..ops import knn

    anchors = self.factors.basis.anchors
    nearest = knn(pos.to(anchors.dtype), anchors, 1, p=2)[1].view(-1)
    values = fields[:, nearest].to(torch.float64)
    valid = torch.isfinite(values)
    mean = torch.where(valid, values, 0.0).sum(0) / valid.sum(0).clamp_min(1)
    inner = mean.clamp(1e-3, 1 - 1e-3)
    slope = None if self._identity_link else inner * (1 - inner)  # the sigmoid's slope at the mean
    explained = self.factors.fit_pca_(values, gain=slope)
    # The generators start at theta_0 exactly (no z-dependent part: it would add noise to the PCA start), and the
    # synthesis' offset at what their location at z = 0 leaves of the fields' mean, so that the decoder at the
    # PCA coefficients is PCA's reconstruction through the link.
    self.hypernet.weights[-1].zero_()
    self.factors.offset.values.zero_()
    c = self.in_channels
    raw = self.component_params(anchors.new_zeros(1, self.latent_dim).to(self.dtype), anchors.to(self.dtype))[0]
    raw = raw[..., :c].mean(1)  # [M, C], the K components are equal here
    target = self._raw_location(mean.to(raw.dtype), 1e-3)  # the location's link, or the Bernoullis' logits
    if self._location_link:
        raw = torch.logit(raw.clamp(1e-6, 1 - 1e-6))
    self.factors.offset.values.copy_((target - raw).to(self.factors.offset.values.dtype))
    head = self.encoder.head
    head.weight.zero_()
    head.bias.zero_()
    head.bias[self.latent_dim:] = 2 * math.log(posterior_std)
    return explained


@torch.no_grad()
def recalibrate_encoder(self, batches: Iterable[Any]) -> int:
    r"""Recompute the encoder's BatchNorm running statistics on whole clouds ("precise BatchNorm").

    In training, BatchNorm normalises with the statistics of the current batch of clouds thinned by point
    dropout; in evaluation it uses running averages of those. Their mismatch (thinned vs whole clouds, and
    the lag of a moving average) makes the evaluation-mode encoder a different function from the one that
    was trained: on ERA5 it cost ~10 dB of reconstruction PSNR. This resets the running statistics and
    sets them to the exact averages over ``batches`` of whole clouds, without point dropout (`Wu & Johnson,
    2021 <https://arxiv.org/abs/2105.07576>`_). No parameter changes; a model without BatchNorm is left as is.

    Args:
        batches (iterable): PyG batches of training clouds.

    Returns:
        int: The number of batches used (0 if the encoder has no BatchNorm).
    """
    norms = [m for m in self.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    was_training = self.encoder.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    self.encoder.train()
    n = 0
    try:
        for b in batches:
            pts = as_points(b, self.manifold, self.in_channels, "batches", self.dtype)
            self.encoder(pts.x, pts.pos, pts.batch)
            n += 1
    finally:
        for m, mom in zip(norms, momenta):
            m.momentum = mom
        self.encoder.train(was_training)
    if n == 0:
        raise ValueError("batches is empty: pass at least one batch of training clouds")
    return n


def base_function(dim: int, channels: int, hidden: Sequence[int], num_frequencies: int, sigma: float,
                  negative_slope: float) -> nn.Sequential:
    r"""VaMoH's optional base function :math:`g(\mathbf x)`: random Fourier features and an MLP with its own
    weights, its last layer at zero (a new model is unchanged); see ``VaMoH(base_hidden=...)``."""
    widths = [check_positive_int(w, "base_hidden") for w in hidden]
    layers: List[nn.Module] = [FourierFeatures(dim, check_positive_int(num_frequencies, "base_frequencies"), sigma)]
    width = layers[0].out_dim
    for w in widths:
        layers += [nn.Linear(width, w), nn.LeakyReLU(negative_slope)]
        width = w
    last = nn.Linear(width, channels)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def check_training_options(kl_estimator: str, estimators: Sequence[str], max_dropout: Optional[float],
                           kl_weight: float) -> None:
    """VaMoH's training options: the KL estimator's name, point dropout's bound and the KL weight."""
    if kl_estimator not in estimators:
        raise ValueError(f"kl_estimator must be one of {tuple(estimators)}, got {kl_estimator!r}")
    if max_dropout is not None and not 0.0 <= float(max_dropout) < 1.0:
        raise ValueError(f"max_dropout must be in [0, 1) or None, got {max_dropout!r}")
    if isinstance(kl_weight, bool) or not isinstance(kl_weight, (int, float)) or not math.isfinite(kl_weight) \
            or kl_weight < 0:
        raise ValueError(f"kl_weight must be a non-negative number, got {kl_weight!r}")


def build_encoder(in_channels: int, encoder: Any, manifold: Any, latent_dim: int,
                  weight_hidden: Optional[Sequence[int]], cache: Any, norm: str) -> nn.Module:
    """VaMoH's PointConv encoder with a Gaussian head: ``encoder`` a configuration name (its layers and weight-net
    widths) or a list of layer specifications."""
    specs, enc_kw = vamoh_encoder_specs(encoder) if isinstance(encoder, str) else (list(encoder), {})
    if weight_hidden is None:
        weight_hidden = enc_kw.get("weight_hidden", (16, 16, 16, 16))
    return PointConvNet(in_channels, specs, manifold, head="gaussian", latent_dim=latent_dim,
                        weight_hidden=tuple(weight_hidden), cache=cache, norm=norm)
