"""PyG transforms for training on point subsets, point dropout (VaMoH) and random subsets (GASP), and GASP's
feature range."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform

__all__ = ["PointDropout", "RandomSubset", "ToSymmetric", "select_points"]


def select_points(data: Data, index: Tensor) -> Data:
    """A copy of ``data`` keeping the points ``index`` in every per-point tensor (same first size as ``pos``)."""
    n = data.pos.size(0)
    out = data.clone()
    for key, value in data.items():
        if isinstance(value, Tensor) and value.dim() > 0 and value.size(0) == n:
            out[key] = value[index]
    return out


class PointDropout(BaseTransform):
    r"""Drop each point with probability :math:`p \sim \mathcal U(0, \alpha)`, drawn anew for every sample (VaMoH).

    The number kept is :math:`\operatorname{Binomial}(N, 1 - p)`, raised to ``min_points`` if needed (choose
    it so the first PointConv level still has enough points, e.g. its number of centroids), and the kept
    points are a uniform subset in their original order.

    This is the per-item form, for datasets of clouds of different points. :class:`~pcfunc.models.VaMoH` applies
    the same dropout to whole batches itself (``max_dropout``): one rate per batch and, on a grid, one kept
    subset shared by the clouds, so that the encoder's neighbour hierarchy is computed once per batch.

    Args:
        max_rate (float): :math:`\alpha \in [0, 1)`.
        min_points (int): Points always kept. (default: ``1``)
        generator (torch.Generator, optional): Source of randomness.
    """

    def __init__(self, max_rate: float, min_points: int = 1, generator: Optional[torch.Generator] = None) -> None:
        if not 0.0 <= float(max_rate) < 1.0:
            raise ValueError(f"max_rate must be in [0, 1), got {max_rate!r}")
        if isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 1:
            raise ValueError(f"min_points must be a positive integer, got {min_points!r}")
        self.max_rate, self.min_points, self.generator = float(max_rate), min_points, generator

    def forward(self, data: Data) -> Data:
        n = data.pos.size(0)
        if n < self.min_points:
            raise ValueError(f"the cloud has {n} points, fewer than min_points={self.min_points}")
        p = float(torch.rand((), generator=self.generator)) * self.max_rate
        kept = int((torch.rand(n, generator=self.generator) >= p).sum())
        kept = max(kept, self.min_points)
        index = torch.randperm(n, generator=self.generator)[:kept].sort().values
        return select_points(data, index.to(data.pos.device))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_rate={self.max_rate}, min_points={self.min_points})"


class RandomSubset(BaseTransform):
    """Keep ``num_points`` points chosen uniformly without replacement (GASP trains on random subsets).

    The per-item form; :class:`~pcfunc.models.GASP` draws such subsets of whole batches itself (``num_points`` of
    its losses), one subset shared by the clouds of a grid.

    Args:
        num_points (int): Points kept (all of them if the cloud is smaller).
        generator (torch.Generator, optional): Source of randomness.
    """

    def __init__(self, num_points: int, generator: Optional[torch.Generator] = None) -> None:
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
            raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
        self.num_points, self.generator = num_points, generator

    def forward(self, data: Data) -> Data:
        n = data.pos.size(0)
        if n <= self.num_points:
            return data
        index = torch.randperm(n, generator=self.generator)[: self.num_points].sort().values
        return select_points(data, index.to(data.pos.device))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_points={self.num_points})"


class ToSymmetric(BaseTransform):
    r"""Features from pcfunc's :math:`[0, 1]` (:class:`ERA5Dataset`, :class:`ImageDataset`, :class:`VoxelDataset`) to
    GASP's :math:`[-1, 1]` (its generator ends in a tanh): :math:`x \mapsto 2x - 1`, on ``x`` and on ``target_x``
    if the item has one.

    Example:
        >>> from pcfunc.data import ERA5Dataset, ToSymmetric, load_era5_sample
        >>> data = ERA5Dataset(load_era5_sample(), transform=ToSymmetric())
        >>> float(data[0].x.min()) >= -1.0 and float(data[0].x.max()) <= 1.0
        True
    """

    def forward(self, data: Data) -> Data:
        for key in ("x", "target_x"):
            value = getattr(data, key, None)
            if isinstance(value, Tensor):
                setattr(data, key, value * 2 - 1)
        return data
