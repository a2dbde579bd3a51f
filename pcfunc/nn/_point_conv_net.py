"""A stack of PointConv layers from layer specifications: the VaMoH encoder and the GASP discriminator."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from ..manifolds import Manifold, resolve_manifold
from ..ops import NeighborCache, default_cache
from ._point_conv import AvgPool, CloudNorm, PointConv, norm_layer, resolve_norm

__all__ = ["LayerSpec", "PointConvNet", "VAMOH_ENCODERS", "gasp_discriminator_specs", "vamoh_encoder_specs"]


@dataclass(frozen=True)
class LayerSpec:
    """One PointConv block of a :class:`PointConvNet`: conv -> BatchNorm -> LeakyReLU [-> AvgPool].

    Attributes:
        out_channels (int): Output channels of the PointConv.
        num_neighbors (int): Neighbours of each PointConv centroid.
        num_centroids (int, optional): PointConv centroids per cloud (``None``: every point, unless ``ratio``).
        ratio (float, optional): Fraction of points kept as PointConv centroids.
        pool_neighbors (int, optional): Neighbours of the average pooling that follows (``None``: no pooling).
        pool_centroids (int, optional): Centroids per cloud of the pooling.
        pool_ratio (float, optional): Fraction kept by the pooling (instead of ``pool_centroids``).
        global_centroid (bool): One centroid per cloud aggregating the whole cloud (see :class:`PointConv`).
    """

    out_channels: int
    num_neighbors: int
    num_centroids: Optional[int] = None
    ratio: Optional[float] = None
    pool_neighbors: Optional[int] = None
    pool_centroids: Optional[int] = None
    pool_ratio: Optional[float] = None
    global_centroid: bool = False


def _as_spec(s: Union[LayerSpec, Mapping[str, Any]], i: int) -> LayerSpec:
    if isinstance(s, LayerSpec):
        return s
    if isinstance(s, Mapping):
        try:
            return LayerSpec(**s)
        except TypeError as e:
            raise ValueError(f"layers[{i}] is not a valid LayerSpec: {e}") from None
    raise TypeError(f"layers[{i}] must be a LayerSpec or a dict, got {type(s).__name__}")


class PointConvNet(nn.Module):
    r"""A stack of :class:`PointConv` blocks with a head: the GASP discriminator and the VaMoH encoder.

    Each block is ``PointConv -> BatchNorm1d -> LeakyReLU(0.2)``, optionally followed by
    :class:`AvgPool`. The head reads the last level out per cloud (``readout="mean"``: the mean
    over its points, permutation invariant; ``"flatten"``: the features of the last level's
    centroids in FPS order, concatenated, as the reference code of the papers does; it needs a
    fixed number of final centroids) and maps it with a linear layer to

    * ``head="logit"``: one logit per cloud (GASP's discriminator; apply a sigmoid for the probability);
    * ``head="gaussian"``: :math:`(\boldsymbol\mu, \log\boldsymbol\sigma^2)` of
      :math:`q(\mathbf z \mid \mathbf X, \mathbf Y)` with ``latent_dim`` each (VaMoH's encoder);
    * ``head=None``: the pooled features.

    Args:
        in_channels (int): Feature channels of the input points.
        layers (sequence of LayerSpec or dict): The blocks.
        manifold (Manifold or str): The space of the points.
        head (str, optional): ``"logit"``, ``"gaussian"`` or ``None``. (default: ``"logit"``)
        latent_dim (int, optional): Size of :math:`\mathbf z` for ``head="gaussian"``.
        readout (str): ``"mean"`` or ``"flatten"``. (default: ``"mean"``)
        weight_hidden (sequence of int): Widths of every PointConv weight network. (default: ``(16, 16, 16, 16)``)
        batch_norm (bool): BatchNorm after each PointConv and in the weight networks. (default: ``True``)
        norm (str, optional): ``"batch"``, ``"instance"``, ``"layer"`` or ``"none"`` after each PointConv and in
            the weight networks (:func:`~pcfunc.nn.norm_layer`); overrides ``batch_norm`` when given.
            ``"instance"`` and ``"layer"`` compute the same function in training and evaluation mode.
        negative_slope (float): LeakyReLU slope. (default: ``0.2``)
        cache (NeighborCache, optional): Neighbour cache shared by the layers.

    Shapes:
        - **input:** ``x`` :math:`(N, C_\text{in})`, ``pos`` :math:`(N, D)`, ``batch`` :math:`(N,)` or ``None``
        - **output:** ``"logit"``: :math:`(B, 1)`; ``"gaussian"``: a pair :math:`(B, Z)`, :math:`(B, Z)`;
          ``None``: :math:`(B, C)` (``"mean"``) or :math:`(B, M C)` (``"flatten"``)
    """

    def __init__(
        self,
        in_channels: int,
        layers: Sequence[Union[LayerSpec, Mapping[str, Any]]],
        manifold: Union[str, Manifold],
        head: Optional[str] = "logit",
        latent_dim: Optional[int] = None,
        readout: str = "mean",
        weight_hidden: Sequence[int] = (16, 16, 16, 16),
        batch_norm: bool = True,
        negative_slope: float = 0.2,
        cache: Optional[NeighborCache] = default_cache,
        norm: Optional[str] = None,
    ) -> None:
        super().__init__()
        norm = resolve_norm(norm, batch_norm)
        #: The normalisation of the blocks and the weight networks.
        self.norm = norm
        specs = [_as_spec(s, i) for i, s in enumerate(layers)]
        if not specs:
            raise ValueError("layers must contain at least one LayerSpec")
        if head not in ("logit", "gaussian", None):
            raise ValueError(f"head must be 'logit', 'gaussian' or None, got {head!r}")
        if readout not in ("mean", "flatten"):
            raise ValueError(f"readout must be 'mean' or 'flatten', got {readout!r}")
        if head == "gaussian" and (latent_dim is None or latent_dim < 1):
            raise ValueError(f"head='gaussian' needs a positive latent_dim, got {latent_dim!r}")
        self.manifold = resolve_manifold(manifold)
        self.specs, self.head_kind, self.readout, self.latent_dim = specs, head, readout, latent_dim
        self.convs, self.norms, self.pools = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = in_channels
        for s in specs:
            self.convs.append(PointConv(c, s.out_channels, s.num_neighbors, s.num_centroids, s.ratio, self.manifold,
                                        weight_hidden, cache=cache, global_centroid=s.global_centroid, norm=norm))
            self.norms.append(norm_layer(norm, s.out_channels))
            pool = None
            if s.pool_neighbors is not None:
                pool = AvgPool(s.pool_neighbors, s.pool_centroids, s.pool_ratio, self.manifold, cache=cache)
            self.pools.append(pool if pool is not None else nn.Identity())
            c = s.out_channels
        self.act = nn.LeakyReLU(negative_slope)
        if readout == "flatten":
            last = specs[-1]
            final = 1 if last.global_centroid else (
                last.pool_centroids if last.pool_neighbors is not None else last.num_centroids)
            if final is None:
                raise ValueError("readout='flatten' needs a fixed number of centroids in the last layer")
            c = c * final
        self.out_features = c
        self.head = None
        if head == "logit":
            self.head = nn.Linear(c, 1)
        elif head == "gaussian":
            self.head = nn.Linear(c, 2 * int(latent_dim))  # type: ignore[arg-type]

    def reset_parameters(self) -> None:
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    @property
    def min_points(self) -> int:
        """The fewest points a cloud may have to pass every level (each PointConv and pooling needs at least its
        neighbours among the points it receives; centroid counts are capped by the cloud's size)."""
        def passes(n: int) -> bool:
            for s in self.specs:  # centroid counts are capped by the cloud (PointConv's rule)
                if n < s.num_neighbors and not s.global_centroid:
                    return False
                n = 1 if s.global_centroid else min(s.num_centroids, n) if s.num_centroids is not None else (
                    math.ceil(n * s.ratio - 1e-9) if s.ratio is not None else n)
                if s.pool_neighbors is not None:
                    if n < s.pool_neighbors:
                        return False
                    n = min(s.pool_centroids, n) if s.pool_centroids is not None else math.ceil(n * s.pool_ratio
                                                                                                  - 1e-9)
            return True

        lo, hi = 1, 1
        while not passes(hi):
            if hi > 2 ** 40:
                raise ValueError("no number of points passes this network's levels (check their ratios)")
            lo, hi = hi + 1, hi * 2
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if passes(mid) else (mid + 1, hi)
        return lo

    def features(self, x: Tensor, pos: Tensor, batch: Optional[Tensor] = None) -> Tuple[Tensor, Tensor, Tensor]:
        """The last level: features, positions and batch of its points."""
        if batch is None:
            batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
        if pos.size(0):
            counts = torch.bincount(batch)
            need = self.min_points
            if bool((counts < need).any()):
                b = int(torch.argmin(counts))
                raise ValueError(f"each cloud needs at least {need} points to pass this network's {len(self.specs)} "
                                 f"levels (each needs its neighbours); cloud {b} has {int(counts[b])}: give "
                                 "more points per cloud (e.g. a larger num_points) or use fewer levels or neighbours")
        for conv, norm, pool in zip(self.convs, self.norms, self.pools):
            x, pos, batch = conv(x, pos, batch)
            x = self.act(norm(x, batch) if isinstance(norm, CloudNorm) else norm(x))
            if isinstance(pool, AvgPool):
                x, pos, batch = pool(x, pos, batch)
        return x, pos, batch

    def forward(self, x: Tensor, pos: Tensor, batch: Optional[Tensor] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
        h, _, b = self.features(x, pos, batch)
        num = int(b.max()) + 1 if b.numel() else 0
        if self.readout == "mean":
            pooled = scatter(h, b, 0, num, reduce="mean")
        else:
            if h.size(0) % max(num, 1):
                raise ValueError("readout='flatten' needs the same number of final centroids in every cloud")
            pooled = h.reshape(num, -1)
        if self.head is None:
            return pooled
        out = self.head(pooled)
        if self.head_kind == "gaussian":
            mu, logvar = out.chunk(2, dim=-1)
            return mu, logvar
        return out


# VaMoH Table 3 (PointConv encoder rows). Where the table lists fewer neighbour counts than levels,
# the last count is repeated.
VAMOH_ENCODERS: Dict[str, Dict[str, Any]] = {
    "celeba_hq": dict(latent_dim=64, weight_hidden=(16, 16, 16, 16), neighbors=(9, 9, 9, 9),
                      centroids=(4096, 1024, 256, 64, 1), out_channels=(64, 128, 256, 512, 512),
                      pool_neighbors=(9, 9, 9, None, None), pool_centroids=(1024, 256, 64, 16, None)),
    "shapes3d": dict(latent_dim=32, weight_hidden=(16, 16), neighbors=(16, 16, 16), centroids=(1024, 256, 64),
                     out_channels=(32, 64, 256)),
    "polymnist": dict(latent_dim=16, weight_hidden=(16, 16), neighbors=(9, 9, 9), centroids=(196, 49, 25),
                      out_channels=(32, 32, 32)),
    "shapenet": dict(latent_dim=32, weight_hidden=(16, 16, 16, 16), neighbors=(8, 27, 27, 27, 8),
                     centroids=(4096, 512, 64, 16, 16), out_channels=(32, 64, 128, 256, 16)),
    "era5": dict(latent_dim=32, weight_hidden=(16, 16, 16, 16), neighbors=(9, 9, 9, 9),
                 centroids=(1024, 256, 64, 32, 16), out_channels=(32, 64, 256, 512, 32)),
}


def vamoh_encoder_specs(dataset: str) -> Tuple[List[LayerSpec], Dict[str, Any]]:
    """The VaMoH encoder of Table 3 for ``dataset`` as layer specs, plus ``latent_dim`` and ``weight_hidden``.

    Example:
        >>> specs, kw = vamoh_encoder_specs("era5")
        >>> net = PointConvNet(1, specs, "sphere", head="gaussian", **kw)
    """
    try:
        cfg = VAMOH_ENCODERS[dataset.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"dataset must be one of {sorted(VAMOH_ENCODERS)}, got {dataset!r}") from None
    n = len(cfg["centroids"])
    nbrs = tuple(cfg["neighbors"]) + (cfg["neighbors"][-1],) * (n - len(cfg["neighbors"]))
    pn = cfg.get("pool_neighbors", (None,) * n)
    pc = cfg.get("pool_centroids", (None,) * n)
    # A level of 1 centroid in Table 3 is the global "group all" aggregation of the whole cloud.
    specs = [LayerSpec(cfg["out_channels"][i], nbrs[i], None if cfg["centroids"][i] == 1 else cfg["centroids"][i],
                       None, pn[i], pc[i] if pn[i] is not None else None,
                       global_centroid=cfg["centroids"][i] == 1) for i in range(n)]
    return specs, dict(latent_dim=cfg["latent_dim"], weight_hidden=cfg["weight_hidden"])


def gasp_discriminator_specs(channels: Sequence[int], dim: int) -> List[LayerSpec]:
    r"""GASP's discriminator (App. A.1): per channel count, a PointConv with :math:`3^d` neighbours at
    every point, then average pooling keeping :math:`1/2^d` of the points with :math:`3^d` neighbours.

    Args:
        channels (sequence of int): e.g. ``(64, 128, 256, 512)`` for ERA5 and CelebA-HQ 64².
        dim (int): :math:`d`, the dimension of the coordinate space (2 for images and ERA5, 3 for voxels).
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim!r}")
    k = 3 ** dim
    return [LayerSpec(c, k, pool_neighbors=k, pool_ratio=1.0 / 2 ** dim) for c in channels]
