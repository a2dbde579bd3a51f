"""Fields on a grid as the model's input: PyG batches of their observed points, in chunks of fields."""

from __future__ import annotations

from typing import Any, Dict, Iterator, Mapping, Optional, Union

import torch
from torch import Tensor

from ..data import Grid
from ._baselines import observed_mask, valid_points

__all__ = ["points_batch"]


#: Refinement iterations: one count for every task, or one for the fields observed everywhere (reconstruction,
#: super-resolution) and one for the partly observed (in-painting).
RefineSteps = Union[int, Mapping[str, int]]
_REFINE_KEYS = ("reconstruction", "inpainting")


def refine_steps_for(refine_steps: RefineSteps, partial: bool) -> int:
    """The refinement of a task from ``refine_steps``: an int for every task, or ``{"reconstruction": n,
    "inpainting": m}``, ``n`` for a field observed everywhere and ``m`` for one observed in part (``partial``).

    Raises:
        ValueError: if ``refine_steps`` is neither a non-negative int nor such a mapping.
    """
    if isinstance(refine_steps, Mapping):
        if sorted(refine_steps) != sorted(_REFINE_KEYS):
            raise ValueError(f"refine_steps as a mapping must have the keys {_REFINE_KEYS}, got {sorted(refine_steps)}")
        return refine_steps_for(refine_steps[_REFINE_KEYS[int(bool(partial))]], partial)
    if isinstance(refine_steps, bool) or not isinstance(refine_steps, int) or refine_steps < 0:
        raise ValueError(f"refine_steps must be a non-negative int or a mapping {_REFINE_KEYS} -> int, got "
                         f"{refine_steps!r}")
    return refine_steps


def _refine_record(refine_steps: RefineSteps) -> Union[int, Dict[str, int]]:
    """``refine_steps`` as a report stores it (checked)."""
    if isinstance(refine_steps, Mapping):
        return {k: refine_steps_for(refine_steps, k == "inpainting") for k in _REFINE_KEYS}
    return refine_steps_for(refine_steps, False)


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
