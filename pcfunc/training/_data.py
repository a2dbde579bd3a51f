"""Deterministic, resumable, distributed-aware batching of point-cloud datasets for Lightning."""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Iterator, Optional, Sequence

import lightning.pytorch as pl
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch

__all__ = ["StepLoader", "FunctionDataModule"]


class StepLoader:
    r"""Batches of a dataset whose order is a pure function of ``(seed, epoch)``, resumable at any step.

    Epoch :math:`e` visits a permutation of the dataset drawn from a generator seeded with
    ``seed + e`` (or the dataset in order with ``shuffle=False``). Under distributed training the
    permutation is cut into ``world_size`` interleaved shards of equal length (the tail that does not
    divide evenly is dropped for this epoch), one per rank. Batches are PyG ``Batch`` objects.

    Iteration starts where the run is: ``position()`` (by default 0; the Lightning data module passes the
    trainer's global step) gives the number of batches already consumed, so after restoring a checkpoint
    the loader continues with exactly the batch an uninterrupted run would have seen next — nothing
    repeated, nothing skipped, with no loader state to save. (Lightning's prefetching of one batch makes
    a count of yielded batches off by one; the global step is not.)

    Args:
        dataset (Dataset): Items are PyG ``Data``.
        batch_size (int): Clouds per batch (per rank).
        shuffle (bool): Permute each epoch. (default: ``True``)
        seed (int): Base seed of the permutations. (default: ``0``)
        drop_last (bool): Drop a final incomplete batch. (default: ``False``)
        position (callable, optional): Returns the number of batches consumed so far.
        rank (callable, optional): Returns ``(rank, world_size)``; default ``(0, 1)``.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, position: Optional[Callable[[], int]] = None,
                 rank: Optional[Callable[[], Sequence[int]]] = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError("dataset is empty")
        self.dataset, self.batch_size, self.shuffle, self.seed = dataset, batch_size, bool(shuffle), int(seed)
        self.drop_last = bool(drop_last)
        self._position = position or (lambda: 0)
        self._rank = rank or (lambda: (0, 1))

    def _shard_size(self) -> int:
        _, world = self._rank()
        return len(self.dataset) // world  # type: ignore[arg-type]

    def __len__(self) -> int:
        n = self._shard_size()
        if n < 1:
            raise ValueError(f"the dataset has {len(self.dataset)} items, fewer than the {self._rank()[1]} ranks")
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's dataset indices for ``epoch``, in visiting order."""
        n = len(self.dataset)  # type: ignore[arg-type]
        rank, world = self._rank()
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(n)
        per = n // world
        return order[: per * world][rank::world]

    def __iter__(self) -> Iterator[Batch]:
        steps = len(self)
        done = int(self._position())
        epoch, offset = divmod(done, steps)
        idx = self.indices(epoch)
        for b in range(offset, steps):
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            yield Batch.from_data_list([self.dataset[int(i)] for i in sel])

    # Lightning treats loaders with these methods as resumable (no mid-epoch warning); the position comes
    # from the global step, so there is nothing to store.
    def state_dict(self) -> Dict[str, Any]:
        return {"seed": self.seed, "batch_size": self.batch_size, "items": len(self.dataset),  # type: ignore[arg-type]
                "world": int(self._rank()[1])}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(f"the checkpoint was trained with data seed {state['seed']}, this run uses {self.seed}")
        # Resuming works with these changed, but the data order from here is not the uninterrupted run's: say so.
        now = {"batch_size": self.batch_size, "items": len(self.dataset),  # type: ignore[arg-type]
               "world": int(self._rank()[1])}
        what = {"batch_size": "batch size", "items": "training items", "world": "processes (devices x nodes)"}
        changed = [f"{what[k]} {state[k]} -> {now[k]}" for k in now if k in state and int(state[k]) != now[k]]
        if changed:
            warnings.warn(f"resuming with {', '.join(changed)}: training continues from the checkpoint's step, but "
                          "the batches from here differ from an uninterrupted run's (not bit-identical)", stacklevel=2)


class FunctionDataModule(pl.LightningDataModule):
    """Training and validation datasets of point clouds (PyG ``Data`` items) as :class:`StepLoader` batches.

    The training loader resumes at the trainer's global step and shards over distributed ranks itself
    (build the trainer with ``use_distributed_sampler=False``, as :func:`make_trainer` does).

    Args:
        train (Dataset): Training items.
        val (Dataset, optional): Validation items (not shuffled; every rank sees all of them).
        batch_size (int): Clouds per batch and rank.
        seed (int): Seed of the training order. (default: ``0``)
        val_batch_size (int, optional): Defaults to ``batch_size``.
    """

    def __init__(self, train: Dataset, val: Optional[Dataset] = None, batch_size: int = 16, seed: int = 0,
                 val_batch_size: Optional[int] = None) -> None:
        super().__init__()
        self.train_set, self.val_set = train, val
        self.batch_size, self.seed = batch_size, seed
        self.val_batch_size = val_batch_size or batch_size
        StepLoader(train, batch_size)  # validate early

    def _rank(self) -> Sequence[int]:
        t = self.trainer
        return (t.global_rank, t.world_size) if t is not None else (0, 1)

    def _step(self) -> int:
        # Batches consumed: Lightning's global step counts optimiser steps, several per batch for a GAN.
        if self.trainer is None:
            return 0
        per_batch = getattr(self.trainer.lightning_module, "optimizer_steps_per_batch", 1)
        return self.trainer.global_step // per_batch

    def train_dataloader(self) -> StepLoader:
        return StepLoader(self.train_set, self.batch_size, True, self.seed, position=self._step, rank=self._rank)

    def val_dataloader(self) -> Any:
        if self.val_set is None:
            return []
        return StepLoader(self.val_set, self.val_batch_size, shuffle=False)
