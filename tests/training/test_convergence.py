"""Training to convergence: the data budget, the convergence report, early stopping and checkpoint retention."""

from __future__ import annotations

import math
from pathlib import Path
from typing import List

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from pcfunc.training import Convergence, convergence_report, data_budget, fit, last_checkpoint, make_trainer


def test_data_budget_follows_the_data_within_bounds():
    # 18 fields at batch 8: 3 steps per pass; 300 passes = 900 < 1500, so the floor.
    assert data_budget(18, 8) == {"steps": 1500, "val_every": 50, "steps_per_epoch": 3, "epochs": 500}
    # 558 fields at batch 8: 70 steps per pass, 300 passes = 21,000 > 20,000, so the cap.
    assert data_budget(558, 8) == {"steps": 20000, "val_every": 666, "steps_per_epoch": 70, "epochs": 285}
    # 99 fields at batch 8: 13 steps per pass, 300 passes.
    assert data_budget(99, 8) == {"steps": 3900, "val_every": 130, "steps_per_epoch": 13, "epochs": 300}
    assert data_budget(7, 8, epochs=2, min_steps=1, validations=5)["steps"] == 2
    for kw, name in ((dict(num_fields=0), "num_fields"), (dict(batch_size=True), "batch_size"),
                     (dict(epochs=1.5), "epochs"), (dict(validations=0), "validations")):
        args = dict(num_fields=10, batch_size=2)
        args.update(kw)
        with pytest.raises(ValueError, match=name):
            data_budget(**args)
    with pytest.raises(ValueError, match="min_steps"):
        data_budget(10, 2, min_steps=10, max_steps=5)


def test_convergence_report_by_hand():
    # Steps 0..900, window 0.25: the window starts at step 675, i.e. it holds steps 700, 800, 900.
    rising = [(s, 20.0 + s / 100) for s in range(0, 1000, 100)]
    r = convergence_report(rising)
    assert r["still_improving"] is True and r["window_start"] == 700
    assert r["window_gain"] == pytest.approx(29.0 - 26.0) and r["best"] == 29.0 and r["best_step"] == 900
    assert "still improving" in r["verdict"]
    flat = [(s, 25.0 + (0.02 if s % 200 else 0.0)) for s in range(0, 1000, 100)]
    r = convergence_report(flat)
    assert r["still_improving"] is False and r["window_gain"] == pytest.approx(0.0)
    assert r["best"] == 25.02 and r["best_step"] == 100  # the first of equal bests
    assert "converged" in r["verdict"]
    # A loss ("min"): lower is better; the gain is reported signed as the figure moved (here down).
    falling = [(s, 1.0 - s / 1000) for s in range(0, 1000, 100)]
    r = convergence_report(falling, mode="min", min_delta=0.01)
    assert r["still_improving"] is True and r["window_gain"] == pytest.approx(0.1 - 0.4)
    # Non-finite values are skipped; too few validations say so.
    assert convergence_report([(1, math.nan), (2, 3.0)])["still_improving"] is None
    assert convergence_report([])["verdict"].startswith("no validation")
    # The window always holds the last two validations, however long the early part is.
    r = convergence_report([(0, 0.0), (1, 0.0), (1000, 1.0), (1001, 1.0)])
    assert r["window_start"] == 1000 and r["still_improving"] is True
    with pytest.raises(ValueError, match="mode"):
        convergence_report(rising, mode="up")
    with pytest.raises(ValueError, match="window"):
        convergence_report(rising, window=1.0)
    with pytest.raises(ValueError, match="min_delta"):
        convergence_report(rising, min_delta=-1)


class _Scripted(pl.LightningModule):
    """A one-parameter model whose validation metric follows a script, one value per validation."""

    def __init__(self, script: List[float]) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.script, self.calls = script, 0

    def training_step(self, batch, batch_idx):
        return (self.w - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self) -> None:
        self.log("val/psnr", self.script[min(self.calls, len(self.script) - 1)])
        self.calls += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _Data(pl.LightningDataModule):
    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(3, 1)), batch_size=1)  # 3 steps per epoch

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(1, 1)), batch_size=1)


def test_convergence_stops_after_patience_and_validates_every_n_steps(tmp_path: Path):
    # Validated every 2 steps (not per epoch of 3): the metric improves three times, then never again.
    script = [1.0, 2.0, 3.0, 3.01, 2.0, 2.5, 3.0, 1.0, 5.0, 6.0]
    watch = Convergence("val/psnr", patience=4, min_delta=0.05)
    trainer = make_trainer(tmp_path, max_steps=40, val_every_steps=2, callbacks=[watch], progress_bar=False,
                           tensorboard=False, checkpoint_every=4, keep_checkpoints=2)
    fit(trainer, _Scripted(script), _Data())
    assert [s for s, _ in watch.history] == [2, 4, 6, 8, 10, 12, 14]
    assert [v for _, v in watch.history] == pytest.approx(script[:7])
    assert watch.stopped_step == 14 and trainer.global_step == 14
    report = watch.report
    assert report["stopped_early"] and report["best"] == pytest.approx(3.01) and report["best_step"] == 8
    assert "stopped early at step 14" in report["verdict"]
    # Only the newest two step checkpoints are kept (and last.ckpt).
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert names == ["last.ckpt", "step=12.ckpt", "step=14.ckpt"]
    assert last_checkpoint(tmp_path).name == "last.ckpt"
    # The history rides in the checkpoint: a resumed run continues the same record.
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    restored = Convergence("val/psnr", patience=4)
    restored.load_state_dict(next(v for k, v in state.items() if k.startswith("Convergence")))
    assert restored.history == watch.history and restored.stopped_step == 14


def test_convergence_without_patience_never_stops_and_names_a_missing_metric(tmp_path: Path):
    watch = Convergence("val/psnr")
    trainer = make_trainer(tmp_path / "a", max_steps=9, val_every_steps=3, callbacks=[watch], progress_bar=False,
                           tensorboard=False)
    fit(trainer, _Scripted([5.0, 4.0, 3.0]), _Data())
    assert trainer.global_step == 9 and [v for _, v in watch.history] == [5.0, 4.0, 3.0]
    assert watch.report["still_improving"] is False and not watch.report["stopped_early"]
    trainer = make_trainer(tmp_path / "b", max_steps=3, val_every_steps=3, callbacks=[Convergence("val/nope")],
                           progress_bar=False, tensorboard=False)
    with pytest.raises(KeyError, match="val/nope"):
        fit(trainer, _Scripted([1.0]), _Data())
    with pytest.raises(ValueError, match="patience"):
        Convergence(patience=0)
    with pytest.raises(ValueError, match="val_every_steps"):
        make_trainer(tmp_path / "c", val_every_steps=0)
    with pytest.raises(ValueError, match="keep_checkpoints"):
        make_trainer(tmp_path / "c", keep_checkpoints=0)


class _Recorded(_Scripted):
    """:class:`_Scripted` that remembers its weight at each validation."""

    def __init__(self, script: List[float]) -> None:
        super().__init__(script)
        self.seen: List[float] = []

    def on_validation_epoch_end(self) -> None:
        self.seen.append(self.w.item())
        super().on_validation_epoch_end()


@pytest.mark.parametrize("script, best", [([9.0, 1.0, 2.0, 3.0, 4.0], 0), ([1.0, 2.0, 7.0, 3.0, 4.0], 2)])
def test_restore_best_returns_the_best_validations_weights_the_start_included(tmp_path: Path, script, best):
    torch.manual_seed(0)
    model, watch = _Recorded(script), Convergence("val/psnr", restore_best=True)
    trainer = make_trainer(tmp_path, max_steps=8, val_every_steps=2, callbacks=[watch], progress_bar=False,
                           tensorboard=False, checkpoint_every=2)
    trainer.validate(model, datamodule=_Data(), verbose=False)  # the start: step 0
    fit(trainer, model, _Data())
    assert [s for s, _ in watch.history] == [0, 2, 4, 6, 8] and len(set(model.seen)) == 5  # SGD moved w each time
    assert model.w.item() == model.seen[best] and watch.restored_step == 2 * best
    assert watch.report["restored_step"] == 2 * best and f"step {2 * best}" in watch.report["verdict"]
    # The best weights ride in the checkpoint, so a resumed run restores the same ones.
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]
    restored = Convergence("val/psnr", restore_best=True)
    restored.load_state_dict(next(v for k, v in state.items() if k.startswith("Convergence")))
    assert restored.best_state_step == 2 * best and float(restored.best_state["w"]) == model.seen[best]
    # Without restore_best the module keeps its last weights.
    model2 = _Recorded(script)
    trainer = make_trainer(tmp_path / "plain", max_steps=8, val_every_steps=2, callbacks=[Convergence("val/psnr")],
                           progress_bar=False, tensorboard=False)
    fit(trainer, model2, _Data())
    assert model2.w.item() != model2.seen[0] and trainer.callbacks[0].restored_step is None
