r"""VaMoH's inference tasks: sampling, reconstruction at any resolution, in-painting, component maps, latent
interpolation and uncertainty maps.

Why this shape: users call the tasks on the model (``model.reconstruct(batch, fine_pos)``), as the paper
presents them (Section 4), so :class:`~pcfunc.models.VaMoH` is the one public class. Its code is split by concept:
``_vamoh.py`` is the generative model and its ELBO (Eqs. 10-16); this module is what is done with a trained
model, written against the model's small public surface only, listed in :data:`MODEL_SURFACE`: the encoder's
:math:`q(\mathbf z)` (``encode``), the generators (``generator_weights``, ``component_params``), the mixture
weights (``mixture_logits``), the latent prior (``sample_latent``, ``prior_log_prob``), the likelihood and a few
sizes. Nothing here reads a private member of the model (a test enforces it), so the model's internals (its
networks, the base function, the warm-up switch) can change without touching the tasks, and a model with the
same surface gets the same tasks.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from typing import Any, Callable, Iterator, NamedTuple, Optional, Tuple, TypeVar

import torch
from torch import Tensor

from .._random import multinomial, randn
from .._validation import check_finite, check_positive_int
from ._lbfgs import batched_lbfgs
from ._points import (Points, as_points, check_query, check_residual_kernel, check_residual_neighbors, dense_points,
                      nearest_observed, residual_weights)

__all__ = ["ComponentMaps", "Predictive", "VaMoHInference", "gaussian_log_q"]

_F = TypeVar("_F", bound=Callable[..., Any])


class ComponentMaps(NamedTuple):
    r"""Per-point mixture assignments: ``probs`` :math:`(B, M, K)`, ``entropy`` :math:`(B, M)` in nats
    (:math:`-\sum_k \pi_k \log \pi_k`, at most :math:`\log K`) and ``segmentation`` :math:`(B, M)`
    (:math:`\arg\max_k \pi_k`)."""

    probs: Tensor
    entropy: Tensor
    segmentation: Tensor


class Predictive(NamedTuple):
    """Per-point predictive ``mean`` and standard deviation ``std``, and ``spread``, the standard deviation of the
    inferred function alone (the posterior's, without the observation noise; ``std`` itself when the noise is not
    included), each :math:`(B, M, C)`."""

    mean: Tensor
    std: Tensor
    spread: Tensor


class _Moments:
    """Running sum and variance of tensors, the squares taken about the first one."""

    def __init__(self) -> None:
        self.count, self.total, self.ref, self.dsum, self.dsq = 0, None, None, None, None

    def add(self, x: Tensor) -> None:
        self.count += 1
        if self.ref is None:
            self.total, self.ref, self.dsum, self.dsq = x, x, torch.zeros_like(x), torch.zeros_like(x)
            return
        d = x - self.ref
        self.total, self.dsum, self.dsq = self.total + x, self.dsum + d, self.dsq + d * d

    def variance(self) -> Tensor:
        """The unbiased variance (at least two values)."""
        return (self.dsq - self.dsum * self.dsum / self.count) / (self.count - 1)


#: A predictive projected to take longer than this (seconds) after its first draw says so.
LONG_PREDICTIVE_S = 600.0


def _warn_if_long(num_samples: int, first: float, fields: int, points: int) -> None:
    """One warning with the estimate when ``num_samples`` draws, each taking about ``first`` seconds, will run for
    more than :data:`LONG_PREDICTIVE_S` (a mistyped ``num_samples`` would otherwise run silently for hours)."""
    total = first * num_samples
    if total > LONG_PREDICTIVE_S:
        warnings.warn(f"predictive: {num_samples} posterior draws of {fields} field(s) at {points} points will take "
                      f"about {total / 60:.0f} minutes (the first took {first:.3g} s); 16 to 64 draws estimate a "
                      "standard deviation to within 18% to 9%", stacklevel=4)


def gaussian_log_q(eps: Tensor, logvar: Tensor) -> Tensor:
    r""":math:`\log q(\mathbf z)` of a diagonal Gaussian posterior at :math:`\mathbf z = \mu + \sigma \epsilon`."""
    return (-0.5 * eps * eps - 0.5 * logvar - 0.5 * math.log(2 * math.pi)).sum(-1)


def _inference(fn: _F) -> _F:
    """Run ``fn`` without gradients and in eval mode (BatchNorm with running statistics), restoring the mode."""

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return fn(self, *args, **kwargs)
        finally:
            self.train(was_training)

    return wrapper  # type: ignore[return-value]


#: What :class:`VaMoHInference` reads of the model it is mixed into (besides its own methods below and
#: ``torch.nn.Module``'s ``training``/``train``/``eval``).
MODEL_SURFACE = ("encode", "generator_weights", "component_params", "mixture_logits", "default_chunk_size",
                 "sample_latent", "prior_log_prob", "likelihood", "manifold", "in_channels", "latent_dim", "dtype")


class VaMoHInference:
    """The inference tasks of :class:`VaMoH`, over the model's public surface :data:`MODEL_SURFACE` (see the
    module notes, and the model for the shapes)."""

    # -------------------------------------------------------------- core
    def _chunks(self, pos: Tensor, num: int, chunk_size: Optional[int]) -> Iterator[Tensor]:
        m = pos.size(-2)
        if chunk_size is None:
            chunk_size = self.default_chunk_size(max(num, 1), 1 if pos.dim() == 2 else max(num, 1))
        chunk_size = check_positive_int(chunk_size, "chunk_size")
        for s in range(0, m, chunk_size):
            yield pos[..., s:s + chunk_size, :]

    def _mixture(self, z: Tensor, pos: Tensor, weights: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """Component parameters :math:`(B, m, K, PC)`, component means :math:`(B, m, K, C)` and prior logits."""
        params = self.component_params(z, pos, weights)  # in the model's dtype, like the logits
        return params, self.likelihood.mean(params), self.mixture_logits(z, pos)

    def _decode(self, z: Tensor, pos: Tensor, chunk_size: Optional[int],
                fn: Callable[[Tensor, Tensor, Tensor, Tensor], Tuple[Tensor, ...]]) -> Tuple[Tensor, ...]:
        """``fn(params, component means, mixture weights (B, m, K, 1), mixture mean)`` on each chunk of ``pos``,
        the generators' weights computed once; each of its outputs concatenated over the points."""
        weights = self.generator_weights(z)
        outs = []
        for pc in self._chunks(pos, z.size(0), chunk_size):
            params, comp_means, logits = self._mixture(z, pc, weights)
            pi = torch.softmax(logits, -1).unsqueeze(-1)
            outs.append(fn(params, comp_means, pi, (pi * comp_means).sum(-2)))
        return tuple(torch.cat(parts, dim=1) for parts in zip(*outs))

    def _predict(self, z: Tensor, pos: Tensor, chunk_size: Optional[int] = None) -> Tensor:
        return self._decode(z, pos, chunk_size, lambda params, means, pi, mean: (mean,))[0]

    @_inference
    def posterior(self, batch: Any, refine_steps: int = 0) -> Tuple[Tensor, Tensor]:
        r"""Mean and log-variance of :math:`q(\mathbf z \mid \mathbf X, \mathbf Y)` for the clouds of ``batch``,
        each :math:`(B, Z)`: the encoder's (:meth:`encode`); with ``refine_steps > 0`` the mean refined to the
        latent's posterior mode on these points with the generators fixed (see :meth:`reconstruct`), the
        log-variance the encoder's."""
        pts = batch if isinstance(batch, Points) else as_points(batch, self.manifold, self.in_channels, "batch",
                                                                  self.dtype)
        mu, logvar = self.encode(pts)
        if refine_steps:
            mu = self._refine(pts, mu, check_positive_int(refine_steps, "refine_steps"))
        return mu, logvar

    def _refine(self, pts: Any, mu: Tensor, steps: int) -> Tensor:
        r"""The mode of :math:`\log p(\mathbf Y \mid \mathbf z) + \log p(\mathbf z)` of each cloud, by
        :func:`batched_lbfgs` from ``mu``."""
        dense = dense_points(pts)
        pos, y, mask = dense.pos, dense.y.to(mu.dtype), dense.mask.to(mu.dtype)

        def objective(z: Tensor) -> Tensor:  # [B]: each cloud's negative log posterior density
            params = self.component_params(z, pos)
            log_p = self.likelihood.log_prob(params, y.unsqueeze(-2), validate=False).sum(-1)  # [B, N, K]
            log_pi = torch.log_softmax(self.mixture_logits(z, pos), dim=-1)
            # The mixture's exact log-likelihood per point, log sum_k pi_k p_k (no bound over c needed here).
            log_lik = (torch.logsumexp(log_pi + log_p, dim=-1) * mask).sum(-1)
            return -(log_lik + self.prior_log_prob(z))

        return batched_lbfgs(objective, mu.detach(), steps)

    def _latent(self, source: Any) -> Tensor:
        if isinstance(source, Tensor):
            if source.dim() != 2 or source.size(1) != self.latent_dim:
                raise ValueError(f"latents must have shape [B, {self.latent_dim}], got {tuple(source.shape)}")
            check_finite(source, "latents")
            return source
        return self.encode(source)[0]

    # -------------------------------------------------------------- public
    @_inference
    def decode(self, z: Tensor, pos: Tensor, chunk_size: Optional[int] = None) -> Tensor:
        r"""Predictive mean :math:`\sum_k \pi_k(\mathbf x, \mathbf z)\, \mathbb E_{\theta_k(\mathbf z)}[\mathbf y]`
        of the functions of latents ``z`` :math:`(B, Z)` at ``pos``, :math:`(B, M, C)`.

        ``pos`` may be any number of points (chunked over ``chunk_size`` points), e.g. a 0.25° grid.
        """
        z = self._latent(z)
        return self._predict(z, check_query(pos, self.manifold, z.size(0)), chunk_size)

    @_inference
    def sample(self, num: int, pos: Tensor, generator: Optional[torch.Generator] = None, mean: bool = True,
               chunk_size: Optional[int] = None) -> Tensor:
        r"""``num`` new functions from the prior, evaluated at ``pos`` :math:`(M, D)`: :math:`(num, M, C)`.

        With ``mean=True`` the predictive mean of each sampled :math:`\mathbf z` (a smooth field);
        with ``mean=False`` also :math:`c_d \sim \operatorname{Cat}(\pi_d)` and
        :math:`\mathbf y_d \sim p_{\theta_{c_d}}`.
        """
        z = self.sample_latent(num, generator)
        pos = check_query(pos, self.manifold, z.size(0))
        if mean:
            return self._predict(z, pos, chunk_size)
        return self._draws(z, pos, generator, chunk_size)

    def _draws(self, z: Tensor, pos: Tensor, generator: Optional[torch.Generator],
               chunk_size: Optional[int]) -> Tensor:
        return self._mean_and_draws(z, pos, generator, chunk_size)[1]

    def _mean_and_draws(self, z: Tensor, pos: Tensor, generator: Optional[torch.Generator],
                        chunk_size: Optional[int]) -> Tuple[Tensor, Tensor]:
        r"""The mixture mean and one draw :math:`\mathbf y \sim p(\mathbf y \mid \mathbf z)` at ``pos``, each
        :math:`(B, M, C)`, from one evaluation of the generators per chunk."""
        mean, draw = self._decode(z, pos, chunk_size,
                                  lambda params, means, pi, mean: (mean, self._draw(params, pi[..., 0], generator)))
        return mean, draw  # [B, M, C] each

    def _mean_and_variance(self, z: Tensor, pos: Tensor, chunk_size: Optional[int]) -> Tuple[Tensor, Tensor]:
        r"""The mixture's mean and variance at ``pos`` given ``z``, each :math:`(B, M, C)`:
        :math:`\sum_k \pi_k \mu_k` and :math:`\sum_k \pi_k (v_k + (\mu_k - \bar\mu)^2)` with the components'
        means :math:`\mu_k` and variances :math:`v_k` (:meth:`Likelihood.variance`)."""
        def moments(params: Tensor, means: Tensor, pi: Tensor, mean: Tensor) -> Tuple[Tensor, Tensor]:
            spread = self.likelihood.variance(params) + (means - mean.unsqueeze(-2)).square()
            return mean, (pi * spread).sum(-2)

        mean, var = self._decode(z, pos, chunk_size, moments)
        return mean, var

    def _draw(self, params: Tensor, probs: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        # c_d ~ Cat(pi_d) by torch.multinomial, which takes a generator (torch.distributions.Categorical does not).
        c = multinomial(probs.detach().float().reshape(-1, probs.size(-1)), 1, generator).view(probs.shape[:-1])
        y = self.likelihood.sample(params, generator)  # [B, m, K, C]
        return y.gather(2, c[..., None, None].expand(*c.shape, 1, y.size(-1))).squeeze(2)

    def _residuals(self, z: Tensor, pts: Any, dense: Any, weights: Tuple[Tensor, Tensor],
                   chunk_size: Optional[int]) -> Tensor:
        """The residuals of the functions ``z`` at the observed points, interpolated to the query points of
        ``weights`` (:func:`residual_weights`): :math:`(B, M, C)`."""
        nearest, w = weights
        fit = self._predict(z, dense.pos, chunk_size)
        residual = (dense.y.to(fit.dtype) - fit)[dense.mask]  # packed like pts.x
        out = (residual[nearest] * w.to(fit.dtype).unsqueeze(-1)).sum(1)
        return out.view(z.size(0), -1, out.size(-1))

    @_inference
    def reconstruct(self, batch: Any, pos: Optional[Tensor] = None, chunk_size: Optional[int] = None,
                    refine_steps: int = 0, residual_neighbors: int = 0, residual_kernel: str = "idw") -> Tensor:
        r"""Posterior-mean reconstruction in one forward pass: :math:`\mathbf z = \mathbb E_q[\mathbf z]`, decoded.

        Args:
            batch: A PyG ``Batch``/``Data`` (``x``, ``pos``, ``batch``).
            pos (Tensor, optional): Where to evaluate: ``None`` for each cloud's own points (the output is
                then packed like ``batch.x``, :math:`(N, C)`), or :math:`(M, D)` / :math:`(B, M, D)` for any
                other points, e.g. a finer grid for super-resolution (output :math:`(B, M, C)`).
            chunk_size (int, optional): Points decoded at once.
            refine_steps (int): Iterations of L-BFGS (strong Wolfe line search) that move the latent from the
                encoder's mean to its posterior mode on the given points, :math:`\arg\max_{\mathbf z} \log
                p(\mathbf Y \mid \mathbf z) + \log p(\mathbf z)` (the mixture's exact likelihood, the flow prior),
                with the generators fixed: the amortisation gap closed by optimisation (semi-amortised inference,
                `Kim et al., 2018 <https://arxiv.org/abs/1802.02550>`_, with a quasi-Newton optimiser for a few
                deterministic iterations instead of many stochastic first-order steps). It matters most where
                the points are a part of a field (in-painting) or of a kind the encoder saw little of. ``0``: the
                encoder's posterior alone, as in the paper. (default: ``0``)
            residual_neighbors (int): With :math:`k > 0`, add the model's residuals at the observed points,
                :math:`r_j = y_j - \hat f(\mathbf x_j)`, interpolated to each query point by inverse squared
                distance weighting of its :math:`k` nearest observed points of the same cloud,
                :math:`\hat f(\mathbf x) + \sum_j w_j r_j / \sum_j w_j`, :math:`w_j = \|\mathbf x -
                \mathbf x_j\|^{-2}` (as :func:`torch_geometric.nn.unpool.knn_interpolate`). The result passes
                through the observed values and keeps the model's structure between them (regression
                kriging's trend plus interpolated residuals): for super-resolution, where the latent cannot
                carry every detail of the coarse field. ``0``: the model alone. (default: ``0``)
            residual_kernel (str): How the residuals are interpolated: ``"idw"`` (above) or ``"linear"``, a local
                linear radial-basis-function interpolant of the :math:`k` nearest residuals with a constant term,
                :math:`\sum_j a_j (-\lVert \mathbf x - \mathbf x_j \rVert) + c`, exact at the observed points
                (``scipy.interpolate.RBFInterpolator(kernel="linear", neighbors=k)``): smoother between them (on
                the ERA5 sample, 4 to 1 degree, the mean-residual baseline interpolated this way with
                :math:`k = 16` scores 39.95 dB, with IDW-4 39.45, bilinearly 39.70). (default: ``"idw"``)
        """
        pts = as_points(batch, self.manifold, self.in_channels, "batch", self.dtype)
        check_residual_kernel(residual_kernel)
        z = self.posterior(pts, refine_steps)[0]
        k = check_residual_neighbors(residual_neighbors)
        dense = dense_points(pts)
        query = dense.pos if pos is None else check_query(pos, self.manifold, z.size(0))
        out = self._predict(z, query, chunk_size)
        if k:
            weights = residual_weights(pts, dense, query, k, residual_kernel)
            out = out + self._residuals(z, pts, dense, weights, chunk_size)
        return out if pos is not None else out[dense.mask]

    @_inference
    def inpaint(self, observed: Any, pos: Tensor, keep_observed: bool = False,
                chunk_size: Optional[int] = None, refine_steps: int = 0) -> Tensor:
        r"""Complete functions from the observed part of each: encode ``observed`` (any subset of points: a
        patch removed, half a globe, random points) and predict at ``pos``, :math:`(B, M, C)`.

        With ``keep_observed=True`` the prediction at a query point that coincides with an observed point of
        the same cloud (same coordinates) is replaced by the observed value. ``refine_steps``: see
        :meth:`reconstruct` (the refinement fits the observed points only).
        """
        pts = as_points(observed, self.manifold, self.in_channels, "observed", self.dtype)
        z = self.posterior(pts, refine_steps)[0]
        pos = check_query(pos, self.manifold, z.size(0))
        out = self._predict(z, pos, chunk_size)
        if keep_observed:
            # The nearest observed point of the same cloud for every query (memory-linear kNN, any grid size).
            B, M = out.shape[:2]
            q, nearest = nearest_observed(pts, pos, B, 1)
            nearest = nearest[:, 0]
            hit = (q - pts.pos[nearest]).norm(dim=-1) <= 1e-6
            flat = out.view(B * M, -1)
            flat[hit] = pts.x[nearest[hit]].to(out.dtype)
        return out

    @_inference
    def component_maps(self, source: Any, pos: Optional[Tensor] = None, posterior: bool = False,
                       chunk_size: Optional[int] = None) -> ComponentMaps:
        r"""Which generator explains each point: the assignment probabilities, their entropy and the argmax
        segmentation (VaMoH App. B.5).

        Args:
            source: A batch (encoded to its posterior mean) or latents :math:`(B, Z)`.
            pos (Tensor, optional): Query points :math:`(M, D)` / :math:`(B, M, D)`; ``None`` for the
                batch's own points (which must then all share coordinates).
            posterior (bool): Use :math:`q(c_d \mid \mathbf z, \mathbf y_d, \mathbf x_d)` with the batch's
                values (``pos`` must be ``None``) instead of the prior :math:`p(c_d \mid \mathbf x_d, \mathbf z)`.
        """
        if pos is None and isinstance(source, Tensor):
            raise ValueError("pos is required when source is a latent tensor")
        pts = None if isinstance(source, Tensor) else as_points(source, self.manifold, self.in_channels, "source",
                                                                self.dtype)
        z = self._latent(source) if pts is None else self.encode(pts)[0]
        y = None
        if pos is None:
            dense = dense_points(pts)
            if not bool(dense.mask.all()):
                raise ValueError("pos=None needs clouds of equal size; pass pos for query points")
            pos, y = dense.pos, dense.y
        elif posterior:
            raise ValueError("posterior=True uses the batch's own values: leave pos=None")
        pos = check_query(pos, self.manifold, z.size(0))
        if posterior:
            logits = self.mixture_logits(z, pos, y)
        else:
            logits = torch.cat([self.mixture_logits(z, pc) for pc in self._chunks(pos, z.size(0), chunk_size)], dim=1)
        log_p = torch.log_softmax(logits, -1)
        probs = log_p.exp()
        entropy = -(probs * log_p).sum(-1)
        return ComponentMaps(probs, entropy, probs.argmax(-1))

    @_inference
    def interpolate(self, start: Any, end: Any, pos: Tensor, steps: int = 8,
                    chunk_size: Optional[int] = None) -> Tensor:
        r"""Decode :math:`\mathbf z_t = (1 - t)\,\mathbf z_0 + t\,\mathbf z_1` for ``steps`` values of
        :math:`t` from 0 to 1, where :math:`\mathbf z_0, \mathbf z_1` are the posterior means of the first
        cloud of ``start`` and ``end`` (or given latents :math:`(1, Z)`/:math:`(Z,)`): :math:`(steps, M, C)`."""
        steps = check_positive_int(steps, "steps")
        z0, z1 = (self._latent(s.unsqueeze(0) if isinstance(s, Tensor) and s.dim() == 1 else s)[:1]
                  for s in (start, end))
        t = torch.linspace(0.0, 1.0, steps, device=z0.device, dtype=z0.dtype).unsqueeze(1)
        z = (1 - t) * z0 + t * z1
        return self._predict(z, check_query(pos, self.manifold, steps), chunk_size)

    @_inference
    def predictive(self, batch: Any, pos: Optional[Tensor] = None, num_samples: int = 32,
                   include_noise: bool = True, generator: Optional[torch.Generator] = None,
                   chunk_size: Optional[int] = None, refine_steps: int = 0, residual_neighbors: int = 0,
                   std_scale: float = 1.0, residual_kernel: str = "idw") -> Predictive:
        r"""Per-point predictive mean and standard deviation given the observed ``batch`` (uncertainty maps).

        Draws ``num_samples`` latents :math:`\mathbf z_s \sim q(\mathbf z \mid \mathbf X, \mathbf Y)`. The mean is
        :math:`\frac1S \sum_s \mathbb E[\mathbf y \mid \mathbf z_s]`. With ``include_noise=True`` the variance
        is that of :math:`\mathbf y \sim p(\mathbf y \mid \mathbf z)` under the posterior (component and
        observation noise included), by the law of total variance

        .. math::
            \operatorname{Var}[y] = \widehat{\operatorname{Var}}_s\, \mathbb E[y \mid \mathbf z_s]
            + \frac1S \sum_s \operatorname{Var}[y \mid \mathbf z_s],

        the mixture's variance :math:`\operatorname{Var}[y \mid \mathbf z] = \sum_k \pi_k (v_k + (\mu_k -
        \bar\mu)^2)` in closed form where the likelihood has one (:attr:`Likelihood.has_variance
        <pcfunc.nn.Likelihood.has_variance>`: Gaussian, Bernoulli, continuous Bernoulli), else from one draw
        :math:`\mathbf y_s \sim p(\mathbf y \mid \mathbf z_s)` per latent (a noisier estimate: 16 draws leave
        an 18% relative error on each point's standard deviation). With ``include_noise=False`` it is the
        spread of the conditional means :math:`\mathbb E[\mathbf y \mid \mathbf z_s]` (the inferred function
        only). ``spread`` is always the latter: one pass gives the predictive and the inferred function's
        uncertainty apart (times ``std_scale`` both).

        With ``residual_neighbors`` :math:`k > 0` every draw is corrected by its own residuals at the observed
        points, interpolated as in :meth:`reconstruct` (conditional simulation: the draws agree with the
        observations there and differ between them), so the mean is :meth:`reconstruct`'s with the same
        ``k`` averaged over the posterior.

        The standard deviation is multiplied by ``std_scale``: a factor fitted on held-out data by
        :func:`pcfunc.metrics.fit_std_scale`, for intervals that cover what they claim (the posterior of a
        model fitted to few fields is over-confident about fields it has not seen).

        Args:
            batch: The observed points.
            pos (Tensor, optional): Query points :math:`(M, D)` / :math:`(B, M, D)`; ``None`` for the
                batch's own points (equal-size clouds).
            num_samples (int): Posterior draws, at least 2. (default: ``32``)
            include_noise (bool): See above. (default: ``True``)
            generator (torch.Generator, optional): Randomness of the draws.
            chunk_size (int, optional): Points decoded at once.
            refine_steps (int): See :meth:`reconstruct`: the draws are then about the posterior mode, with the
                encoder's spread. (default: ``0``)
            residual_neighbors (int): See above and :meth:`reconstruct`. (default: ``0``)
            std_scale (float): Positive factor of the standard deviation. (default: ``1``)
            residual_kernel (str): See :meth:`reconstruct`. (default: ``"idw"``)

        Shapes:
            - **output**: ``mean``, ``std`` and ``spread``, each :math:`(B, M, C)`.
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        if num_samples < 2:
            raise ValueError(f"num_samples must be at least 2 for a standard deviation, got {num_samples}")
        if isinstance(std_scale, bool) or not isinstance(std_scale, (int, float)) or not 0 < std_scale < math.inf:
            raise ValueError(f"std_scale must be a positive finite number, got {std_scale!r}")
        k = check_residual_neighbors(residual_neighbors)
        check_residual_kernel(residual_kernel)
        pts = as_points(batch, self.manifold, self.in_channels, "batch", self.dtype)
        mu, logvar = self.posterior(pts, refine_steps)
        dense = dense_points(pts)
        if pos is None:
            if not bool(dense.mask.all()):
                raise ValueError("pos=None needs clouds of equal size; pass pos for query points")
            pos = dense.pos
        pos = check_query(pos, self.manifold, mu.size(0))
        weights = residual_weights(pts, dense, pos, k, residual_kernel) if k else None
        std = torch.exp(0.5 * logvar)
        # Moments of the conditional means (the spread) and, when the noise is drawn, of the draws, each about its
        # first value (float32 sums of squares of values far larger than their spread would cancel
        # catastrophically).
        exact = include_noise and self.likelihood.has_variance
        drawn = include_noise and not exact
        means, draws = _Moments(), _Moments()
        noise = 0.0
        start = time.perf_counter()
        for s in range(num_samples):
            if s == 1:
                _warn_if_long(num_samples, time.perf_counter() - start, mu.size(0), pos.size(-2))
            eps = randn(mu.shape, generator, device=mu.device).to(mu)
            z = mu + std * eps
            if exact:
                m, nv = self._mean_and_variance(z, pos, chunk_size)
                noise = noise + nv
            elif drawn:
                m, v = self._mean_and_draws(z, pos, generator, chunk_size)
            else:
                m = self._predict(z, pos, chunk_size)
            if weights is not None:
                shift = self._residuals(z, pts, dense, weights, chunk_size)
                m = m + shift
                if drawn:
                    v = v + shift
            means.add(m)
            if drawn:
                draws.add(v)
        spread = means.variance()
        var = draws.variance() if drawn else spread + noise / num_samples
        scale = float(std_scale)
        return Predictive(means.total / num_samples, var.clamp_min(0).sqrt() * scale,
                          spread.clamp_min(0).sqrt() * scale)
