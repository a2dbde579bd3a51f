"""Residual kriging: a prediction's errors at the observed points carried into the hidden ones (regression kriging)."""

from __future__ import annotations

import itertools
import math
from typing import List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

from .._validation import check_positive_int
from ..ops import knn
from ._baselines import _check_fields, observed_mask, valid_points

#: Length scales tried by the variogram fit, as fractions of the largest pair distance binned (log-spaced).
_LENGTHS = torch.logspace(-3, 0.5, 48, dtype=torch.float64)
#: Systems of ``num_neighbors`` x ``num_neighbors`` solved at once.
_CHUNK = 1 << 13


class Covariance(NamedTuple):
    r"""An exponential correlation :math:`\rho(h) = e^{-h / \ell}` and a nugget :math:`\nu` (the variance of what is
    not spatially correlated, relative to the correlated part's). ``nugget = inf``: no spatial correlation."""

    length: float
    nugget: float

    def correlation(self, distance: Tensor) -> Tensor:
        r""":math:`\rho(h)` at the distances ``distance`` (any shape), without the nugget."""
        return torch.exp(-distance / self.length)


class ResidualKriging:
    r"""Simple kriging of a prediction's residuals at the observed points onto the unobserved ones.

    A prediction :math:`\hat{\mathbf y}` of a partly observed field (any method's: VaMoH's in-painting, PCA's
    least-squares fit) leaves residuals :math:`r_j = y_j - \hat y_j` at the observed points. Near the observed
    region the residuals of neighbouring points are correlated, which no low-dimensional model captures; regression
    kriging adds their best linear prediction,

    .. math::
        \tilde y(\mathbf q) = \hat y(\mathbf q) + \mathbf c_{\mathbf q}^\top (\mathbf R + \nu \mathbf I)^{-1}
        \mathbf r, \qquad R_{ij} = \rho(\lVert \mathbf x_i - \mathbf x_j \rVert), \quad
        c_{\mathbf q, j} = \rho(\lVert \mathbf q - \mathbf x_j \rVert),

    over the ``num_neighbors`` observed points :math:`\mathbf x_j` nearest each unobserved point :math:`\mathbf q`
    (local simple kriging; distances in the points' ambient coordinates, chords on the sphere), with
    :math:`\rho(h) = e^{-h/\ell}` and a nugget :math:`\nu` (a :class:`Covariance`). Far from every observed point the correction fades to zero and the prediction is left as it is.
    The covariance is fitted to the residuals themselves (:meth:`fit`), for each channel over the fields of the
    call, unless given.

    Args:
        num_neighbors (int): Observed points each unobserved point is kriged from (all of a field's, where it has
            fewer). (default: ``32``)
        covariance (Covariance, optional): :math:`\ell` and :math:`\nu` of every channel; ``None``: fitted.
            (default: ``None``)
        max_points (int): Observed points per field the variogram is fitted on (a fixed random subset beyond).
            (default: ``1024``)
        num_bins (int): Distance bins of the empirical variogram. (default: ``24``)
        seed (int): Seed of that subset. (default: ``0``)

    Shapes:
        - **pos** :math:`(N, D)`; **prediction**, **values** :math:`(B, N, C)`; **observed** :math:`(N,)` or
          :math:`(B, N)`, ``True`` where a value is observed (missing values NaN in ``values`` are unobserved too).
        - **output** :math:`(B, N, C)`: ``prediction`` with the kriged residuals added at the unobserved points (a
          field with no observed point, or a channel whose residuals show no spatial correlation, left as it is).

    Example::

        krige = ResidualKriging()
        filled = krige(grid.pos, pca.reconstruct(test, observed), test, observed)
    """

    def __init__(self, num_neighbors: int = 32, covariance: Optional[Covariance] = None, max_points: int = 1024,
                 num_bins: int = 24, seed: int = 0) -> None:
        self.num_neighbors = check_positive_int(num_neighbors, "num_neighbors")
        if covariance is not None:
            if not isinstance(covariance, Covariance):
                raise TypeError(f"covariance must be a Covariance or None, got {type(covariance).__name__}")
            if not (covariance.length > 0 and math.isfinite(covariance.length) and covariance.nugget >= 0):
                raise ValueError(f"covariance must have a finite length > 0 and a nugget >= 0, got {covariance}")
        self.covariance = covariance
        self.max_points = check_positive_int(max_points, "max_points")
        self.num_bins = check_positive_int(num_bins, "num_bins")
        self.seed = int(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_neighbors={self.num_neighbors}, covariance={self.covariance})"

    def fit(self, pos: Tensor, residuals: Tensor, observed: Tensor) -> List[Covariance]:
        r"""The covariance of the residuals of each channel, fitted to the empirical semivariogram of every field's
        observed points (each field's residuals scaled by their standard deviation, so that every field counts
        alike; distances binned up to a quarter of the largest, the short lags that kriging from the nearest points
        uses): the exponential variogram :math:`\gamma(h) = \tau^2 + s^2 (1 - e^{-h/\ell})` by weighted least
        squares with Cressie's weights (pairs in the bin over :math:`\gamma(h)^2`), :math:`\tau^2, s^2 \geq 0` in
        closed form for each :math:`\ell` of a log-spaced set, the best kept; :math:`\nu = \tau^2 / s^2`.

        Args:
            pos (Tensor): :math:`(N, D)`.
            residuals (Tensor): :math:`(B, N, C)`, used where ``observed``.
            observed (Tensor): Bool :math:`(B, N)` or :math:`(N,)`.

        Returns:
            list of Covariance: One per channel (``nugget = inf`` where the residuals show no spatial correlation:
            nothing is kriged then).
        """
        B, N, C = residuals.shape
        observed = observed_mask(observed, B, N)
        g = torch.Generator().manual_seed(self.seed)
        p = pos.double()
        gamma = torch.zeros(C, self.num_bins, dtype=torch.float64)
        count = torch.zeros(self.num_bins, dtype=torch.float64)
        idx_all = [observed[b].nonzero().view(-1) for b in range(B)]
        # Bins up to a quarter of the largest distance between observed points: the short lags, which kriging
        # from the nearest points uses.
        sub = [i[torch.randperm(i.numel(), generator=g)[: self.max_points]] for i in idx_all]
        h_max = max((float(torch.cdist(p[i], p[i]).max()) for i in sub if i.numel() > 1), default=0.0) / 4
        if h_max <= 0:
            return [Covariance(1.0, math.inf)] * C
        edges = torch.linspace(0, h_max, self.num_bins + 1, dtype=torch.float64)
        for b, i in enumerate(sub):
            if i.numel() < 2:
                continue
            r = residuals[b, i].double()
            r = (r - r.mean(0)) / r.std(0).clamp_min(1e-12)
            d = torch.cdist(p[i], p[i])
            upper = torch.triu(torch.ones_like(d, dtype=torch.bool), diagonal=1) & (d < h_max)
            which = torch.bucketize(d[upper], edges[1:-1])
            half_sq = 0.5 * (r[:, None, :] - r[None, :, :])[upper].pow(2)  # [pairs, C]
            count += torch.bincount(which, minlength=self.num_bins).double()
            gamma += torch.zeros(self.num_bins, C, dtype=torch.float64).index_add_(0, which, half_sq).T
        keep = count > 0
        h = (0.5 * (edges[1:] + edges[:-1]))[keep]
        return [_fit_variogram(h, gamma[c, keep] / count[keep], count[keep], h_max)
                for c in range(C)]

    def __call__(self, pos: Tensor, prediction: Tensor, values: Tensor, observed: Tensor) -> Tensor:
        _check_fields(prediction, "prediction")
        _check_fields(values, "values")
        if prediction.shape != values.shape:
            raise ValueError(f"prediction and values must have the same shape, got {tuple(prediction.shape)} and "
                             f"{tuple(values.shape)}")
        B, N, C = values.shape
        if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(0) != N:
            shape = tuple(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
            raise ValueError(f"pos must have shape [{N}, D] (the fields' points), got {shape}")
        obs = observed_mask(observed, B, N) & valid_points(values)
        residuals = torch.where(obs[..., None], values.double() - prediction.double(), 0.0)
        models = [self.covariance] * C if self.covariance is not None else self.fit(pos, residuals, obs)
        out = prediction.clone()
        p = pos.double()
        # Fields observed on the same points share their neighbours and weights: computed once per observed set.
        sets, which = torch.unique(obs, dim=0, return_inverse=True)
        for s, observed_set in enumerate(sets):
            fields = (which == s).nonzero().view(-1)
            o, q = observed_set.nonzero().view(-1), (~observed_set).nonzero().view(-1)
            k = min(self.num_neighbors, o.numel())
            if q.numel() == 0 or k == 0:
                continue
            near = o[knn(p[o], p[q], k, p=2)[1].view(-1, k)]  # [Q, k] indices into the N points
            weights = {}  # per covariance: channels that share one share its weights
            for c, model in enumerate(models):
                if math.isfinite(model.nugget):
                    if model not in weights:
                        weights[model] = kriging_weights(p[q], p[near], model)  # [Q, k]
                    shift = torch.einsum("qk,bqk->bq", weights[model], residuals[fields][:, near, c])
                    out[fields[:, None], q[None, :], c] += shift.to(out.dtype)
        return out


def kriging_weights(query: Tensor, centres: Tensor, covariance: Covariance) -> Tensor:
    r"""Simple-kriging weights :math:`(\mathbf R + \nu \mathbf I)^{-1} \mathbf c_{\mathbf q}` of every query
    point's centres under ``covariance``.

    Args:
        query (Tensor): :math:`(Q, D)`.
        centres (Tensor): :math:`(Q, k, D)`, each query's centres.
        covariance (Covariance): :math:`\rho` and :math:`\nu` (with :math:`\nu = 0` and a query on a centre,
            that centre's weight is 1).

    Returns:
        Tensor: :math:`(Q, k)`, float64.
    """
    Q, k, _ = centres.shape
    out = torch.empty(Q, k, dtype=torch.float64, device=query.device)
    eye = torch.eye(k, dtype=torch.float64, device=query.device)
    for s in range(0, Q, _CHUNK):
        x, q = centres[s:s + _CHUNK].double(), query[s:s + _CHUNK].double()
        system = covariance.correlation(torch.cdist(x, x)) + covariance.nugget * eye
        rhs = covariance.correlation((x - q[:, None]).norm(dim=-1))
        out[s:s + x.size(0)] = torch.linalg.solve(system, rhs.unsqueeze(-1)).squeeze(-1)
    return out


def _fit_variogram(h: Tensor, gamma: Tensor, counts: Tensor, h_max: float) -> Covariance:
    r"""The exponential variogram of :meth:`ResidualKriging.fit` for one channel's binned semivariances: for each
    length, :math:`\tau^2, s^2 \geq 0` by least squares with Cressie's weights :math:`N_h / \gamma(h)^2` (the
    model's :math:`\gamma`, three reweightings from the pair counts alone)."""
    best: Tuple[float, float, float] = (math.inf, 1.0, math.inf)
    for ell in (_LENGTHS * h_max).tolist():
        basis = torch.stack([torch.ones_like(h), 1 - torch.exp(-h / ell)], 1)  # tau^2, s^2
        weights = counts
        for _ in range(3):
            sw = weights.sqrt()
            coef = _nonnegative_lsq(basis * sw[:, None], gamma * sw)
            model = basis @ coef
            weights = counts / model.clamp_min(1e-12).pow(2)
        err = float((weights * (model - gamma).pow(2)).sum())
        tau2, s2 = coef.tolist()
        if err < best[0]:
            best = (err, ell, tau2 / s2 if s2 > 0 else math.inf)
    return Covariance(best[1], best[2])


def _nonnegative_lsq(A: Tensor, b: Tensor) -> Tensor:
    r""":math:`\arg\min_{x \geq 0} \lVert A x - b \rVert` for a few columns: the best feasible least-squares
    solution over the subsets of free columns (the others at zero), exact for the handful of columns used here."""
    n = A.size(1)
    best, err = torch.zeros(n, dtype=A.dtype), float(b.pow(2).sum())
    for r in range(1, n + 1):
        for cols in itertools.combinations(range(n), r):
            x = torch.linalg.lstsq(A[:, cols], b.unsqueeze(-1)).solution.view(-1)
            if bool((x >= 0).all()):
                e = float((A[:, cols] @ x - b).pow(2).sum())
                if e < err:
                    best, err = torch.zeros(n, dtype=A.dtype), e
                    best[list(cols)] = x
    return best
