"""A Lightning ``Trainer`` set up for pcfunc: checkpoints every N steps, CSV and TensorBoard logs,
exact resume, distributed data parallel."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.plugins.layer_sync import LayerSync

from ._checksum import DIGEST_KEY, tensor_digest, verify_digest
from ._ddp import DDPStrategy
from ._sync_batch_norm import BatchNormSync, convert_sync_batchnorm

__all__ = ["make_trainer", "fit", "last_checkpoint", "RESUMABLE_EXIT_CODE", "Preempted", "AtomicCheckpointIO",
           "SyncBatchNorm", "BatchNormSync", "resolve_precision", "training_budget"]

_PRECISIONS = ("auto", "32-true", "bf16-mixed")


class SyncBatchNorm(Callback):
    """Deprecated (a callback, not :class:`torch.nn.SyncBatchNorm`): :func:`make_trainer` synchronises BatchNorm with
    the :class:`BatchNormSync` plugin. This callback converts the module's BatchNorm layers to
    :class:`DistributedBatchNorm` when more than one process trains (before Lightning wraps it in DDP)."""

    def __init__(self) -> None:
        warnings.warn("pcfunc.training.SyncBatchNorm is deprecated: make_trainer synchronises BatchNorm with the "
                      "BatchNormSync plugin (Trainer(plugins=[BatchNormSync()]))", FutureWarning, stacklevel=2)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.world_size > 1:
            convert_sync_batchnorm(pl_module)


def training_budget(default_steps: int, steps: Optional[int] = None, minutes: Optional[float] = None,
                    epochs: Optional[int] = None) -> Dict[str, Any]:
    """The limits of :func:`make_trainer` for a budget in optimiser steps (the default: every machine trains the
    same model), in epochs, or in wall time.

    Args:
        default_steps (int): Optimiser steps when nothing else is given.
        steps (int, optional): Optimiser steps; with ``minutes`` too, whichever ends first.
        minutes (float, optional): Wall time, alone or as a cap on ``steps``.
        epochs (int, optional): Epochs; overrides the others.

    Returns:
        dict: ``max_steps`` / ``max_epochs`` / ``max_time`` keyword arguments.
    """
    for name, v in (("default_steps", default_steps), ("steps", steps), ("epochs", epochs)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0):
        raise ValueError(f"minutes must be a positive number, got {minutes!r}")
    if epochs is not None:
        return {"max_epochs": epochs}
    if minutes is not None and steps is None:
        return {"max_time": {"minutes": minutes}, "max_epochs": 1_000_000}
    limits: Dict[str, Any] = {"max_steps": steps or default_steps, "max_epochs": 1_000_000}
    if minutes is not None:
        limits["max_time"] = {"minutes": minutes}
    return limits


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written atomically on local disks: to a temporary file in the checkpoint's own directory,
    flushed to disk (``fsync``), then renamed over the target (``os.replace``, atomic on one filesystem) and the
    directory synced. A crash or a full disk during a save leaves the previous file whole and no temporary file
    behind. (Lightning's own writer stages through ``fsspec`` and may use ``$TMPDIR``, another filesystem, where
    the final move is a copy that a crash can cut short.) Remote URLs are left to Lightning's writer."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path: Union[str, Path],
                        storage_options: Optional[Any] = None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        checkpoint = {**checkpoint, DIGEST_KEY: tensor_digest(checkpoint)}
        try:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        if hasattr(os, "O_DIRECTORY"):  # the rename itself durable (POSIX)
            fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def load_checkpoint(self, path: Union[str, Path], map_location: Optional[Any] = lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> Dict[str, Any]:
        """Read with ``torch.load(weights_only=True)`` always: Lightning passes ``None`` unless told (then
        ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would make it unpickle code), and ``False`` is refused."""
        if weights_only is False:
            raise ValueError(f"pcfunc reads checkpoints with weights_only=True only (no code runs from a file); "
                             f"got weights_only=False for {path}")
        checkpoint = super().load_checkpoint(path, map_location=map_location, weights_only=True)
        verify_digest(checkpoint, path)
        return checkpoint


class _FinalCheckpoint(ModelCheckpoint):
    """Lightning's checkpointing, plus one checkpoint (``step=N.ckpt`` and ``last.ckpt``) of the final step when
    training ends between two scheduled saves: ``last.ckpt`` is then always the model that was trained (not the
    one of the last multiple of ``checkpoint_every``)."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.global_step > self._last_global_step_saved and not trainer.sanity_checking:
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)


#: Exit status of a run that SIGTERM or SIGINT stopped after saving a checkpoint of its last step: 75,
#: ``EX_TEMPFAIL`` of ``sysexits.h`` ("temporary failure; the user is invited to retry"). A job script requeues on it
#: and runs the same command with ``--resume`` (:func:`fit` ``(resume=True)``).
RESUMABLE_EXIT_CODE = 75


class Preempted(SystemExit):
    """Training was stopped by SIGTERM or SIGINT and a checkpoint of its last completed step was written:
    ``code`` is :data:`RESUMABLE_EXIT_CODE`, ``checkpoint`` the file, ``step`` its optimiser step."""

    def __init__(self, checkpoint: Path, step: int, signal_name: str) -> None:
        super().__init__(RESUMABLE_EXIT_CODE)
        self.checkpoint, self.step, self.signal_name = checkpoint, step, signal_name

    def __str__(self) -> str:
        return (f"{self.signal_name} at step {self.step}: saved {self.checkpoint}; resume with fit(resume=True) "
                f"(examples: --resume); exit status {RESUMABLE_EXIT_CODE}")


class _Preemption(Callback):
    """On SIGTERM (Lightning's ``SIGTERMException``, raised after the step in progress) or SIGINT during fitting,
    ``last.ckpt`` of the current step, written atomically like every checkpoint; :func:`fit` then raises
    :class:`Preempted`."""

    def __init__(self, dirpath: Path) -> None:
        self.dirpath, self.saved = dirpath, None

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.state.fn != "fit":
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        name = "SIGTERM" if isinstance(exception, SIGTERMException) else "SIGINT"
        self.saved = Preempted(path, int(trainer.global_step), name)


# Lightning's informational lines and warnings that say nothing about the run of a pcfunc model: the hardware
# summary, advertising tips, a deprecation inside Lightning, and the notice that an epoch has fewer batches than
# the logging interval. ``quiet=False`` shows them.
_QUIET_WARNINGS = (r".*is smaller than the logging interval.*", r".*isinstance\(treespec, LeafSpec\).*",
                   r".*does not have many workers which may be a bottleneck.*")


@contextlib.contextmanager
def _quiet(enabled: bool = True) -> Iterator[None]:
    """Lightning's rank-zero info lines hidden and its known noise warnings ignored, inside the block."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch.utilities.rank_zero",
                                              "lightning.fabric.utilities.rank_zero")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for pattern in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def make_trainer(
    out_dir: Union[str, Path],
    max_epochs: Optional[int] = None,
    max_steps: int = -1,
    checkpoint_every: int = 100,
    keep_checkpoints: Optional[int] = 3,
    devices: Union[int, str] = 1,
    num_nodes: int = 1,
    accelerator: str = "auto",
    gradient_clip_val: Optional[float] = None,
    log_every: int = 10,
    progress_bar: bool = True,
    tensorboard: bool = True,
    val_every_epochs: int = 1,
    val_every_steps: Optional[int] = None,
    callbacks: Optional[List[Callback]] = None,
    quiet: bool = True,
    **trainer_kwargs: Any,
) -> pl.Trainer:
    """A :class:`lightning.pytorch.Trainer` writing everything under ``out_dir``.

    * ``out_dir/checkpoints``: ``last.ckpt`` and ``step=N.ckpt`` every ``checkpoint_every`` optimiser steps
      (the newest ``keep_checkpoints`` kept), at the end of every epoch and at the end of training (``last.ckpt`` is
      the final model), written atomically (:class:`AtomicCheckpointIO`), never versioned (``last-v1.ckpt``): a
      resume overwrites them; resume with :func:`fit` ``(resume=True)``.
      SIGTERM (``docker stop``, SLURM or Kubernetes preemption) or SIGINT during training writes ``last.ckpt`` of
      the last completed step; :func:`fit` then raises :class:`Preempted` (exit status
      :data:`RESUMABLE_EXIT_CODE`, 75), and ``fit(resume=True)`` continues as if uninterrupted.
    * ``out_dir/logs/csv/version_*/metrics.csv`` and ``out_dir/logs/tensorboard`` (``tensorboard=False``
      to skip it).
    * Distributed data parallel when ``devices * num_nodes > 1`` (or under ``torchrun``/SLURM, which
      Lightning detects): :class:`DDPStrategy` (one wrapper per network for GASP, the whole module for
      VaMoH) with the ``gloo`` backend on the CPU and ``nccl`` on GPUs, and
      BatchNorm synchronised across processes by the :class:`BatchNormSync` plugin
      (:class:`torch.nn.SyncBatchNorm` on CUDA, :class:`DistributedBatchNorm` elsewhere). The training loader
      shards the data itself
      (``use_distributed_sampler=False``).

    Args:
        out_dir: Output directory.
        max_epochs (int, optional): Epochs to train.
        max_steps (int): Optimiser steps to train (``-1``: no limit).
        checkpoint_every (int): Steps between checkpoints.
        keep_checkpoints (int, optional): The newest ``step=N.ckpt`` files kept (older ones are deleted as new
            ones are written); ``None`` keeps every one. ``last.ckpt`` is always kept. (default: ``3``)
        devices: Devices per node (``"auto"``, a count).
        num_nodes (int): Nodes.
        accelerator (str): ``"cpu"``, ``"gpu"`` or ``"auto"``.
        gradient_clip_val (float, optional): Clip the gradient norm to this value.
        log_every (int): Steps between logged rows.
        progress_bar (bool): Show a progress bar.
        tensorboard (bool): Also write TensorBoard logs.
        val_every_epochs (int): Validation frequency in epochs.
        val_every_steps (int, optional): Validate every this many optimiser steps instead, whatever an epoch's
            length (:func:`~pcfunc.training.data_budget` picks it from the budget).
        callbacks (list, optional): Extra callbacks.
        quiet (bool): Hide Lightning's hardware summary and tips (its rank-zero info lines) while the trainer is
            built; :func:`fit` does the same during training, and ignores Lightning's notice about logging
            intervals and a deprecation warning inside Lightning. Warnings about the run itself stay.
            (default: ``True``)
        **trainer_kwargs: Passed on to the ``Trainer``.
    """
    out = Path(out_dir)
    if val_every_steps is not None and (isinstance(val_every_steps, bool) or not isinstance(val_every_steps, int)
                                        or val_every_steps < 1):
        raise ValueError(f"val_every_steps must be a positive integer or None, got {val_every_steps!r}")
    if val_every_steps is not None:
        trainer_kwargs.update(val_check_interval=val_every_steps)
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every!r}")
    if keep_checkpoints is not None and (isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int)
                                         or keep_checkpoints < 1):
        raise ValueError(f"keep_checkpoints must be a positive integer or None, got {keep_checkpoints!r}")
    # Ranked by their step (Lightning always offers it as a candidate metric): the newest ones are the top k.
    keep = dict(save_top_k=-1) if keep_checkpoints is None else dict(save_top_k=keep_checkpoints, monitor="step",
                                                                       mode="max")
    ckpt = _FinalCheckpoint(dirpath=out / "checkpoints", filename="step={step}", auto_insert_metric_name=False,
                            every_n_train_steps=checkpoint_every, save_last=True, save_on_train_epoch_end=True,
                            enable_version_counter=False, **keep)  # one lineage: never last-v1.ckpt
    callbacks = [*(callbacks or []), _Preemption(out / "checkpoints")]
    loggers: List[Any] = [CSVLogger(out / "logs", name="csv")]
    if tensorboard:
        loggers.append(TensorBoardLogger(out / "logs", name="tensorboard"))
    world = (devices if isinstance(devices, int) else 1) * num_nodes
    strategy: Any = trainer_kwargs.pop("strategy", None)
    if strategy is None:
        if world > 1:
            backend = None if accelerator in ("gpu", "cuda") else "gloo"
            # Whole-module wrapping (VaMoH): the flow and the categorical prior are unused during the warm-up.
            strategy = DDPStrategy(process_group_backend=backend, find_unused_parameters=True)
        else:
            strategy = "auto"
    plugins = list(trainer_kwargs.pop("plugins", None) or [AtomicCheckpointIO()])
    if not trainer_kwargs.get("sync_batchnorm") and not any(isinstance(p, LayerSync) for p in plugins):
        plugins.append(BatchNormSync())
    with _quiet(quiet):
        trainer = pl.Trainer(
            default_root_dir=str(out),
            max_epochs=max_epochs,
            max_steps=max_steps,
            devices=devices,
            num_nodes=num_nodes,
            accelerator=accelerator,
            strategy=strategy,
            use_distributed_sampler=False,
            gradient_clip_val=gradient_clip_val,
            log_every_n_steps=log_every,
            enable_progress_bar=progress_bar,
            enable_model_summary=False,
            check_val_every_n_epoch=None if val_every_steps is not None else val_every_epochs,
            num_sanity_val_steps=0,
            logger=loggers,
            callbacks=[ckpt, *(callbacks or [])],
            plugins=plugins,
            **trainer_kwargs,
        )
    trainer._pcfunc_quiet = bool(quiet)  # fit() keeps the console as quiet
    return trainer


def last_checkpoint(out_dir: Union[str, Path]) -> Optional[Path]:
    """The newest checkpoint of ``out_dir/checkpoints`` that loads: ``last.ckpt``, else the ``step=N.ckpt`` with
    the largest ``N`` (each skipped file is named in a warning: truncated by a crash, say); ``None`` if there is
    none."""
    d = Path(out_dir) / "checkpoints"
    if not d.is_dir():
        return None

    def step(p: Path) -> int:
        m = re.fullmatch(r"step=(\d+)\.ckpt", p.name)
        return int(m.group(1)) if m else -1

    candidates = [d / "last.ckpt"] + sorted((p for p in d.glob("step=*.ckpt") if step(p) >= 0), key=step,
                                            reverse=True)
    for p in candidates:
        if not p.is_file():
            continue
        try:
            verify_digest(torch.load(p, map_location="cpu", weights_only=True, mmap=True), p)
        except Exception as err:  # noqa: BLE001 - any unreadable file is skipped, and said
            warnings.warn(f"skipping checkpoint {p}: it does not load ({type(err).__name__}: {str(err)[:120]})",
                          stacklevel=2)
            continue
        return p
    return None


def fit(trainer: pl.Trainer, module: pl.LightningModule, datamodule: pl.LightningDataModule,
        resume: Union[bool, str, Path] = False, overwrite: bool = False) -> Optional[Path]:
    """Run ``trainer.fit``; with ``resume=True`` continue from the newest checkpoint in the trainer's directory
    that loads (:func:`last_checkpoint`; a fresh start if there is none), or from the given checkpoint path.
    Checkpoints are read with ``weights_only=True``.

    A fresh run (``resume=False``) into a directory that already holds checkpoints is refused
    (:class:`FileExistsError`): its checkpoints would mix with the earlier run's, and a later ``resume=True`` could
    restore the wrong one. ``overwrite=True`` deletes the earlier checkpoints first.

    SIGTERM or SIGINT during training (with a trainer from :func:`make_trainer`) saves ``last.ckpt`` of the last
    completed step, prints which, and raises :class:`Preempted` (exit status :data:`RESUMABLE_EXIT_CODE`).

    Returns:
        The checkpoint resumed from, or ``None``.
    """
    ckpt: Optional[Path] = None
    d = Path(trainer.default_root_dir) / "checkpoints"
    old = sorted(d.glob("*.ckpt")) if d.is_dir() else []
    if resume is True:
        ckpt = last_checkpoint(trainer.default_root_dir)
    elif resume:
        ckpt = Path(resume)
        if not ckpt.is_file():
            raise FileNotFoundError(f"resume checkpoint {ckpt} does not exist")
    elif old:
        if not overwrite:
            raise FileExistsError(f"{d} holds {len(old)} checkpoint(s) of an earlier run ({old[0].name}, ...): "
                                  "resume=True (examples: --resume) continues it; overwrite=True deletes them; or "
                                  "train into another directory (examples: --out)")
        if trainer.global_rank == 0:
            for p in old:
                p.unlink()
    if trainer.global_rank == 0 and d.is_dir():  # temporary files of a save a killed process left behind
        for p in d.glob(".*.ckpt.*.tmp"):
            p.unlink()
    watch = next((c for c in trainer.callbacks if isinstance(c, _Preemption)), None)
    try:
        with _quiet(getattr(trainer, "_pcfunc_quiet", False)):
            trainer.fit(module, datamodule=datamodule, ckpt_path=None if ckpt is None else str(ckpt),
                        weights_only=True)
    except (SystemExit, KeyboardInterrupt) as err:
        # Lightning ends a SIGTERM with exit status 0 and a SIGINT with 1: a saved step is said, and resumable.
        if watch is not None and watch.saved is not None:
            if trainer.global_rank == 0:
                print(f"pcfunc: {watch.saved}", file=sys.stderr, flush=True)
            raise watch.saved from err
        raise
    return ckpt


def resolve_precision(precision: str = "auto", accelerator: str = "auto") -> str:
    """A Lightning ``precision`` for ``accelerator``: ``"auto"`` gives ``"bf16-mixed"`` where the hardware runs
    bfloat16 natively (a CUDA GPU with bfloat16 support; a CPU with AMX or AVX512-BF16), else ``"32-true"``.
    Elsewhere bfloat16 is emulated and many times slower than float32 (measured: a VaMoH training step
    about 25x slower on an AVX2-only CPU). Other values are returned as given.

    Args:
        precision (str): ``"auto"``, ``"32-true"`` or ``"bf16-mixed"``.
        accelerator (str): ``"cpu"``, ``"gpu"``/``"cuda"`` or ``"auto"`` (a GPU if one is available).
    """
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private torch.cpu helpers
    try:
        native = any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    except Exception:  # if they change, be conservative
        native = False
    return "bf16-mixed" if native else "32-true"
