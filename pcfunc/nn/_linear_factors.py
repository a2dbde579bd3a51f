"""A linear factor model of functions on a manifold: basis functions weighted by the latent, and the matching
linear analysis of an observed function, both stored as tables at anchor points (functional PCA when fitted)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.utils import to_dense_batch

from .._validation import check_positive_int
from ._point_table import PointTable

__all__ = ["LinearFactors"]


class LinearFactors(torch.nn.Module):
    r"""Linear synthesis and analysis of functions with :math:`Z` learned basis functions (a factor model).

    .. math::
        \text{synthesis:}\quad \mathbf f(\mathbf x) = \mathbf b(\mathbf x) + \sum_{j=1}^{Z} z_j\,
        \boldsymbol\phi_j(\mathbf x),
        \qquad
        \text{analysis:}\quad \mathbf z = \mathbf G_\mathcal M\, \big(\mathbf G_\mathcal O + \delta
        \mathbf I\big)^{-1} \mathbf r,

    with :math:`\boldsymbol\phi_j, \boldsymbol\psi_j, \mathbf m, \mathbf b : \mathcal M \to \mathbb R^C` each a
    :class:`PointTable` on the same anchors, :math:`\mathbf r = \frac1N \sum_{d=1}^{N}
    \boldsymbol\psi(\mathbf x_d)^\top (\mathbf y_d - \mathbf m(\mathbf x_d))` the projection of the observed
    anomalies on the analysis functions, :math:`\mathbf G_\mathcal O = \frac1N \sum_d
    \boldsymbol\psi(\mathbf x_d)^\top \boldsymbol\psi(\mathbf x_d)` their Gram matrix over the :math:`N`
    observed points and :math:`\mathbf G_\mathcal M` the same over all anchors (:math:`\delta`, against
    round-off, is a hundred machine epsilons of the tables' dtype times :math:`\mathbf G_\mathcal M`'s mean
    diagonal). On a cloud that covers the manifold as the anchors do, :math:`\mathbf G_\mathcal O =
    \mathbf G_\mathcal M` and the analysis is the projection :math:`\mathbf r` (a quadrature of :math:`\langle \boldsymbol\psi_j, \mathbf y - \mathbf m
    \rangle`, whatever the number of points); on a partly observed cloud (a region hidden, a mask, sparse
    stations) it is the least-squares fit of the analysis functions to the points it has, not a projection that
    counts the unseen anomalies as zero. With the tables of :meth:`fit_pca_` (:math:`\boldsymbol\psi_j
    \propto \boldsymbol\phi_j / S_j^2`) that is PCA's least-squares fit to the observed points, the
    in-painting a linear model of the data does at best. The synthesis' offset :math:`\mathbf b` starts at
    zero: a model that adds the synthesis to terms of its own sets it to what they leave of the mean
    (:meth:`VaMoH.initialize_factors <pcfunc.models.VaMoH.initialize_factors>`). :meth:`fit_pca_` sets the
    tables to the principal components of a set of functions on the anchors: synthesis and analysis are then
    PCA's reconstruction and projection with whitened coefficients (unit variance over the fields), which is
    what a linear model of the data can do at best in the least-squares sense.

    VaMoH adds it to its generators and its encoder (``VaMoH(factor_grid=...)``): the mixture of hypergenerators
    then models what the best linear model of the data leaves, and the model starts where PCA is.

    Args:
        anchors (Tensor): Anchor points :math:`(M, D)` (e.g. ``manifold.grid(resolution)``, the data's grid).
        latent_dim (int): :math:`Z`.
        channels (int): :math:`C`.
        neighbors (int): Anchors each query reads (:class:`PointTable`). (default: ``4``)

    Shapes:
        - :meth:`synthesis`: ``z`` :math:`(B, Z)`, ``pos`` :math:`(N, D)` or :math:`(B, N, D)` →
          :math:`(B, N, C)`
        - :meth:`analysis`: ``y`` :math:`(N, C)`, ``pos`` :math:`(N, D)`, ``batch`` :math:`(N,)` →
          :math:`(B, Z)`
    """

    def __init__(self, anchors: Tensor, latent_dim: int, channels: int, neighbors: int = 4) -> None:
        super().__init__()
        self.latent_dim = check_positive_int(latent_dim, "latent_dim")
        self.channels = check_positive_int(channels, "channels")
        self.basis = PointTable(anchors, self.latent_dim * self.channels, neighbors)
        self.dual = PointTable(anchors, self.latent_dim * self.channels, neighbors)
        self.center = PointTable(anchors, self.channels, neighbors)
        self.offset = PointTable(anchors, self.channels, neighbors)

    def synthesis(self, z: Tensor, pos: Tensor) -> Tensor:
        """:math:`\\mathbf b(\\mathbf x) + \\sum_j z_j \\phi_j(\\mathbf x)` at ``pos`` for every latent,
        :math:`(B, N, C)`."""
        if z.dim() != 2 or z.size(-1) != self.latent_dim:
            raise ValueError(f"z must have shape [B, {self.latent_dim}], got {tuple(z.shape)}")
        phi = self.basis(pos).to(z.dtype)
        phi = phi.view(*phi.shape[:-1], self.latent_dim, self.channels)
        offset = self.offset(pos).to(z.dtype)
        if pos.dim() == 2:
            return torch.einsum("bz,nzc->bnc", z, phi) + offset
        if pos.size(0) != z.size(0):
            raise ValueError(f"pos of shape {tuple(pos.shape)} does not match the {z.size(0)} latents")
        return torch.einsum("bz,bnzc->bnc", z, phi) + offset

    def analysis(self, y: Tensor, pos: Tensor, batch: Optional[Tensor] = None, num_clouds: Optional[int] = None
                 ) -> Tensor:
        r"""The coefficients :math:`\mathbf G_\mathcal M (\mathbf G_\mathcal O + \delta \mathbf I)^{-1}
        \mathbf r` of each cloud (the least-squares fit to its points), :math:`(B, Z)`."""
        if y.dim() != 2 or y.size(-1) != self.channels or pos.dim() != 2 or pos.size(0) != y.size(0):
            raise ValueError(f"y must be [N, {self.channels}] and pos [N, D] with the same N, got "
                             f"{tuple(y.shape)} and {tuple(pos.shape)}")
        if batch is None:
            batch = torch.zeros(y.size(0), dtype=torch.long, device=y.device)
        B = int(batch.max()) + 1 if num_clouds is None else int(num_clouds)
        Z, C = self.latent_dim, self.channels
        # A small linear solve per cloud: in the parameters' precision whatever autocast says.
        with torch.autocast(y.device.type, enabled=False):
            dtype = self.dual.values.dtype
            y, pos = y.to(dtype), pos.to(dtype)
            psi = self.dual(pos).view(-1, Z, C)
            count = torch.bincount(batch, minlength=B).clamp_min(1).to(dtype)
            per_point = torch.einsum("nzc,nc->nz", psi, y - self.center(pos))
            r = per_point.new_zeros(B, Z).index_add_(0, batch, per_point) / count[:, None]
            # Gram matrices of the analysis functions over each cloud's points and over the anchors.
            dense, _ = to_dense_batch(psi.reshape(-1, Z * C), batch, batch_size=B)  # zero rows pad
            dense = dense.view(B, -1, Z, C).permute(0, 2, 1, 3).reshape(B, Z, -1)
            observed = dense @ dense.transpose(1, 2) / count[:, None, None]
            table = self.dual.values.view(-1, Z, C)
            full = torch.einsum("mzc,mwc->zw", table, table) / table.size(0)
            delta = 100 * torch.finfo(dtype).eps * full.diagonal().mean().clamp_min(torch.finfo(dtype).tiny)
            eye = torch.eye(Z, dtype=dtype, device=y.device)
            z = torch.linalg.solve(observed + delta * eye, r.unsqueeze(-1)).squeeze(-1) @ full.T
        return z

    @torch.no_grad()
    def fit_pca_(self, fields: Tensor, gain: Optional[Tensor] = None) -> Tensor:
        r"""Set synthesis and analysis to the principal components of ``fields`` on the anchors.

        With :math:`\mathbf Y - \bar{\mathbf y} = \sqrt{T-1}\, U S V^\top` (the fields less their mean, as
        :math:`T \times MC` rows; missing values, NaN, filled with the mean), the coefficients
        :math:`z_{tj} = \sqrt{T-1}\, U_{tj}` have unit variance over the fields; the synthesis basis is
        :math:`\phi_j = S_j V_j / g` (``gain`` :math:`g(\mathbf x)`, the slope of the link the synthesis is added
        before, e.g. :math:`\mu(1-\mu)` for a sigmoid around the mean :math:`\mu`; default 1) and the analysis
        :math:`\psi_j = M V_j / S_j`, :math:`\mathbf m = \bar{\mathbf y}`.
        Components beyond the fields' rank (:math:`\min(T - 1, MC)`) are left at zero.

        Args:
            fields (Tensor): :math:`(T, M, C)`, the functions' values at the anchors, :math:`T \ge 2`.
            gain (Tensor, optional): :math:`(M, C)`, positive.

        Returns:
            Tensor: The fraction of the fields' variance each component explains, :math:`(Z,)`.
        """
        M = self.basis.num_anchors
        if fields.dim() != 3 or fields.size(1) != M or fields.size(2) != self.channels or fields.size(0) < 2:
            raise ValueError(f"fields must have shape [T >= 2, {M}, {self.channels}], got {tuple(fields.shape)}")
        y = fields.to(torch.float64)
        valid = torch.isfinite(y)
        mean = torch.where(valid, y, 0.0).sum(0) / valid.sum(0).clamp_min(1)
        y = torch.where(valid, y, mean)
        T, Z, C = y.size(0), self.latent_dim, self.channels
        _, s, vh = torch.linalg.svd((y - mean).reshape(T, M * C) / (T - 1) ** 0.5, full_matrices=False)
        k = min(Z, int((s > s[0] * 1e-6).sum()) if s.numel() and s[0] > 0 else 0)
        g = torch.ones(M, C, dtype=torch.float64) if gain is None else gain.to(torch.float64).clamp_min(1e-6)
        basis = torch.zeros(M, Z, C, dtype=torch.float64)
        dual = torch.zeros(M, Z, C, dtype=torch.float64)
        v = vh[:k].reshape(k, M, C)
        basis[:, :k] = (s[:k, None, None] * v / g).permute(1, 0, 2)
        dual[:, :k] = (M * v / s[:k, None, None]).permute(1, 0, 2)
        self.basis.values.copy_(basis.reshape(M, Z * C))
        self.dual.values.copy_(dual.reshape(M, Z * C))
        self.center.values.copy_(mean)
        explained = torch.zeros(Z, dtype=torch.float64)
        explained[:k] = s[:k] ** 2 / (s ** 2).sum()
        return explained.to(fields.dtype if fields.is_floating_point() else torch.float32)

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, channels={self.channels}, anchors={self.basis.num_anchors}"
