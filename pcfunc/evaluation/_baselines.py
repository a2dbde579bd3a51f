"""The baselines a sceptical reader tries first, on fields that share their points.

Every function here takes point values of shape :math:`(B, N, C)` (``B`` fields on one grid of ``N``
points) and returns predictions of the same layout, so they are scored on exactly the points a model is.
Missing values (NaN: sea-surface temperature over land, a station gap) are never read: statistics skip them
and a missing point is never an observed one.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor

from .._validation import check_positive_int

__all__ = ["training_mean", "PCABaseline", "zonal_mean_fill", "observed_mask", "BilinearDownscaling", "valid_points"]


def _check_fields(values: Tensor, name: str, dim: int = 3, missing: bool = True) -> Tensor:
    """``values`` of shape ``[B, N, C]`` (``dim=3``) or ``[N, C]``, without infinite values; NaN (a missing point)
    only with ``missing``."""
    if not isinstance(values, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    if values.dim() != dim:
        want = "[B, N, C]" if dim == 3 else "[N, C]"
        raise ValueError(f"{name} must have shape {want}, got {tuple(values.shape)}")
    if bool(torch.isinf(values).any()) or (not missing and bool(torch.isnan(values).any())):
        raise ValueError(f"{name} has {'Inf' if missing else 'NaN or Inf'} values")
    return values


def valid_points(values: Tensor) -> Tensor:
    """Which points of fields :math:`(B, N, C)` are not missing (no NaN in any channel): bool :math:`(B, N)`."""
    return ~torch.isnan(values).any(-1)


def _nan_moments(values: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean and standard deviation over fields of :math:`(T, N, C)` at each point, skipping missing values; a point
    missing in every field takes the statistics of all values (float64)."""
    v = values.double()
    ok = ~torch.isnan(v)
    if not bool(ok.any()):
        raise ValueError("the fields have no value: every entry is missing (NaN)")
    n = ok.sum(0)
    total = torch.where(ok, v, 0.0).sum(0)
    mean = total / n.clamp_min(1)
    var = torch.where(ok, (v - mean).square(), 0.0).sum(0) / (n - 1).clamp_min(1)
    everywhere = v[ok]
    if bool((n == 0).any()):
        mean = torch.where(n > 0, mean, everywhere.mean() if everywhere.numel() else 0.0)
        var = torch.where(n > 0, var, everywhere.var() if everywhere.numel() > 1 else 0.0)
    return mean, var.sqrt()


def _filled(values: Tensor, fill: Tensor) -> Tensor:
    """``values`` with each missing entry replaced by ``fill`` (broadcast) at that point."""
    return torch.where(torch.isnan(values), fill.to(values.dtype).expand_as(values), values)


def observed_mask(observed: Tensor, num_fields: int, num_points: int, name: str = "observed") -> Tensor:
    """``observed`` as a bool mask :math:`(B, N)`, from one mask :math:`(N,)` shared by all fields or one per field."""
    if not isinstance(observed, Tensor) or observed.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor")
    if observed.dim() == 1 and observed.numel() == num_points:
        return observed.expand(num_fields, num_points)
    if observed.shape == (num_fields, num_points):
        return observed
    raise ValueError(f"{name} must have shape [{num_points}] or [{num_fields}, {num_points}], "
                     f"got {tuple(observed.shape)}")


def training_mean(train: Tensor) -> Tensor:
    r"""The mean of the training fields at every point, :math:`\bar{\mathbf y}_d = \frac1T \sum_t \mathbf y_{td}`.

    Missing values are skipped (the mean of the fields that have the point; a point missing in every field: the
    mean of all values).

    Args:
        train (Tensor): Training fields :math:`(T, N, C)`.

    Returns:
        Tensor: :math:`(N, C)`; predict every field (or every hidden point) by it.
    """
    _check_fields(train, "train")
    if train.size(0) < 1:
        raise ValueError("train must hold at least one field")
    return _nan_moments(train)[0].to(train.dtype)


class PCABaseline:
    r"""Principal components of the training fields: a linear autoencoder with ``num_components`` latents.

    Fitted on the training fields :math:`\mathbf Y \in \mathbb R^{T \times NC}` (flattened) by the SVD of
    :math:`\mathbf Y - \bar{\mathbf y}`; :math:`\mathbf U` holds the leading right singular vectors. A field is
    reconstructed by its least-squares coefficients on the **observed** points,

    .. math::
        \hat{\mathbf y} = \bar{\mathbf y} + \mathbf U \mathbf a, \qquad
        \mathbf a = \arg\min_{\mathbf a} \lVert (\bar{\mathbf y} + \mathbf U \mathbf a - \mathbf y)_{\text{obs}}
        \rVert^2 + \lambda \lVert \mathbf a \rVert^2,

    which on fully observed fields is the orthogonal projection (the PCA reconstruction) and on partly
    observed fields an in-painting from the observed part. If a nonlinear model with a
    ``num_components``-dimensional latent reconstructs held-out fields worse than this, it is not earning
    its keep.

    Missing training values are filled with :func:`training_mean` before the SVD; missing values of the fields to
    reconstruct are unobserved points.

    Args:
        train (Tensor): Training fields :math:`(T, N, C)`.
        num_components (int): Components kept; at most the rank of the centred training fields
            (:math:`T - 1` for distinct fields), the rest is dropped: :attr:`num_components` says how many
            were kept.
        ridge (float): :math:`\lambda`, relative to the number of observed values (default: ``1e-6``).
    """

    def __init__(self, train: Tensor, num_components: int, ridge: float = 1e-6) -> None:
        _check_fields(train, "train")
        requested = check_positive_int(num_components, "num_components")
        if not ridge >= 0:
            raise ValueError(f"ridge must be non-negative, got {ridge!r}")
        T, N, C = train.shape
        y = _filled(train.double(), _nan_moments(train)[0]).reshape(T, N * C)
        self.mean = y.mean(0)
        _, s, vh = torch.linalg.svd(y - self.mean, full_matrices=False)
        tol = s.max().clamp_min(1e-300) * max(T, N * C) * torch.finfo(torch.float64).eps if s.numel() else 0.0
        rank = int((s > tol).sum())
        #: Components kept (``min(num_components, rank)``).
        self.num_components = min(requested, rank)
        #: The requested number of components.
        self.requested_components = requested
        #: Singular values of the centred training fields, all of them.
        self.singular_values = s
        self.components = vh[: self.num_components].T.contiguous()  # [N C, k]
        self.ridge = float(ridge)
        self.shape = (N, C)

    def reconstruct(self, values: Tensor, observed: Optional[Tensor] = None) -> Tensor:
        """Predict ``values`` :math:`(B, N, C)` from their ``observed`` points (bool :math:`(N,)` or :math:`(B, N)`;
        ``None``: all), :math:`(B, N, C)`."""
        _check_fields(values, "values")
        if tuple(values.shape[1:]) != self.shape:
            raise ValueError(f"values must have shape [B, {self.shape[0]}, {self.shape[1]}], got {tuple(values.shape)}")
        B, N, C = values.shape
        valid = valid_points(values)
        r = _filled(values.double(), self.mean.view(N, C)).reshape(B, N * C) - self.mean
        U = self.components
        k = U.size(1)
        if k == 0:
            return self.mean.expand(B, -1).reshape(B, N, C).to(values.dtype)
        if observed is None and bool(valid.all()):
            coef = r @ U
        else:
            # Normal equations of every field at once: (U^T M_b U + lambda_b I) a_b = U^T M_b r_b.
            obs = valid if observed is None else observed_mask(observed, B, N) & valid
            m = obs.repeat_interleave(C, dim=1).double()  # [B, N C]
            gram = torch.einsum("nk,bn,nl->bkl", U, m, U)
            n_obs = m.sum(1)
            lam = torch.where(n_obs > 0, self.ridge * n_obs, torch.ones_like(n_obs))  # nothing observed: a = 0
            eye = torch.eye(k, dtype=torch.float64)
            coef = torch.linalg.solve(gram + lam[:, None, None] * eye, ((m * r) @ U).unsqueeze(-1)).squeeze(-1)
        return (self.mean + coef @ U.T).reshape(B, N, C).to(values.dtype)


def zonal_mean_fill(values: Tensor, lat: Tensor, observed: Tensor) -> Tensor:
    r"""In-painting by latitude: every hidden point gets the mean of the observed points at its latitude.

    The observed points keep their values. A latitude with no observed point takes the mean of the observed
    points at the nearest latitude that has some (ties: the mean of both sides). A missing value (NaN) is not an
    observed point.

    Args:
        values (Tensor): Fields :math:`(B, N, C)`; only the observed entries are read.
        lat (Tensor): Latitude of each point in degrees, :math:`(N,)`.
        observed (Tensor): Bool :math:`(N,)` or :math:`(B, N)`.

    Returns:
        Tensor: :math:`(B, N, C)`.
    """
    _check_fields(values, "values")
    B, N, C = values.shape
    if not isinstance(lat, Tensor) or lat.shape != (N,):
        raise ValueError(f"lat must be a tensor of shape [{N}], got {getattr(lat, 'shape', lat)}")
    obs = observed_mask(observed, B, N) & valid_points(values)
    keys, row = torch.unique(torch.round(lat.double() * 1e6), return_inverse=True)  # rows sorted by latitude
    L = keys.numel()
    lat_rows = keys / 1e6
    v = torch.nan_to_num(values.double(), nan=0.0)
    # Sums and counts of the observed points per (field, latitude row), for all fields at once.
    m = obs.double()
    sums = torch.zeros(B, L, C, dtype=torch.float64).index_add_(1, row, v * m[..., None])
    counts = torch.zeros(B, L, dtype=torch.float64).index_add_(1, row, m)
    empty = counts.sum(1) == 0
    if bool(empty.any()):
        raise ValueError(f"field {int(empty.nonzero()[0])} has no observed point")
    have = counts > 0
    means = sums / counts.clamp_min(1)[..., None]  # [B, L, C]
    if not bool(have.all()):
        # A row with nothing observed: the mean of the nearest observed rows of that field (ties: both sides).
        d = (lat_rows[:, None] - lat_rows[None, :]).abs().expand(B, L, L)
        d = d.masked_fill(~have[:, None, :], float("inf"))
        near = (d <= d.min(2, keepdim=True).values + 1e-9) & have[:, None, :]
        means = torch.where(have[..., None], means, (near.double() @ means) / near.sum(2, keepdim=True))
    return torch.where(obs[..., None], v, means[:, row]).to(values.dtype)


def _bilinear(grid: Any, values: Tensor, fine_grid: Any) -> Tensor:
    """Bilinear interpolation of fields :math:`(B, N, C)` on a :class:`~pcfunc.data.LatLonGrid` at ``fine_grid``'s
    points: :math:`(B, M, C)`."""
    from ..data import interpolate_to_points

    C = values.size(-1)
    arr = grid.to_array(values)
    return torch.stack([interpolate_to_points(arr[..., c].double(), grid.lat, grid.lon, fine_grid.pos.double())
                        for c in range(C)], -1).to(values.dtype)


class BilinearDownscaling:
    r"""The first statistical downscaling a climate scientist tries: bilinear interpolation of the coarse field
    plus the training fields' mean sub-grid residual, with the residuals' spread at each fine point as its
    uncertainty,

    .. math::
        \hat{\mathbf y}^{\text{fine}} = \mathrm{bilinear}(\mathbf y) + \bar{\mathbf r}, \qquad
        \mathbf r_t = \mathbf y^{\text{fine}}_t - \mathrm{bilinear}(\mathbf y_t),

    with ``mean`` :math:`\bar{\mathbf r}` and ``std`` the standard deviation of :math:`\mathbf r_t`
    over the :math:`T` training fields, each :math:`(M, C)`.

    Args:
        grid (LatLonGrid): The coarse grid.
        fine_grid (Grid): The fine points (:math:`M`).
        train (Tensor): Training fields on ``grid``, :math:`(T, N, C)`.
        fine_train (Tensor): The same fields on ``fine_grid``, :math:`(T, M, C)`.

    Missing values are skipped: a missing coarse value is interpolated as the training mean there, and the
    residual statistics at a fine point use the fields that have it.
    """

    def __init__(self, grid: Any, fine_grid: Any, train: Tensor, fine_train: Tensor) -> None:
        from ..data import LatLonGrid

        if not isinstance(grid, LatLonGrid):
            raise TypeError(f"grid must be a LatLonGrid (bilinear interpolation), got {type(grid).__name__}")
        _check_fields(train, "train")
        _check_fields(fine_train, "fine_train")
        want = (train.size(0), fine_grid.num_points, train.size(-1))
        if tuple(fine_train.shape) != want:
            raise ValueError(f"fine_train must have shape {list(want)} (the training fields on the fine points), "
                             f"got {tuple(fine_train.shape)}")
        self.grid, self.fine_grid = grid, fine_grid
        #: The training mean on the coarse grid, :math:`(N, C)`: what a missing coarse value is taken to be.
        self.coarse_mean = _nan_moments(train)[0]
        residual = fine_train.double() - self.interpolate(train).double()
        self.mean, std = _nan_moments(residual)
        self.std = std if residual.size(0) > 1 else torch.zeros_like(self.mean)

    def interpolate(self, values: Tensor) -> Tensor:
        """Bilinear interpolation alone of fields :math:`(B, N, C)` (a missing value taken to be the training
        mean there): :math:`(B, M, C)`."""
        return _bilinear(self.grid, _filled(values, self.coarse_mean), self.fine_grid)

    def predict(self, values: Tensor) -> Tensor:
        """The downscaled fields :math:`(B, M, C)`, in ``values``' dtype."""
        return (self.interpolate(values).double() + self.mean).to(values.dtype)
