"""Trains a tiny VaMoH on synthetic sphere functions; used by the resume and DDP tests (run as a script)."""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from pcfunc.data import LatLonGrid
from pcfunc.training import DistributedBatchNorm, FunctionDataModule, VaMoHModule, fit, make_trainer

TINY = dict(in_channels=1, encoder=[dict(out_channels=8, num_neighbors=4, num_centroids=24),
                                    dict(out_channels=8, num_neighbors=4, global_centroid=True)],
            latent_dim=4, num_components=2, hypernet_hidden=[16], generator_hidden=[8], num_frequencies=8,
            categorical_hidden=[8], flow_layers=2)


def dataset(n=12):
    grid = LatLonGrid.regular(7, 12)
    lat = torch.linspace(-1.2, 1.2, 7)
    lon = torch.linspace(0, 6.0, 12)
    g = torch.Generator().manual_seed(0)
    vals = []
    for i in range(n):
        a, b = torch.rand(2, generator=g)
        f = 0.5 + 0.3 * torch.cos(lat[:, None] * (1 + a)) * torch.sin(lon[None, :] + 3 * b)
        vals.append(f[..., None])
    data = [grid.to_data(v) for v in vals]
    for i, d in enumerate(data):
        d.item = torch.tensor([i])
    return data


class Record(pl.Callback):
    def __init__(self, path, kill_at, term_at=-1):
        self.path, self.kill_at, self.term_at = path, kill_at, term_at

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        step = trainer.global_step - 1
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "rank": trainer.global_rank, "loss": float(outputs["loss"]),
                                "items": batch.item.tolist(), "warmup": module.model.warmup}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == self.term_at:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_end(self, trainer, module):
        sums = {"params": float(sum(p.detach().double().sum() for p in module.model.parameters())),
                "sync_bn": sum(isinstance(m, DistributedBatchNorm) for m in module.modules()),
                "bn": sum(isinstance(m, torch.nn.BatchNorm1d) for m in module.modules())}
        Path(f"{self.path}.rank{trainer.global_rank}.json").write_text(json.dumps(sums))


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--kill-at", type=int, default=-1)
    p.add_argument("--term-at", type=int, default=-1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--record", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True, verbose=False)
    module = VaMoHModule.from_config("era5", lr=3e-3, warmup_steps=3, seed=1, **TINY)
    dm = FunctionDataModule(dataset(), batch_size=4, seed=2)
    trainer = make_trainer(a.out, max_steps=a.steps, checkpoint_every=2, devices=a.devices, accelerator="cpu",
                           progress_bar=False, tensorboard=False, log_every=1,
                           callbacks=[Record(a.record, a.kill_at, a.term_at)], limit_val_batches=0)
    fit(trainer, module, dm, resume=a.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
