import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import pcfunc.nn._kernels as _kernels
from pcfunc.training import (DistributedBatchNorm, FunctionDataModule, NonFiniteLossError, StepLoader, VaMoHModule,
                             convert_sync_batchnorm, fit, make_trainer, resolve_precision, step_generator)

from ._train_tiny import TINY, dataset

SCRIPT = Path(__file__).with_name("_train_tiny.py")
ROOT = Path(__file__).resolve().parents[2]


def run_script(*args, check=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600)
    if check and p.returncode != 0:
        raise AssertionError(f"rc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_step_loader_is_deterministic_sharded_and_resumes_at_position():
    data = dataset(10)
    full = StepLoader(data, 3, seed=4)
    assert len(full) == 4
    epoch0 = [b.item.tolist() for b in full]
    assert sorted(sum(epoch0, [])) == list(range(10))
    assert [b.item.tolist() for b in StepLoader(data, 3, seed=4)] == epoch0
    # Position 5 = epoch 1, batch 1: the same batches an uninterrupted run sees from there.
    pos = {"n": 0}
    loader = StepLoader(data, 3, seed=4, position=lambda: pos["n"])
    run = []
    for epoch in range(2):
        for b in loader:
            run.append(b.item.tolist())
            pos["n"] += 1
    pos["n"] = 5
    assert [b.item.tolist() for b in loader] == run[5:8]
    # Two ranks: equal-length disjoint shards of each epoch's permutation.
    shards = [StepLoader(data, 2, seed=4, rank=lambda r=r: (r, 2)) for r in range(2)]
    items = [sum((b.item.tolist() for b in s), []) for s in shards]
    assert len(items[0]) == len(items[1]) == 5 and not set(items[0]) & set(items[1])
    with pytest.raises(ValueError, match="batch_size"):
        StepLoader(data, 0)


def test_step_generator_is_a_function_of_seed_step_rank():
    a = torch.rand(3, generator=step_generator(1, 7, 0))
    assert torch.equal(a, torch.rand(3, generator=step_generator(1, 7, 0)))
    assert not torch.equal(a, torch.rand(3, generator=step_generator(1, 8, 0)))
    assert not torch.equal(a, torch.rand(3, generator=step_generator(1, 7, 1)))


@pytest.mark.slow
def test_resume_after_kill_repeats_the_uninterrupted_losses(tmp_path):
    run_script("--out", str(tmp_path / "a"), "--record", str(tmp_path / "a.jsonl"))
    p = run_script("--out", str(tmp_path / "b"), "--record", str(tmp_path / "b.jsonl"), "--kill-at", "4", check=False)
    assert p.returncode == -9  # killed by SIGKILL mid-run
    assert (tmp_path / "b" / "checkpoints" / "last.ckpt").is_file()
    run_script("--out", str(tmp_path / "b"), "--record", str(tmp_path / "b.jsonl"), "--resume")
    ref = {r["step"]: r for r in records(tmp_path / "a.jsonl")}
    got = {}
    for r in records(tmp_path / "b.jsonl"):  # steps re-run after the resume overwrite the killed run's
        got[r["step"]] = r
    assert sorted(got) == sorted(ref) == list(range(8))
    for s in range(8):
        assert got[s]["items"] == ref[s]["items"], s
        assert got[s]["warmup"] == ref[s]["warmup"] == (s < 3)
        assert got[s]["loss"] == pytest.approx(ref[s]["loss"], rel=1e-6, abs=1e-6), s
    a = json.loads((tmp_path / "a.jsonl.rank0.json").read_text())
    b = json.loads((tmp_path / "b.jsonl.rank0.json").read_text())
    assert b["params"] == pytest.approx(a["params"], rel=1e-6)


@pytest.mark.slow
def test_sigterm_saves_the_step_exits_resumable_and_resume_matches_the_uninterrupted_run(tmp_path):
    from pcfunc.training import RESUMABLE_EXIT_CODE

    run_script("--out", str(tmp_path / "a"), "--record", str(tmp_path / "a.jsonl"))
    # SIGTERM after step 4 (of 0..7), between the scheduled checkpoints (every 2 steps): the step is saved.
    p = run_script("--out", str(tmp_path / "b"), "--record", str(tmp_path / "b.jsonl"), "--term-at", "4",
                   check=False)
    assert p.returncode == RESUMABLE_EXIT_CODE == 75, p.stderr[-2000:]
    assert "SIGTERM at step 5" in p.stderr and "--resume" in p.stderr
    last = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 5
    assert max(r["step"] for r in records(tmp_path / "b.jsonl")) == 4  # nothing trained after the signal
    run_script("--out", str(tmp_path / "b"), "--record", str(tmp_path / "b.jsonl"), "--resume")
    got = {r["step"]: r for r in records(tmp_path / "b.jsonl")}
    ref = {r["step"]: r for r in records(tmp_path / "a.jsonl")}
    assert sorted(got) == sorted(ref) == list(range(8))
    for s in range(8):
        assert got[s]["items"] == ref[s]["items"], s
        assert got[s]["loss"] == pytest.approx(ref[s]["loss"], rel=1e-6, abs=1e-6), s
    a = json.loads((tmp_path / "a.jsonl.rank0.json").read_text())
    b = json.loads((tmp_path / "b.jsonl.rank0.json").read_text())
    assert b["params"] == pytest.approx(a["params"], rel=1e-6)
    # One lineage: no versioned files.
    assert not list((tmp_path / "b" / "checkpoints").glob("*-v*.ckpt"))


@pytest.mark.slow
def test_ddp_two_cpu_processes_gloo(tmp_path):
    run_script("--out", str(tmp_path / "d"), "--record", str(tmp_path / "d.jsonl"), "--devices", "2",
               "--steps", "4")
    rec = records(tmp_path / "d.jsonl")
    by_step = {}
    for r in rec:
        by_step.setdefault(r["step"], {})[r["rank"]] = r["items"]
    assert sorted(by_step) == [0, 1, 2, 3]
    for s, ranks in by_step.items():
        assert sorted(ranks) == [0, 1]
        assert not set(ranks[0]) & set(ranks[1])  # each rank its own shard
    sums = [json.loads((tmp_path / f"d.jsonl.rank{r}.json").read_text()) for r in range(2)]
    assert sums[0]["params"] == sums[1]["params"]  # replicas stay identical
    assert sums[0]["sync_bn"] == 10 and sums[0]["bn"] == 0  # every BatchNorm synchronised


def _bn_worker(rank, world, port, x, out):
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    bn = convert_sync_batchnorm(torch.nn.Sequential(torch.nn.BatchNorm1d(3)))[0]
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    part = x[:5].clone() if rank == 0 else x[5:].clone()  # unequal shares: 5 and 9 rows
    part.requires_grad_(True)
    y = bn(part)
    (y * torch.arange(1.0, 4.0)).pow(2).sum().backward()
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    # bfloat16 input (precision="bf16-mixed") far from zero: the statistics are still float32 ones.
    low = (x[:5] if rank == 0 else x[5:]).add(20.0).bfloat16()
    y_low = bn(low)
    out[rank] = (y.detach(), part.grad, *stats, bn.weight.grad, y_low.detach())
    dist.destroy_process_group()


def test_distributed_batchnorm_equals_full_batch_batchnorm():
    x = torch.randn(14, 3, dtype=torch.float32) * 3 + 1
    port = 29500 + os.getpid() % 1000
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_bn_worker, args=(2, port, x, out), nprocs=2, join=True)
        res = dict(out)
    ref = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    xr = x.clone().requires_grad_(True)
    y = ref(xr)
    (y * torch.arange(1.0, 4.0)).pow(2).sum().backward()
    torch.testing.assert_close(torch.cat([res[0][0], res[1][0]]), y.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([res[0][1], res[1][1]]), xr.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res[0][2], ref.running_mean)
    torch.testing.assert_close(res[0][3], ref.running_var, rtol=1e-4, atol=1e-5)
    # Each rank's weight gradient covers its share; their sum (what DDP reduces) is the full gradient.
    torch.testing.assert_close(res[0][4] + res[1][4], ref.weight.grad, rtol=1e-4, atol=1e-4)
    low = torch.cat([res[0][5], res[1][5]])
    assert low.dtype == torch.bfloat16
    ref_low = torch.nn.functional.batch_norm(x.add(20.0).bfloat16().float(), None, None, ref.weight.detach(),
                                             ref.bias.detach(), training=True)
    torch.testing.assert_close(low.float(), ref_low, rtol=0, atol=0.05)  # bfloat16 sums of squares: errors of ~1


def test_batchnorm_sync_plugin_converts_and_reverts(tmp_path):
    from pcfunc.training import BatchNormSync

    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3),
                              torch.nn.Sequential(torch.nn.BatchNorm1d(3)))
    with torch.no_grad():
        net[1].running_mean.fill_(0.3)
        net[2][0].weight.fill_(2.0)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for device, cls in (("cuda", torch.nn.SyncBatchNorm), ("cpu", DistributedBatchNorm)):
        synced = BatchNormSync(device).apply(net)
        assert isinstance(synced[1], cls) and isinstance(synced[2][0], cls), device
        back = BatchNormSync(device).revert(synced)
        assert type(back[1]) is torch.nn.BatchNorm1d and type(back[2][0]) is torch.nn.BatchNorm1d
        for k, v in back.state_dict().items():
            torch.testing.assert_close(v, state[k], msg=k)
        net = back
    # make_trainer passes the plugin (Lightning applies it under a distributed strategy).
    trainer = make_trainer(tmp_path, max_steps=1, accelerator="cpu", progress_bar=False, tensorboard=False)
    assert isinstance(trainer._accelerator_connector._layer_sync, BatchNormSync)


def test_distributed_batchnorm_is_batchnorm_outside_ddp():
    bn = torch.nn.BatchNorm1d(4)
    bn.running_mean.fill_(0.3)
    conv = convert_sync_batchnorm(torch.nn.Sequential(bn))[0]
    assert isinstance(conv, DistributedBatchNorm)
    x = torch.randn(6, 4)
    ref = torch.nn.BatchNorm1d(4)
    ref.running_mean.fill_(0.3)
    torch.testing.assert_close(conv(x), ref(x))
    torch.testing.assert_close(conv.running_mean, ref.running_mean)


def _keep_a_gradient_buffer():
    # A freed buffer in the pool of pcfunc.nn._kernels.wide_linear, as a large hypernetwork leaves after a step.
    _kernels._pool._give_back((1 << 20, torch.float32), np.empty(1 << 20, dtype=np.float32))
    assert _kernels._pool.num_free() == 1


def _module():
    torch.manual_seed(0)
    return VaMoHModule.from_config("era5", lr=1e-3, warmup_steps=1, seed=0, **TINY)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    module = _module()
    elbo = module.model.elbo
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = elbo(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            out.loss = out.loss * float("nan")
        return out

    module.model.elbo = poisoned
    trainer = make_trainer(tmp_path, max_steps=6, checkpoint_every=1, accelerator="cpu", progress_bar=False,
                           tensorboard=False, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match="non-finite training loss .* at step 2"):
        fit(trainer, module, FunctionDataModule(dataset(), batch_size=4))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    assert state["global_step"] == 2
    assert all(bool(torch.isfinite(v).all()) for v in state["state_dict"].values() if v.is_floating_point())
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())


def test_train_logs_checkpoints_and_load_model(tmp_path):
    module = _module()
    dm = FunctionDataModule(dataset(), val=dataset(4), batch_size=4)
    trainer = make_trainer(tmp_path, max_epochs=2, checkpoint_every=2, accelerator="cpu", progress_bar=False,
                           log_every=1, gradient_clip_val=10.0)
    _keep_a_gradient_buffer()
    fit(trainer, module, dm)
    assert _kernels._pool.num_free() == 0  # the recycled weight-gradient buffers go back when training ends
    assert trainer.global_step == 6 and not module.model.warmup
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert {"last.ckpt", "step=2.ckpt", "step=4.ckpt", "step=6.ckpt"} <= set(names)
    csv = next((tmp_path / "logs" / "csv").glob("version_*/metrics.csv")).read_text()
    header = csv.splitlines()[0].split(",")
    for col in ("train/elbo", "train/kl_z", "train/kl_c", "train/grad_norm", "val/psnr", "val/rmse", "loss"):
        assert col in header, col
    assert list((tmp_path / "logs" / "tensorboard").rglob("events.out.tfevents*"))
    model = VaMoHModule.load_model(tmp_path / "checkpoints" / "last.ckpt")
    batch = next(iter(StepLoader(dataset(4), 4, shuffle=False)))
    torch.testing.assert_close(model.reconstruct(batch), module.model.eval().reconstruct(batch))
    assert not model.warmup
    with pytest.raises(FileNotFoundError, match="resume checkpoint"):
        fit(trainer, module, dm, resume=tmp_path / "nope.ckpt")


def test_fine_supervision_trains_on_the_target_points(tmp_path):
    from pcfunc.data import ERA5Dataset

    from .._fields import fine_and_coarse

    fine, coarse, norm = fine_and_coarse(6)
    module = _module()
    elbo, seen = module.model.elbo, []

    def spy(batch, **kwargs):
        seen.append(kwargs.get("target"))
        return elbo(batch, **kwargs)

    module.model.elbo = spy
    trainer = make_trainer(tmp_path, max_steps=2, checkpoint_every=10, accelerator="cpu", progress_bar=False,
                           tensorboard=False, limit_val_batches=0, log_every=1)
    ds = ERA5Dataset(coarse, norm, target=fine, target_points=50, generator=torch.Generator().manual_seed(0))
    fit(trainer, module, FunctionDataModule(ds, batch_size=3))
    assert len(seen) == 2 and all(t is not None and t.x.size(0) == 150 for t in seen)
    assert seen[0].batch.tolist() == [0] * 50 + [1] * 50 + [2] * 50


def test_training_budget_steps_by_default_epochs_or_time_on_request():
    from pcfunc.training import training_budget

    assert training_budget(1500) == {"max_steps": 1500, "max_epochs": 1_000_000}
    assert training_budget(1500, steps=10) == {"max_steps": 10, "max_epochs": 1_000_000}
    assert training_budget(1500, minutes=2.5) == {"max_time": {"minutes": 2.5}, "max_epochs": 1_000_000}
    assert training_budget(1500, steps=10, minutes=2.5) == {"max_steps": 10, "max_epochs": 1_000_000,
                                                            "max_time": {"minutes": 2.5}}
    assert training_budget(1500, steps=10, epochs=3) == {"max_epochs": 3}
    with pytest.raises(ValueError, match="steps"):
        training_budget(1500, steps=0)
    with pytest.raises(ValueError, match="minutes"):
        training_budget(1500, minutes=-1)


def test_module_errors():
    with pytest.raises(TypeError, match="model must be a VaMoH"):
        VaMoHModule(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="lr"):
        VaMoHModule(_module().model, lr=0)
    with pytest.raises(ValueError, match="checkpoint_every"):
        make_trainer("/tmp/x", checkpoint_every=0)


GASP_TINY = dict(latent_dim=4, hypernet_hidden=[8], inr_hidden=[8, 8], num_frequencies=4, disc_channels=[4, 8],
                 weight_hidden=[4])


def _gasp_data(n=8):
    data = dataset(n)
    for d in data:
        d.x = d.x * 2 - 1  # GASP features in [-1, 1]
    return data


def _fit_gasp(out, steps, resume=False):
    from pcfunc.training import GASPModule

    torch.manual_seed(0)
    module = GASPModule.from_config("era5", num_points=40, seed=3, **GASP_TINY)
    trainer = make_trainer(out, max_steps=steps, checkpoint_every=2, accelerator="cpu", progress_bar=False,
                           tensorboard=False, log_every=1, limit_val_batches=0)
    fit(trainer, module, FunctionDataModule(_gasp_data(), batch_size=4, seed=1), resume=resume)
    return module, trainer


def test_gasp_module_alternates_updates_and_resumes_exactly(tmp_path):
    from pcfunc.training import GASPModule

    _keep_a_gradient_buffer()
    full, trainer = _fit_gasp(tmp_path / "a", 12)  # 6 batches, two optimiser steps each
    assert _kernels._pool.num_free() == 0
    assert trainer.global_step == 12
    csv = next((tmp_path / "a" / "logs" / "csv").glob("version_*/metrics.csv")).read_text().splitlines()
    header = csv[0].split(",")
    for col in ("train/d_loss", "train/r1", "train/g_loss", "train/d_real", "train/d_fake"):
        assert col in header
    _fit_gasp(tmp_path / "b", 6)  # 3 batches, then a new process-like run resumes
    resumed, _ = _fit_gasp(tmp_path / "b", 12, resume=True)
    for (name, p), q in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    model = GASPModule.load_model(str(tmp_path / "a" / "checkpoints" / "last.ckpt"))
    z = torch.zeros(1, 4)
    from pcfunc.data import LatLonGrid

    pos = LatLonGrid.regular(7, 12).pos
    torch.testing.assert_close(model.generate(z, pos), full.model.eval().generate(z, pos))


@pytest.mark.slow
def test_gasp_ddp_two_cpu_processes(tmp_path):
    # One DDP wrapper per network (pcfunc's DDPStrategy), R1's double backward included; both replicas must
    # end identical, and the wrappers are removed after training.
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    script = Path(__file__).with_name("_train_gasp_ddp.py")
    p = subprocess.run([sys.executable, str(script), str(tmp_path / "g"), str(tmp_path / "rec")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rec.rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["step"] == 6 and ranks[0]["sync_bn"] == 4
    assert ranks[0]["wrappers"] == ["discriminator", "hypernet"] and not ranks[0]["whole"]
    assert ranks[0]["unwrapped_at_end"]


def test_resolve_precision_follows_native_bfloat16(monkeypatch):
    assert resolve_precision("32-true") == "32-true" and resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    for amx, avx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx: v, raising=False)
        assert resolve_precision("auto", "cpu") == ("bf16-mixed" if amx or avx else "32-true")

    def broken():
        raise RuntimeError("changed")

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", broken, raising=False)
    assert resolve_precision("auto", "cpu") == "32-true"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("16-mixed")


def test_the_console_is_quiet_unless_asked(tmp_path, caplog):
    # Lightning's hardware summary and tips are hidden while pcfunc builds a trainer; quiet=False shows them.
    import logging

    from pcfunc.training import make_trainer

    with caplog.at_level(logging.INFO):
        make_trainer(tmp_path / "a", max_steps=1, accelerator="cpu", progress_bar=False, tensorboard=False)
    assert not any("GPU available" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        make_trainer(tmp_path / "b", max_steps=1, accelerator="cpu", progress_bar=False, tensorboard=False,
                     quiet=False)
    assert any("GPU available" in r.getMessage() for r in caplog.records)
    assert logging.getLogger("lightning.pytorch.utilities.rank_zero").level == logging.NOTSET  # restored after
