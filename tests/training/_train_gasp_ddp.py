"""Trains a tiny GASP with 2 CPU processes (DDP, gloo); used by the GASP DDP test (run as a script)."""

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.nn.parallel import DistributedDataParallel

from pcfunc.training import DistributedBatchNorm, FunctionDataModule, GASPModule, fit, make_trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _train_tiny import dataset  # noqa: E402

TINY = dict(latent_dim=4, hypernet_hidden=[8], inr_hidden=[8, 8], num_frequencies=4, disc_channels=[4, 8],
            weight_hidden=[4])


class Record(pl.Callback):
    def __init__(self, path):
        self.path = path

    def on_train_start(self, trainer, module):
        self.wrappers = sorted(trainer.strategy.separate_wrappers or {})
        self.whole = isinstance(trainer.strategy.model, DistributedDataParallel)

    def on_train_end(self, trainer, module):
        out = {"params": float(sum(p.detach().double().sum() for p in module.model.parameters())),
               "gen": float(sum(p.detach().double().sum() for p in module.model.hypernet.parameters())),
               "sync_bn": sum(isinstance(m, DistributedBatchNorm) for m in module.modules()),
               "step": trainer.global_step, "wrappers": self.wrappers, "whole": self.whole}
        Path(f"{self.path}.rank{trainer.global_rank}.json").write_text(json.dumps(out))


def main():
    out, record = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    data = dataset(8)
    for d in data:
        d.x = d.x * 2 - 1
    module = GASPModule.from_config("era5", num_points=40, seed=3, **TINY)
    trainer = make_trainer(out, max_steps=6, checkpoint_every=2, devices=2, accelerator="cpu", progress_bar=False,
                           tensorboard=False, log_every=1, limit_val_batches=0, callbacks=[Record(record)])
    fit(trainer, module, FunctionDataModule(data, batch_size=2, seed=1))
    path = Path(f"{record}.rank{trainer.global_rank}.json")
    out = json.loads(path.read_text())
    # The strategy's teardown removed the wrappers and the routing.
    out["unwrapped_at_end"] = not module._wrappers and all("forward" not in vars(getattr(module.model, n))
                                                           for n in ("hypernet", "discriminator"))
    path.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
