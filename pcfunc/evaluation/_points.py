"""Fields on a grid as the model's input: PyG batches of their observed points, in chunks of fields."""

from __future__ import annotations

from typing import Any, Iterator, Optional

import torch
from torch import Tensor

from ..data import Grid
from ._baselines import observed_mask, valid_points

__all__ = ["points_batch"]


def _chunks(n: int, size: int) -> Iterator[slice]:
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def points_batch(grid: Grid, values: Tensor, observed: Optional[Tensor] = None) -> Any:
    """Fields :math:`(B, N, C)` on ``grid`` (point values, as :meth:`Grid.to_points <pcfunc.data.Grid.to_points>`
    gives them) as one PyG :class:`~torch_geometric.data.Batch` of their ``observed`` points (bool :math:`(N,)` or
    :math:`(B, N)`; ``None``: all), leaving out missing values (NaN): the input of VaMoH's ``reconstruct``,
    ``inpaint``, ``predictive`` for those fields.

    Raises:
        ValueError: if a field has no observed point that is not missing.
    """
    from torch_geometric.data import Batch

    B, N, C = values.shape
    pos = grid.pos.to(values.dtype)
    valid = valid_points(values)
    if (observed is None or observed.dim() == 1) and bool(valid.all()):
        keep = torch.ones(N, dtype=torch.bool) if observed is None else observed
        n = int(keep.sum())
        return Batch(x=values[:, keep].reshape(B * n, C), pos=pos[keep].repeat(B, 1),
                     batch=torch.arange(B).repeat_interleave(n), ptr=torch.arange(B + 1) * n)
    keep = valid if observed is None else valid & observed_mask(observed, B, N)
    counts = keep.sum(1)
    if bool((counts == 0).any()):
        raise ValueError(f"field {int((counts == 0).nonzero()[0])} has no observed point that is not missing")
    return Batch(x=values[keep], pos=pos.expand(B, N, pos.size(-1))[keep],
                 batch=torch.arange(B).repeat_interleave(counts),
                 ptr=torch.cat([counts.new_zeros(1), counts.cumsum(0)]))
