"""Faults a long run meets, in one go: preemption (SIGTERM mid-training, then ``--resume``), a full disk during a
save, a truncated and a bit-flipped checkpoint, and a data file replaced under a lazy dataset. Prints one table:
each case, what pcfunc must do, and what it did.

Each training is a small VaMoH (the tests' tiny configuration) on synthetic sphere functions, 8 optimiser steps,
checkpoints every 2 steps, in a fresh process where a signal is involved.

Example::

    python benchmarks/faults.py
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch

STEPS, EVERY = 8, 2
TINY = dict(in_channels=1, encoder=[dict(out_channels=8, num_neighbors=4, num_centroids=24),
                                    dict(out_channels=8, num_neighbors=4, global_centroid=True)],
            latent_dim=4, num_components=2, hypernet_hidden=[16], generator_hidden=[8], num_frequencies=8,
            categorical_hidden=[8], flow_layers=2)


def _data(n: int = 12) -> list:
    from pcfunc.data import LatLonGrid

    grid, g = LatLonGrid.regular(7, 12), torch.Generator().manual_seed(0)
    lat, lon = torch.linspace(-1.2, 1.2, 7), torch.linspace(0, 6.0, 12)
    out = []
    for _ in range(n):
        a, b = torch.rand(2, generator=g)
        f = 0.5 + 0.3 * torch.cos(lat[:, None] * (1 + a)) * torch.sin(lon[None] + 3 * b)
        out.append(grid.to_data(f[..., None]))
    return out


def train(out: Path, resume: bool = False, term_at: int = -1) -> float:
    """Train the tiny model into ``out`` (SIGTERM to itself after step ``term_at``); the parameters' sum."""
    import lightning.pytorch as pl

    from pcfunc.training import FunctionDataModule, VaMoHModule, fit, make_trainer

    class Term(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step - 1 == term_at:
                os.kill(os.getpid(), signal.SIGTERM)

    torch.set_num_threads(1)
    pl.seed_everything(0, workers=True, verbose=False)
    module = VaMoHModule.from_config("era5", lr=3e-3, warmup_steps=3, seed=1, **TINY)
    trainer = make_trainer(out, max_steps=STEPS, checkpoint_every=EVERY, accelerator="cpu", progress_bar=False,
                           tensorboard=False, callbacks=[Term()], limit_val_batches=0)
    fit(trainer, module, FunctionDataModule(_data(), batch_size=4, seed=2), resume=resume)
    return float(sum(p.detach().double().sum() for p in module.model.parameters()))


def _run(out: Path, *extra: str) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, __file__, "--case-train", str(out), *extra], env=env,
                          capture_output=True, text=True, timeout=900)


def _sum(p: subprocess.CompletedProcess) -> Optional[float]:
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("params ")]
    return float(lines[-1].split()[1]) if lines else None


def preemption(tmp: Path) -> Tuple[str, bool]:
    from pcfunc.training import RESUMABLE_EXIT_CODE

    ref = _sum(_run(tmp / "ref"))
    killed = _run(tmp / "pre", "--term-at", "4")
    step = torch.load(tmp / "pre" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    again = _sum(_run(tmp / "pre", "--resume"))
    ok = killed.returncode == RESUMABLE_EXIT_CODE and step == 5 and again is not None and abs(again - ref) < 1e-6
    return (f"exit {killed.returncode}, last.ckpt at step {step}, resumed parameter sum {again:.6f} vs "
            f"uninterrupted {ref:.6f}"), ok


def disk_full(tmp: Path) -> Tuple[str, bool]:
    from pcfunc.training import AtomicCheckpointIO
    from pcfunc.training import _trainer

    io, path = AtomicCheckpointIO(), tmp / "full" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    real = _trainer.torch.save

    def full(obj, fh):
        fh.write(b"PK\x03\x04" + b"\x00" * 64)
        raise OSError(errno.ENOSPC, "No space left on device")

    _trainer.torch.save = full
    try:
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
        raised = False
    except OSError:
        raised = True
    finally:
        _trainer.torch.save = real
    kept = torch.load(path, weights_only=True)["global_step"]
    left = sorted(p.name for p in path.parent.iterdir())
    return f"save raised: {raised}; last.ckpt still step {kept}; files {left}", raised and kept == 1 and left == [
        "last.ckpt"]


def _damaged(tmp: Path, name: str, damage: Callable[[Path], None]) -> Tuple[str, bool]:
    from pcfunc.training import VaMoHModule, last_checkpoint

    out = tmp / name
    _run(out)
    last = out / "checkpoints" / "last.ckpt"
    damage(last)
    try:
        VaMoHModule.load_model(last)
        message = "loaded"
    except ValueError as err:
        said = next((k for k in ("is corrupt", "is not a readable torch file") if k in str(err)), str(err)[:40])
        message = f"ValueError: last.ckpt {said}" + ("" if str(last) in str(err) else " (file not named)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = last_checkpoint(out)
    ok = message != "loaded" and fallback is not None and fallback.name == f"step={STEPS}.ckpt" and caught
    return f"load_model: {message}; resume takes {fallback.name if fallback else None}, with a warning", ok


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:4096])


def _flip(path: Path) -> None:
    import struct

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    n, e = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + n + e + info.file_size // 2 - 32
    for i in range(start, start + 64):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def replaced_file(tmp: Path) -> Tuple[str, bool]:
    import numpy as np
    import xarray as xr

    from pcfunc.data import LazyERA5Dataset, MinMaxNormalizer

    lat, lon = np.linspace(90, -90, 7), np.arange(-180.0, 180.0, 40.0)
    values = (280 + 10 * np.random.default_rng(0).normal(size=(3, 7, 9))).astype(np.float32)
    times = np.datetime64("2020-01-01", "ns") + np.arange(3).astype("timedelta64[h]")
    ds = xr.Dataset({"t2m": (("time", "latitude", "longitude"), values, {"units": "K"})},
                    coords={"time": times, "latitude": lat, "longitude": lon})
    path = tmp / "era5.nc"
    ds.to_netcdf(path)
    lazy = LazyERA5Dataset(path, "t2m", normalizer=MinMaxNormalizer(low=200.0, high=350.0))
    lazy[0]
    lazy.close()
    os.remove(path)
    ds.assign_coords(longitude=ds.longitude % 360).sortby("longitude").to_netcdf(path)  # 0..360 layout
    try:
        lazy[0]
        return "read the new file with the old grid's indices", False
    except RuntimeError as err:
        return f"RuntimeError: era5.nc {str(err).split(' ', 1)[1][:55]}...", True


CASES = [
    ("SIGTERM mid-training, then --resume", "exit 75, step saved, resume = uninterrupted", preemption),
    ("disk full during a save", "previous last.ckpt whole, no temporary file", disk_full),
    ("truncated last.ckpt", "error naming the file; resume falls back", lambda t: _damaged(t, "trunc", _truncate)),
    ("64 bytes flipped in a tensor", "error naming the file; resume falls back", lambda t: _damaged(t, "flip", _flip)),
    ("data file replaced under a lazy dataset", "error at the next read", replaced_file),
]


def main(argv: Optional[Sequence[str]] = None) -> List[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case-train", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--term-at", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.case_train is not None:
        print(f"params {train(a.case_train, a.resume, a.term_at)!r}", flush=True)
        return []
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for i, (case, want, fn) in enumerate(CASES):
            tmp = Path(d) / str(i)
            tmp.mkdir()
            got, ok = fn(tmp)
            rows.append(dict(case=case, expected=want, observed=got, ok=bool(ok)))
    print("| case | pcfunc must | observed | ok |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['case']} | {r['expected']} | {r['observed']} | {'yes' if r['ok'] else 'NO'} |")
    print(json.dumps({"all_ok": all(r["ok"] for r in rows)}))
    return rows


if __name__ == "__main__":
    main()
