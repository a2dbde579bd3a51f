"""PointConv: a continuous convolution whose kernel weights an MLP computes from neighbour offsets; its norms and
pooling."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from ..manifolds import Manifold, resolve_manifold
from ..ops import Level, NeighborCache, default_cache, sample_and_group
from ._kernels import neighbour_sum

__all__ = ["PointConv", "AvgPool", "WeightNet", "CloudNorm", "norm_layer"]


class WeightNet(nn.Module):
    r"""The MLP :math:`W` of PointConv: relative position :math:`\to` :math:`C_\text{mid}` kernel weights.

    Every layer is ``Linear -> norm -> LeakyReLU(0.2)``; the last hidden width is :math:`C_\text{mid}`. With
    ``norm="batch"`` or ``"none"`` it is ``torch_geometric.nn.MLP([in_dim, *hidden], act="leaky_relu",
    act_kwargs={"negative_slope": 0.2}, norm="batch_norm" or None, plain_last=False)``, value for value (tested).
    pcfunc keeps its own module for ``norm="instance"`` (:class:`CloudNorm`: statistics per cloud, given the cloud
    of each offset), for plain :class:`torch.nn.BatchNorm1d` layers that distributed training can synchronise
    (:class:`~pcfunc.training.BatchNormSync`), and for the parameter names of saved models.

    Args:
        in_dim (int): Size of the relative position (``manifold.relative_dim``).
        hidden (sequence of int): Layer widths. (default: ``(16, 16, 16, 16)``, GASP App. A.1)
        batch_norm (bool): Use BatchNorm after each linear layer (``norm="batch"``); ``False``: no
            normalisation. (default: ``True``)
        negative_slope (float): LeakyReLU slope. (default: ``0.2``)
        norm (str, optional): ``"batch"``, ``"instance"``, ``"layer"`` or ``"none"``; overrides ``batch_norm``
            when given (see :func:`norm_layer`).
    """

    def __init__(self, in_dim: int, hidden: Sequence[int] = (16, 16, 16, 16), batch_norm: bool = True,
                 negative_slope: float = 0.2, norm: Optional[str] = None) -> None:
        super().__init__()
        norm = resolve_norm(norm, batch_norm)
        hidden = tuple(int(h) for h in hidden)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {hidden!r}")
        layers = []
        d = in_dim
        for h in hidden:
            layers.append(nn.Linear(d, h))
            if norm != "none":
                layers.append(norm_layer(norm, h))
            layers.append(nn.LeakyReLU(negative_slope))
            d = h
        self.net = nn.Sequential(*layers)
        self.out_dim = d

    def reset_parameters(self) -> None:
        for m in self.net:
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, rel: Tensor, group: Optional[Tensor] = None) -> Tensor:
        """Kernel weights of the offsets ``rel`` :math:`(E, r)`; ``group`` :math:`(E,)`: the cloud of each offset,
        for ``norm="instance"`` (``None``: one cloud)."""
        for m in self.net:
            rel = m(rel, group) if isinstance(m, CloudNorm) else m(rel)
        return rel


NORMS = ("batch", "instance", "layer", "none")


class CloudNorm(nn.Module):
    r"""Instance normalisation of point features: each channel standardised over the points of each cloud.

    .. math::
        \hat{\mathbf f}_i = \boldsymbol\gamma \odot \frac{\mathbf f_i - \boldsymbol\mu_{b(i)}}
        {\sqrt{\boldsymbol\sigma^2_{b(i)} + \epsilon}} + \boldsymbol\beta,

    with :math:`\boldsymbol\mu_b, \boldsymbol\sigma^2_b` the mean and (biased) variance over the points of
    cloud :math:`b`. BatchNorm's statistics over the points of one cloud, without running statistics: the same
    function in training and evaluation mode, independent of the other clouds of the batch. A cloud of a
    single point is only scaled and shifted (its variance is not defined).

    Args:
        channels (int): Feature channels.
        eps (float): :math:`\epsilon`. (default: ``1e-5``)

    Shapes:
        - **input:** ``x`` :math:`(N, C)`, ``batch`` :math:`(N,)` or ``None`` (one cloud)
        - **output:** :math:`(N, C)`
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = float(eps)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None) -> Tensor:
        if batch is None:
            if x.size(0) < 2:
                return x * self.weight + self.bias
            var, mean = torch.var_mean(x, dim=0, unbiased=False, keepdim=True)
            return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        num = int(batch.max()) + 1 if batch.numel() else 0
        counts = torch.bincount(batch, minlength=num).to(x.dtype).clamp_min(1)[:, None]
        mean = scatter(x, batch, 0, num, reduce="sum") / counts
        d = x - mean[batch]
        var = scatter(d * d, batch, 0, num, reduce="sum") / counts
        inv = torch.where(counts > 1, torch.rsqrt(var + self.eps), torch.ones_like(var))
        d = torch.where((counts > 1)[batch], d, x)
        return d * inv[batch] * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, eps={self.eps:g}"


def resolve_norm(norm: Optional[str], batch_norm: bool = True) -> str:
    """``norm`` checked, or ``"batch"``/``"none"`` from the older ``batch_norm`` flag when ``norm`` is ``None``."""
    if norm is None:
        return "batch" if batch_norm else "none"
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    return norm


def norm_layer(norm: str, channels: int) -> nn.Module:
    r"""The normalisation after a linear map of PointConv's networks.

    * ``"batch"``: :class:`torch.nn.BatchNorm1d`, over every point (or offset) of the batch: the papers'
      networks. In evaluation mode it uses running statistics gathered in training, so a network trained
      on thinned clouds (VaMoH's point dropout) and evaluated on whole ones, or on a patch, computes a
      different function from the one it was trained as.
    * ``"instance"``: :class:`CloudNorm`, BatchNorm's statistics over the points (or offsets) of each cloud
      alone: the same function in training and evaluation, whatever the batch and whichever points are
      observed.
    * ``"layer"``: :class:`torch.nn.LayerNorm` over the channels of each point: no batch statistics, the same
      function in training and evaluation, whatever the batch and whichever points are observed.
    * ``"none"``: :class:`torch.nn.Identity`.
    """
    norm = resolve_norm(norm)
    if norm == "batch":
        return nn.BatchNorm1d(channels)
    if norm == "instance":
        return CloudNorm(channels)
    if norm == "layer":
        return nn.LayerNorm(channels)
    return nn.Identity()


def _centroid_args(ratio: Optional[float], num_centroids: Optional[int]) -> Tuple[Optional[float], Optional[int]]:
    if ratio is not None and num_centroids is not None:
        raise ValueError("give at most one of ratio= and num_centroids=")
    return ratio, num_centroids


def _capped(num: Optional[int], pos: Tensor, batch: Optional[Tensor]) -> Optional[int]:
    """``num`` centroids, capped by the smallest cloud (clouds thinned by point dropout)."""
    if num is None:
        return None
    smallest = pos.size(0) if batch is None or batch.numel() == 0 else int(torch.bincount(batch).min())
    return max(1, min(num, smallest))


class PointConv(nn.Module):
    r"""The PointConv layer of `Wu et al. (2019) <https://arxiv.org/abs/1811.07246>`_, as used by GASP and VaMoH.

    Not PyG's :class:`torch_geometric.nn.conv.PointConv`, which is an alias of
    :class:`~torch_geometric.nn.conv.PointNetConv` (a max-aggregated PointNet
    layer). This is the continuous convolution whose kernel is an MLP of the
    relative position, in its memory-efficient form:

    .. math::
        \mathbf{f}_\text{out}(\mathbf{x}_c) = \sum_{\mathbf{x}_j \in \mathcal{N}_k(\mathbf{x}_c)}
        W(\mathbf{r}_{cj})\, \mathbf{f}_j
        = \operatorname{Linear}\Big(\operatorname{vec} \sum_{j} \mathbf{g}_j \otimes
        \mathbf{w}(\mathbf{r}_{cj})\Big),

    where :math:`\mathbf{r}_{cj}` = ``manifold.relative(x_c, x_j)``, :math:`\mathbf{w}` is the
    :class:`WeightNet` (:math:`C_\text{mid}` outputs), :math:`\mathbf{g}_j` the input features
    (concatenated with :math:`\mathbf{r}_{cj}` when ``concat_relative``), and the final linear
    map takes :math:`(C_\text{in}' C_\text{mid}) \to C_\text{out}`. Centroids
    :math:`\mathbf{x}_c` are chosen by farthest point sampling (``num_centroids`` per cloud or a
    ``ratio``), or are all points; their :math:`k` nearest neighbours are found under the
    manifold's metric (:func:`pcfunc.ops.sample_and_group`). Batches of clouds sharing one grid
    compute this once and reuse it across steps (the ``cache``).

    When a cloud has fewer points than ``num_centroids`` (after point dropout), the number of
    centroids is capped, for the whole batch, at the size of the smallest cloud; a cloud with
    fewer than ``num_neighbors`` points is an error.

    Args:
        in_channels (int): :math:`C_\text{in}`.
        out_channels (int): :math:`C_\text{out}`.
        num_neighbors (int): :math:`k`.
        num_centroids (int, optional): Centroids per cloud.
        ratio (float, optional): Fraction of each cloud kept as centroids (instead of ``num_centroids``).
            With neither, every point is a centroid.
        manifold (Manifold or str): The space of ``pos`` (required).
        weight_hidden (sequence of int): :class:`WeightNet` widths. (default: ``(16, 16, 16, 16)``)
        batch_norm (bool): BatchNorm in the weight network. (default: ``True``)
        norm (str, optional): The weight network's normalisation, ``"batch"``, ``"instance"``, ``"layer"`` or
            ``"none"``
            (:func:`~pcfunc.nn.norm_layer`); overrides ``batch_norm`` when given.
        concat_relative (bool): Feed the relative position along with the features. (default: ``True``)
        cache (NeighborCache, optional): Neighbour cache (``None`` disables it). (default: the process-wide one)
        global_centroid (bool): One centroid per cloud whose neighbourhood is the whole cloud, as the
            "group all" layer of Wu et al.: the weight network sees the points' ambient coordinates
            (the offsets from the origin of the embedding) and the output position is the origin.
            ``num_neighbors`` is then unused. (default: ``False``)

    Shapes:
        - **input:** ``x`` :math:`(N, C_\text{in})`, ``pos`` :math:`(N, D)`, ``batch`` :math:`(N,)` or ``None``
        - **output:** ``(x, pos, batch)`` of the centroids: :math:`(M, C_\text{out})`, :math:`(M, D)`, :math:`(M,)`

    Non-finite inputs are not checked here (an inner layer, called many times per step): NaN or Inf in gives NaN or
    Inf out (in the outputs whose neighbourhoods hold such a point), never a finite value. The models check their
    inputs once, at their boundary (:class:`~pcfunc.models.VaMoH`, :class:`~pcfunc.models.GASP`: a clear error
    naming the argument); see :doc:`/reliability`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_neighbors: int,
        num_centroids: Optional[int] = None,
        ratio: Optional[float] = None,
        manifold: Optional[Union[str, Manifold]] = None,
        weight_hidden: Sequence[int] = (16, 16, 16, 16),
        batch_norm: bool = True,
        concat_relative: bool = True,
        cache: Optional[NeighborCache] = default_cache,
        global_centroid: bool = False,
        norm: Optional[str] = None,
    ) -> None:
        super().__init__()
        if global_centroid and (num_centroids is not None or ratio is not None):
            raise ValueError("global_centroid=True takes no num_centroids= or ratio=")
        self.global_centroid = bool(global_centroid)
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("num_neighbors", num_neighbors)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if num_centroids is not None and (isinstance(num_centroids, bool) or not isinstance(num_centroids, int)
                                          or num_centroids < 1):
            raise ValueError(f"num_centroids must be a positive integer, got {num_centroids!r}")
        self.ratio, self.num_centroids = _centroid_args(ratio, num_centroids)
        self.in_channels, self.out_channels, self.num_neighbors = in_channels, out_channels, num_neighbors
        if manifold is None:
            raise ValueError("manifold must be given: a Manifold (e.g. pcfunc.manifolds.Euclidean(dim=2)) or the "
                             "name of one that needs no arguments ('sphere', 'torus')")
        self.manifold = resolve_manifold(manifold)
        self.concat_relative = concat_relative
        self.cache = cache
        rel_dim = self.manifold.relative_dim
        self.weight_net = WeightNet(rel_dim, weight_hidden, batch_norm, norm=norm)
        c_in = in_channels + (rel_dim if concat_relative else 0)
        self.linear = nn.Linear(c_in * self.weight_net.out_dim, out_channels)

    def reset_parameters(self) -> None:
        self.weight_net.reset_parameters()
        self.linear.reset_parameters()

    def level(self, pos: Tensor, batch: Optional[Tensor]) -> Level:
        """Centroids and neighbourhoods of ``pos`` (cached for fixed grids)."""
        return sample_and_group(pos, batch, k=self.num_neighbors, num=_capped(self.num_centroids, pos, batch),
                                ratio=self.ratio, manifold=self.manifold, cache=self.cache)

    def forward(self, x: Tensor, pos: Tensor, batch: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        if x.dim() != 2 or x.size(0) != pos.size(0):
            raise ValueError(f"x must have shape [N, C] with N = pos.size(0) = {pos.size(0)}, got {tuple(x.shape)}")
        if x.size(1) != self.in_channels:
            raise ValueError(f"x has {x.size(1)} channels but in_channels={self.in_channels}")
        if not torch.is_floating_point(x):
            raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}: convert it, e.g. x.float()")
        if x.size(0) == 0:
            raise ValueError(f"pos has no points: a cloud needs at least num_neighbors={self.num_neighbors}")
        if self.global_centroid:
            return self._forward_global(x, pos, batch)
        lv = self.level(pos, batch)
        row, col = lv.edge_index
        M, k = lv.num_centroids, lv.k
        # On a fixed grid every cloud has the same relative positions: evaluate the weight network on the
        # first cloud only and share it (BatchNorm statistics over identical copies are the same).
        B = lv.clouds or 1
        m1 = M // B
        rows = row[: m1 * k]
        rel = self.manifold.relative(lv.pos.index_select(0, rows), pos.index_select(0, col[: m1 * k]))
        # Offsets of one cloud when the clouds share a grid, else of every cloud (grouped for norm="instance").
        group = None if lv.clouds else lv.batch.index_select(0, rows)
        w = self.weight_net(rel, group).view(m1, k, -1)
        c_mid = w.size(-1)
        g = x.index_select(0, col).view(B, m1, k, -1)
        agg = neighbour_sum(g, w).reshape(M, -1)  # sum_k g_bmk (x) w_mk
        # The linear map acts on vec([features; rel] (x) w); split it so the relative-position part, the same
        # for every cloud of a grid, is computed once and broadcast instead of concatenated B times.
        weight = self.linear.weight
        n_feat = self.in_channels * c_mid
        out = torch.nn.functional.linear(agg, weight[:, :n_feat], self.linear.bias)
        if self.concat_relative:
            agg_rel = torch.einsum("mkr,mkw->mrw", rel.to(w.dtype).view(m1, k, -1), w).reshape(m1, -1)
            out = (out.view(B, m1, -1) + torch.nn.functional.linear(agg_rel, weight[:, n_feat:])).view(M, -1)
        return out, lv.pos, lv.batch

    def _forward_global(self, x: Tensor, pos: Tensor, batch: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
        if batch is None:
            batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
        num = int(batch.max()) + 1 if batch.numel() else 0
        w = self.weight_net(pos, batch)  # offsets from the origin
        g = torch.cat((x, pos.to(x.dtype)), dim=-1) if self.concat_relative else x
        # Sum over each cloud of g_j (x) w_j, as one scatter of the per-point outer products.
        outer = (g.unsqueeze(-1) * w.unsqueeze(-2)).reshape(pos.size(0), -1)
        agg = scatter(outer, batch, 0, num, reduce="sum")
        out = self.linear(agg)
        return out, pos.new_zeros(num, pos.size(1)), torch.arange(num, device=pos.device)

    def extra_repr(self) -> str:
        where = ("global centroid" if self.global_centroid
                 else f"num_centroids={self.num_centroids}" if self.num_centroids is not None
                 else f"ratio={self.ratio}" if self.ratio is not None else "all points")
        return (f"{self.in_channels}, {self.out_channels}, num_neighbors={self.num_neighbors}, {where}, "
                f"manifold={self.manifold!r}")


class AvgPool(nn.Module):
    r"""Average pooling on a point cloud: FPS centroids, each the mean of its :math:`k` nearest points' features.

    .. math::
        \mathbf{f}_\text{out}(\mathbf{x}_c) = \frac{1}{k} \sum_{\mathbf{x}_j \in \mathcal{N}_k(\mathbf{x}_c)} \mathbf{f}_j

    Args:
        num_neighbors (int): :math:`k`.
        num_centroids (int, optional): Centroids per cloud (capped by the cloud size).
        ratio (float, optional): Fraction of each cloud kept (GASP reduces by :math:`2^d`).
        manifold (Manifold or str): The space of ``pos``.
        cache (NeighborCache, optional): Neighbour cache.

    Shapes:
        - **input:** ``x`` :math:`(N, C)`, ``pos`` :math:`(N, D)`, ``batch`` :math:`(N,)` or ``None``
        - **output:** ``(x, pos, batch)`` of the centroids
    """

    def __init__(self, num_neighbors: int, num_centroids: Optional[int] = None, ratio: Optional[float] = None,
                 manifold: Optional[Union[str, Manifold]] = None,
                 cache: Optional[NeighborCache] = default_cache) -> None:
        super().__init__()
        if isinstance(num_neighbors, bool) or not isinstance(num_neighbors, int) or num_neighbors < 1:
            raise ValueError(f"num_neighbors must be a positive integer, got {num_neighbors!r}")
        if manifold is None:
            raise ValueError("manifold must be given: a Manifold (e.g. pcfunc.manifolds.Euclidean(dim=2)) or the "
                             "name of one that needs no arguments ('sphere', 'torus')")
        if num_centroids is None and ratio is None:
            raise ValueError("give num_centroids= or ratio=")
        self.ratio, self.num_centroids = _centroid_args(ratio, num_centroids)
        self.num_neighbors = num_neighbors
        self.manifold = resolve_manifold(manifold)
        self.cache = cache

    def forward(self, x: Tensor, pos: Tensor, batch: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        lv = sample_and_group(pos, batch, k=self.num_neighbors, num=_capped(self.num_centroids, pos, batch),
                              ratio=self.ratio,
                              manifold=self.manifold, cache=self.cache)
        out = x.index_select(0, lv.edge_index[1]).view(lv.num_centroids, lv.k, -1).mean(1)
        return out, lv.pos, lv.batch

    def extra_repr(self) -> str:
        where = f"num_centroids={self.num_centroids}" if self.num_centroids is not None else f"ratio={self.ratio}"
        return f"num_neighbors={self.num_neighbors}, {where}, manifold={self.manifold!r}"
