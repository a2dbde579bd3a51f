"""Training to convergence: a budget that follows the data, validation every N optimiser steps, early stopping on a
held-out figure, and a report of whether that figure was still improving when training stopped."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import lightning.pytorch as pl
import torch

__all__ = ["Convergence", "convergence_report", "data_budget"]


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def data_budget(num_fields: int, batch_size: int, epochs: int = 300, min_steps: int = 1500,
                max_steps: int = 20_000, validations: int = 30) -> Dict[str, int]:
    r"""A training budget that follows the data: ``epochs`` passes over ``num_fields`` fields, at least
    ``min_steps`` and at most ``max_steps`` optimiser steps, validated about ``validations`` times.

    .. math::
        S = \min\big(S_\max, \max(S_\min, E \lceil N / B \rceil)\big), \qquad
        V = \max(1, \lfloor S / n_\text{val} \rfloor)

    A handful of fields is trained for ``min_steps`` (many passes: each step sees a new latent sample and new
    point dropout), hundreds to thousands for ``epochs`` passes; :class:`Convergence` stops earlier once the
    held-out figure has stopped improving.

    Args:
        num_fields (int): Training fields :math:`N`.
        batch_size (int): Fields per optimiser step :math:`B` (all devices together).
        epochs (int): Passes :math:`E` over the data. (default: ``300``)
        min_steps (int): :math:`S_\min`. (default: ``1500``)
        max_steps (int): :math:`S_\max`. (default: ``20000``)
        validations (int): Validations over the budget :math:`n_\text{val}`. (default: ``30``)

    Returns:
        dict: ``steps`` (:math:`S`), ``val_every`` (:math:`V`, in optimiser steps), ``steps_per_epoch`` and
        ``epochs`` (the passes the budget makes, rounded down).
    """
    for name, v in (("num_fields", num_fields), ("batch_size", batch_size), ("epochs", epochs),
                    ("min_steps", min_steps), ("max_steps", max_steps), ("validations", validations)):
        _positive_int(v, name)
    if min_steps > max_steps:
        raise ValueError(f"min_steps ({min_steps}) must not exceed max_steps ({max_steps})")
    per_epoch = -(-num_fields // batch_size)
    steps = min(max_steps, max(min_steps, epochs * per_epoch))
    return {"steps": steps, "val_every": max(1, steps // validations), "steps_per_epoch": per_epoch,
            "epochs": steps // per_epoch}


def convergence_report(history: Sequence[Tuple[int, float]], mode: str = "max", min_delta: float = 0.1,
                       window: float = 0.25) -> Dict[str, Any]:
    r"""Whether a validation figure was still improving when training stopped.

    The validations of the last ``window`` of the run (by optimiser step, at least the last two) are compared
    with those before: the run is **still improving** when the best value in that window beats the best value
    before it by more than ``min_delta`` (in the figure's units, e.g. dB of PSNR).

    Args:
        history (sequence of (int, float)): ``(step, value)`` of each validation, in order.
        mode (str): ``"max"`` (higher is better, e.g. PSNR) or ``"min"`` (e.g. a loss).
        min_delta (float): Smallest change that counts. (default: ``0.1``)
        window (float): Fraction of the run's steps looked back over, in :math:`(0, 1)`. (default: ``0.25``)

    Returns:
        dict: ``validations``, ``best`` and ``best_step``, ``last`` and ``last_step``, ``window_start`` (the first
        step of the window), ``window_gain`` (the best value in the window less the best before it, in the
        figure's units; ``None`` with fewer than three validations), ``still_improving`` (``None`` when unknown) and
        ``verdict``, a sentence.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if not (isinstance(window, (int, float)) and 0 < window < 1):
        raise ValueError(f"window must be in (0, 1), got {window!r}")
    if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
        raise ValueError(f"min_delta must be a non-negative number, got {min_delta!r}")
    points = [(int(s), float(v)) for s, v in history if math.isfinite(float(v))]
    sign = 1.0 if mode == "max" else -1.0
    report: Dict[str, Any] = {"validations": len(points), "best": None, "best_step": None, "last": None,
                              "last_step": None, "window_start": None, "window_gain": None,
                              "still_improving": None}
    if not points:
        report["verdict"] = "no validation: convergence unknown"
        return report
    best_step, best = max(points, key=lambda p: (sign * p[1], -p[0]))
    report.update(best=best, best_step=best_step, last=points[-1][1], last_step=points[-1][0])
    if len(points) < 3:
        report["verdict"] = f"only {len(points)} validation(s): convergence unknown"
        return report
    first, last = points[0][0], points[-1][0]
    start = last - window * (last - first)
    split = min(sum(1 for s, _ in points if s < start), len(points) - 2)
    before, recent = points[:split], points[split:]
    better = max(sign * v for _, v in recent) - max(sign * v for _, v in before)  # > 0: the window did better
    report["window_start"], report["window_gain"] = recent[0][0], sign * better
    improving = better > min_delta
    report["still_improving"] = bool(improving)
    change = f"{sign * better:+.3g} over steps {recent[0][0]}-{last}"
    report["verdict"] = (f"still improving ({change}): more training would likely help" if improving else
                         f"converged ({change}, threshold {min_delta:g}); best {best:.4g} at step {best_step}")
    return report


class Convergence(pl.Callback):
    r"""Records a validation figure, stops training when it has stopped improving, and reports whether it was
    still improving at the end (:func:`convergence_report`).

    Early stopping: after ``patience`` validations in a row without a new best by more than ``min_delta``,
    training stops (``trainer.should_stop``; with several processes, when every one agrees). ``patience=None``
    never stops. The history is saved in checkpoints, so a resumed run reports (and stops) as the uninterrupted
    one would.

    With ``restore_best=True`` the module's weights at the best validation (the first validation included, e.g.
    one :meth:`~lightning.pytorch.Trainer.validate` before training, so that a model started at a good linear
    solution is never returned worse than it started) are kept in memory, in checkpoints too, and loaded back
    when fitting ends; ``restored_step`` says which step's weights the module holds then. Validate on fields
    held out of training (not the test fields): the choice is fitted to them.

    Args:
        monitor (str): A logged validation metric. (default: ``"val/psnr"``)
        mode (str): ``"max"`` or ``"min"``. (default: ``"max"``)
        patience (int, optional): Validations without improvement before stopping. (default: ``None``)
        min_delta (float): Smallest improvement that counts. (default: ``0.05``)
        window (float): Fraction of the run that :attr:`report` looks back over. (default: ``0.25``)
        restore_best (bool): Load the best validation's weights back when fitting ends. (default: ``False``)
    """

    def __init__(self, monitor: str = "val/psnr", mode: str = "max", patience: Optional[int] = None,
                 min_delta: float = 0.05, window: float = 0.25, restore_best: bool = False) -> None:
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if patience is not None:
            _positive_int(patience, "patience")
        convergence_report([], mode, min_delta, window)  # checks min_delta and window
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.window = float(min_delta), float(window)
        self.restore_best = bool(restore_best)
        self.history: List[Tuple[int, float]] = []
        self.stopped_step: Optional[int] = None
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.best_state_step: Optional[int] = None
        self.restored_step: Optional[int] = None

    @property
    def _sign(self) -> float:
        return 1.0 if self.mode == "max" else -1.0

    def _since_best(self) -> int:
        """Validations since the last improvement by more than ``min_delta``."""
        best, since = -math.inf, 0
        for _, v in self.history:
            if self._sign * v > best + self.min_delta:
                best, since = self._sign * v, 0
            else:
                since += 1
        return since

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(f"Convergence: the metric {self.monitor!r} was not logged in validation (logged: "
                           f"{sorted(trainer.callback_metrics)})")
        step, value = int(trainer.global_step), float(value)
        best_before = max((self._sign * v for s, v in self.history if s != step), default=-math.inf)
        if self.history and self.history[-1][0] == step:  # validated twice at one step (end of an epoch)
            self.history[-1] = (step, value)
        else:
            self.history.append((step, value))
        if self.restore_best and math.isfinite(value) and (self._sign * value > best_before
                                                           or self.best_state_step == step):
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}
            self.best_state_step = step
        if self.patience is None:
            return
        stop = self._since_best() >= self.patience
        stop = bool(trainer.strategy.reduce_boolean_decision(torch.tensor(stop), all=True))
        if stop and not trainer.should_stop:
            trainer.should_stop = True
            self.stopped_step = step

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.restore_best or self.best_state is None:
            return
        pl_module.load_state_dict(self.best_state)
        self.restored_step = self.best_state_step

    @property
    def report(self) -> Dict[str, Any]:
        """:func:`convergence_report` of the history, with ``monitor``, ``history`` and ``stopped_early``."""
        out = convergence_report(self.history, self.mode, max(self.min_delta, 0.0), self.window)
        out.update(monitor=self.monitor, stopped_early=self.stopped_step is not None,
                   history=[[s, v] for s, v in self.history], restored_step=self.restored_step)
        if self.stopped_step is not None:
            out["verdict"] = (f"stopped early at step {self.stopped_step}: no new best {self.monitor} in "
                              f"{self.patience} validations; " + out["verdict"])
        return out

    def state_dict(self) -> Dict[str, Any]:
        state: Dict[str, Any] = {"history": [list(p) for p in self.history], "stopped_step": self.stopped_step}
        if self.best_state is not None:
            state.update(best_state=self.best_state, best_state_step=self.best_state_step)
        return state

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.history = [(int(s), float(v)) for s, v in state_dict.get("history", [])]
        self.stopped_step = state_dict.get("stopped_step")
        self.best_state, self.best_state_step = state_dict.get("best_state"), state_dict.get("best_state_step")
