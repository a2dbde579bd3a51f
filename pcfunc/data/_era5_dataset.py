"""Time steps of an ERA5 field as PyG point clouds for training: :class:`ERA5Dataset` (values in memory) and the
target points of fine supervision (:func:`target_points`)."""

from __future__ import annotations

import warnings
from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch

from ._cf import _same_times
from ._field import ERA5Field, MinMaxNormalizer

__all__ = ["ERA5Dataset", "target_points", "pooled_points"]


class ERA5Dataset(torch.utils.data.Dataset):
    """Time steps of an :class:`ERA5Field` as PyG :class:`~torch_geometric.data.Data` on its lat/lon grid.

    Each item has ``pos`` (the grid's unit vectors, each pole one point), ``x`` (the normalised values,
    shape ``(N, C)``: ``C = 1`` for one variable, one channel per variable for several) and ``time_index``. Batch with :class:`torch_geometric.loader.DataLoader`.

    With ``target`` (the same times on another grid, usually finer), each item also carries
    ``target_points`` points of that grid drawn uniformly without replacement at every access:
    ``target_pos`` :math:`(M, 3)`, ``target_x`` :math:`(M, 1)` (normalised like ``x``) and ``num_target``
    :math:`(1,)`; :func:`target_points` turns a batch of them into the ``target`` of
    :meth:`pcfunc.models.VaMoH.elbo` (training with fine supervision; :class:`~pcfunc.training.VaMoHModule`
    does it when the batch has them). The draws use ``generator``, or torch's global generator (seeded per
    DataLoader worker by ``lightning.seed_everything(..., workers=True)``).

    Args:
        field (ERA5Field): The data (e.g. one split of :func:`split_by_time`).
        normalizer (MinMaxNormalizer, optional): Maps values to [0, 1]; by default fitted on ``field``
            (fit it on the training split and pass it to the others).
        transform (callable, optional): Applied to every item (e.g. :class:`PointDropout`).
        clip (bool): Clip the normalised values to :math:`[0, 1]` (for splits other than the one the
            normalizer was fitted on). (default: ``False``)
        target (ERA5Field, optional): The same time steps on the grid the likelihood is evaluated on.
        target_points (int, optional): Target points per item (all of them by default); memory per batch
            grows with this number, not with the target grid's size.
        generator (torch.Generator, optional): Randomness of the target points.
        min_points (int): Valid points a time step needs to be an item (e.g. the centroids of the encoder's first
            level, ``VaMoH.min_encoder_points``); steps with fewer are skipped, with one warning naming their
            times. (default: ``1``)

    Missing values (NaN, as :func:`load_era5` reads a ``_FillValue``: sea-surface temperature over land, a
    station gap) are missing points: each item holds only its field's valid points (fields may differ in size;
    a PyG batch concatenates them), and target points are drawn among the valid ones. Nothing is filled in. A
    grid point is valid when every cell it stands for is (a pole row collapsed into one point is valid only if
    its whole row is). ``time_index`` is the step's index in ``field``, also when steps are skipped.
    """

    def __init__(self, field: ERA5Field, normalizer: Optional[MinMaxNormalizer] = None,
                 transform: Optional[Any] = None, clip: bool = False, target: Optional[ERA5Field] = None,
                 target_points: Optional[int] = None, generator: Optional[torch.Generator] = None,
                 min_points: int = 1) -> None:
        from .._validation import check_positive_int
        from ._grids import LatLonGrid

        if not isinstance(field, ERA5Field):
            raise TypeError(f"field must be an ERA5Field, got {type(field).__name__}")
        if field.values.shape[0] == 0:
            raise ValueError("field has no time steps: check the time selection or split that made it")
        self.field = field
        self.normalizer = normalizer if normalizer is not None else MinMaxNormalizer.fit(field)
        self.grid = LatLonGrid(field.lat, field.lon)
        self.transform = transform
        self.clip = bool(clip)
        self.target, self.target_grid, self.target_points, self.generator = None, None, None, generator
        self.min_points = check_positive_int(min_points, "min_points")
        if target is None:
            if target_points is not None:
                raise ValueError("target_points needs target (the field to draw them from)")
            self._steps = self._usable_steps()
            return
        if not isinstance(target, ERA5Field):
            raise TypeError(f"target must be an ERA5Field, got {type(target).__name__}")
        if target.values.shape[0] != field.values.shape[0] or not _same_times(target.time, field.time):
            raise ValueError(f"target must have the same time steps as field: {target.values.shape[0]} steps "
                             f"from {target.time[:1]} against {field.values.shape[0]} from {field.time[:1]}")
        if target.variables != field.variables:
            raise ValueError(f"target holds {target.variables} and field {field.variables}: they must be the same "
                             "variables")
        if target.units != field.units:
            raise ValueError(f"target is in {target.units!r} and field in {field.units!r}; the normalizer maps "
                             "both, so they must share units")
        self.target, self.target_grid = target, LatLonGrid(target.lat, target.lon)
        if target_points is not None:
            if isinstance(target_points, bool) or not isinstance(target_points, int) or target_points < 1:
                raise ValueError(f"target_points must be a positive integer or None, got {target_points!r}")
            self.target_points = min(int(target_points), self.target_grid.num_points)
        self._steps = self._usable_steps()

    def _usable_steps(self) -> np.ndarray:
        """Indices of the steps with at least ``min_points`` valid points (and a valid target point); one warning
        names the others."""
        def valid_points(grid: Any, values: np.ndarray) -> np.ndarray:
            ok = np.isfinite(values)
            ok = ok.all(-1) if values.ndim == 4 else ok  # several variables: every channel present
            finite = torch.from_numpy(ok.astype(np.float32))[..., None]
            return (grid._gather(finite)[..., 0] > 1.0 - 1e-6).sum(-1).numpy()

        counts = valid_points(self.grid, self.field.values)
        ok = counts >= self.min_points
        if self.target is not None:
            ok &= valid_points(self.target_grid, self.target.values) >= 1
        if not ok.all():
            bad = np.nonzero(~ok)[0]
            times = ", ".join(f"{self.field.time[j]} ({int(counts[j])} points)" for j in bad[:5])
            warnings.warn(f"{bad.size} of {ok.size} time steps have fewer than {self.min_points} valid points (or no "
                          f"valid target point) and are skipped: {times}{', ...' if bad.size > 5 else ''}",
                          stacklevel=3)
        if not ok.any():
            raise ValueError(f"no time step of field has {self.min_points} valid points: the data are missing "
                             "(NaN) almost everywhere, or min_points is larger than the grid")
        return np.nonzero(ok)[0]

    def __len__(self) -> int:
        return int(self._steps.size)

    def __getitem__(self, i: int) -> Any:
        return self.get(i)

    def get(self, i: int, all_targets: bool = False) -> Any:
        """Item ``i`` (what ``dataset[i]`` gives); with ``all_targets=True`` it holds every target point of its field
        instead of the ``target_points`` subset, and draws nothing from ``generator``."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} time steps")
        t = int(self._steps[i])
        data = self.grid.to_data(self.normalizer.transform(self.field.values[t], clip=self.clip), drop_missing=True)
        data.time_index = torch.tensor([t])
        if self.target is not None:
            fine = self.target_grid.to_data(self.normalizer.transform(self.target.values[t], clip=self.clip),
                                            drop_missing=True)
            n = fine.pos.size(0)
            if not all_targets and self.target_points is not None and self.target_points < n:
                keep = torch.randperm(n, generator=self.generator)[: self.target_points].sort().values
                fine.pos, fine.x = fine.pos[keep], fine.x[keep]
            data.target_pos, data.target_x = fine.pos, fine.x
            data.num_target = torch.tensor([fine.pos.size(0)])
        return self.transform(data) if self.transform is not None else data


def target_points(batch: Any) -> Any:
    """The target points of a batch of :class:`ERA5Dataset` items made with ``target=``, as a PyG ``Data``
    with ``x``, ``pos`` and ``batch`` (numbering the same fields as ``batch``): the ``target`` of
    :meth:`pcfunc.models.VaMoH.elbo`.

    Raises:
        ValueError: if ``batch`` has no target points.
    """
    from torch_geometric.data import Data

    x, pos, num = (getattr(batch, k, None) for k in ("target_x", "target_pos", "num_target"))
    if not all(isinstance(t, torch.Tensor) for t in (x, pos, num)):
        raise ValueError("batch has no target points (target_x, target_pos, num_target): build its dataset "
                         "with ERA5Dataset(..., target=fine_field)")
    if int(num.sum()) != x.size(0) or pos.size(0) != x.size(0):
        raise ValueError(f"batch.num_target sums to {int(num.sum())} but there are {x.size(0)} target points")
    index = torch.repeat_interleave(torch.arange(num.numel(), device=num.device), num.reshape(-1))
    return Data(x=x, pos=pos, batch=index)


def pooled_points(dataset: Sequence[Any], target: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Every item's points and values of a dataset of point clouds, concatenated: ``pos`` :math:`(\\sum N, D)` and
    ``x`` :math:`(\\sum N, C)`, the pooled training data that :meth:`pcfunc.models.VaMoH.initialize_generators` and
    :meth:`pcfunc.models.GASP.initialize_generator` fit.

    Args:
        dataset: Items with ``pos`` and ``x`` (e.g. :class:`ERA5Dataset`, a list of PyG ``Data``).
        target (bool): The items' target points instead (``target_pos``, ``target_x``: fine supervision, an
            :class:`ERA5Dataset` made with ``target=``); of an :class:`ERA5Dataset`, **every** target point of each
            item (:meth:`ERA5Dataset.get` with ``all_targets=True``), not the random ``target_points`` subset an
            item draws for a training step (that subset would leave most points of a fine grid unseen, and a base
            table fitted to it noisy), and without drawing from the dataset's generator. (default: ``False``)
    """
    key = "target_" if target else ""
    full = target and isinstance(dataset, ERA5Dataset)
    items = [dataset.get(i, all_targets=True) if full else dataset[i] for i in range(len(dataset))]
    if not items:
        raise ValueError("dataset has no items")
    missing = [k for k in (key + "pos", key + "x") if getattr(items[0], k, None) is None]
    if missing:
        raise ValueError(f"the dataset's items have no {missing[0]}" + (" (an ERA5Dataset made without target=)"
                                                                         if target else ""))
    return (torch.cat([getattr(d, key + "pos") for d in items]), torch.cat([getattr(d, key + "x") for d in items]))
