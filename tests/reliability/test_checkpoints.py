"""Loading checkpoints: never code from the file, whatever the environment says; clear errors for what is not a
checkpoint of the module asked for (issue "Checkpoints a user can trust ...")."""

import pickle

import pytest
import torch

from pcfunc.training import FunctionDataModule, GASPModule, VaMoHModule, fit, make_trainer
from tests.training._train_tiny import TINY, dataset
from tests.training.test_training import _fit_gasp


class _Payload:
    """Unpickling this runs code: it creates the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def vamoh_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("vamoh")
    torch.manual_seed(0)
    module = VaMoHModule.from_config("era5", lr=1e-3, warmup_steps=1, seed=5, **TINY)
    trainer = make_trainer(out, max_steps=2, checkpoint_every=1, accelerator="cpu", progress_bar=False,
                           tensorboard=False, limit_val_batches=0)
    fit(trainer, module, FunctionDataModule(dataset(), batch_size=4))
    return out / "checkpoints" / "last.ckpt", module


def test_load_from_checkpoint_rebuilds_the_module(vamoh_ckpt):
    path, trained = vamoh_ckpt
    module = VaMoHModule.load_from_checkpoint(path)
    assert isinstance(module, VaMoHModule) and module.hparams.seed == 5 and module.hparams.lr == 1e-3
    for (name, a), b in zip(trained.model.state_dict().items(), module.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert VaMoHModule.load_from_checkpoint(path, lr=5e-4).hparams.lr == 5e-4


def test_gasp_load_from_checkpoint_rebuilds_the_module(tmp_path):
    trained, _ = _fit_gasp(tmp_path, 2)
    module = GASPModule.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert isinstance(module, GASPModule) and module.hparams.num_points == 40
    for (name, a), b in zip(trained.model.state_dict().items(), module.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="is a GASP checkpoint, not a VaMoH one"):
        VaMoHModule.load_model(tmp_path / "checkpoints" / "last.ckpt")


def _evil_checkpoint(tmp_path, checkpoint, monkeypatch):
    """A real checkpoint with a payload whose unpickling creates ``tmp_path / "pwned"``, written as a plain pickle
    (which torch.load reads with weights_only=False), and TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 set (it would make
    torch's default unsafe). Returns the file, the marker and the real checkpoint."""
    marker, evil = tmp_path / "pwned", tmp_path / "evil.ckpt"
    real = torch.load(checkpoint, weights_only=True)
    real["hyper_parameters"]["payload"] = _Payload(marker)
    with open(evil, "wb") as fh:
        pickle.dump(real, fh)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return evil, marker, real


def test_no_loading_path_runs_code_from_a_checkpoint(tmp_path, monkeypatch, vamoh_ckpt):
    evil, marker, _ = _evil_checkpoint(tmp_path, vamoh_ckpt[0], monkeypatch)
    for load in (VaMoHModule.load_from_checkpoint, VaMoHModule.load_model, GASPModule.load_from_checkpoint,
                 GASPModule.load_model):
        with pytest.raises(pickle.UnpicklingError, match="never runs code from a checkpoint"):
            load(evil)
        assert not marker.exists()


def test_the_trainers_own_loading_is_weights_only_whatever_the_environment_says(tmp_path, monkeypatch, vamoh_ckpt):
    # trainer.validate/test/fit(ckpt_path=...) go through the trainer's CheckpointIO, which Lightning calls with
    # weights_only=None: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 then made torch unpickle code.
    evil, marker, real = _evil_checkpoint(tmp_path, vamoh_ckpt[0], monkeypatch)
    module = VaMoHModule.from_config("era5", lr=1e-3, warmup_steps=1, seed=5, **TINY)
    trainer = make_trainer(tmp_path / "run", max_steps=2, accelerator="cpu", progress_bar=False, tensorboard=False)
    data = FunctionDataModule(dataset(), dataset(4), batch_size=4)
    with pytest.raises(pickle.UnpicklingError):
        trainer.validate(module, datamodule=data, ckpt_path=str(evil))
    assert not marker.exists()
    io = trainer.strategy.checkpoint_io
    with pytest.raises(ValueError, match="weights_only=True only"):
        io.load_checkpoint(vamoh_ckpt[0], weights_only=False)
    assert io.load_checkpoint(vamoh_ckpt[0])["global_step"] == real["global_step"]  # a real checkpoint loads


def test_errors_name_the_file_and_say_what_it_is(tmp_path, vamoh_ckpt):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.ckpt' is empty"):
        VaMoHModule.load_model(empty)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(vamoh_ckpt[0].read_bytes()[:4096])
    with pytest.raises(ValueError, match="truncated.ckpt' is not a readable torch file"):
        VaMoHModule.load_from_checkpoint(truncated)
    plain = tmp_path / "plain.pt"
    torch.save(vamoh_ckpt[1].model.state_dict(), plain)
    with pytest.raises(ValueError, match="plain.pt' is a plain state_dict"):
        VaMoHModule.load_model(plain)
    with pytest.raises(ValueError, match="is a VaMoH checkpoint, not a GASP one"):
        GASPModule.load_model(vamoh_ckpt[0])
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        VaMoHModule.load_model(tmp_path / "nope.ckpt")
    # One byte is a damaged file, not a malicious pickle; a CUDA map_location without CUDA says so.
    one = tmp_path / "one.ckpt"
    one.write_bytes(b"x")
    with pytest.raises(ValueError, match="one.ckpt' is not a readable torch file .*Unsupported operand"):
        VaMoHModule.load_model(one)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="map_location='cuda' but this machine has no CUDA device"):
            VaMoHModule.load_model(vamoh_ckpt[0], map_location="cuda")


def _fit_vamoh(out, steps, every, resume=False, overwrite=False):
    torch.manual_seed(0)
    module = VaMoHModule.from_config("era5", lr=1e-3, warmup_steps=1, seed=5, **TINY)
    trainer = make_trainer(out, max_steps=steps, checkpoint_every=every, accelerator="cpu", progress_bar=False,
                           tensorboard=False, limit_val_batches=0)
    fit(trainer, module, FunctionDataModule(dataset(), batch_size=4), resume=resume, overwrite=overwrite)
    return module


def test_last_checkpoint_is_the_final_model_not_the_last_scheduled_save(tmp_path):
    module = _fit_vamoh(tmp_path, steps=7, every=5)
    ckpts = tmp_path / "checkpoints"
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 7
    assert (ckpts / "step=5.ckpt").is_file() and (ckpts / "step=7.ckpt").is_file()
    model = VaMoHModule.load_model(ckpts / "last.ckpt")
    for (name, a), b in zip(module.model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_crash_during_a_save_keeps_the_previous_file_and_resume_falls_back(tmp_path, monkeypatch):
    from pcfunc.training import AtomicCheckpointIO, last_checkpoint
    from pcfunc.training import _trainer

    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def dying_save(obj, fh):  # half the bytes reach the disk, then the process "dies"
        fh.write(b"PK\x03\x04" + b"\x00" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(_trainer.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["global_step"] == 1  # the previous checkpoint, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temporary file left behind
    # A truncated last.ckpt (a crash with another writer): resume takes the newest step checkpoint that loads.
    _fit_vamoh(tmp_path / "run", steps=4, every=2)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.warns(UserWarning, match="skipping checkpoint .*last.ckpt"):
        assert last_checkpoint(tmp_path / "run").name == "step=4.ckpt"


def test_a_second_run_into_the_same_directory_is_refused_unless_asked(tmp_path):
    _fit_vamoh(tmp_path, steps=2, every=1)
    with pytest.raises(FileExistsError, match="checkpoint\\(s\\) of an earlier run"):
        _fit_vamoh(tmp_path, steps=2, every=1)
    _fit_vamoh(tmp_path, steps=3, every=3, overwrite=True)  # the earlier checkpoints deleted first
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step=3.ckpt"]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


@pytest.mark.parametrize("case", ["another checkpoint_every", "fell back to an older checkpoint"])
def test_a_resume_keeps_one_lineage_last_ckpt_is_the_newest_model(tmp_path, case):
    # Resumes that do not restore the checkpoint callback's state used to save the trained model as
    # last-v1.ckpt / step=N-v1.ckpt, while last.ckpt (what load_model and last_checkpoint read) kept the older one.
    from pcfunc.training import last_checkpoint

    ckpts = tmp_path / "checkpoints"
    _fit_vamoh(tmp_path, steps=4, every=2)
    if case == "fell back to an older checkpoint":
        (ckpts / "last.ckpt").write_bytes(b"PK\x03\x04")  # unreadable: resume takes step=4.ckpt
        with pytest.warns(UserWarning, match="skipping checkpoint"):
            module = _fit_vamoh(tmp_path, steps=8, every=2, resume=True)
    else:
        module = _fit_vamoh(tmp_path, steps=9, every=3, resume=True)
    steps = 8 if case.startswith("fell") else 9
    names = sorted(p.name for p in ckpts.iterdir())
    assert not [n for n in names if "-v" in n or n.endswith(".tmp")], names
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == steps
    assert last_checkpoint(tmp_path) == ckpts / "last.ckpt"
    model = VaMoHModule.load_model(ckpts / "last.ckpt")
    for (name, a), b in zip(module.model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_stale_temporary_files_of_a_killed_save_are_removed_at_the_next_start(tmp_path):
    ckpts = tmp_path / "checkpoints"
    _fit_vamoh(tmp_path, steps=2, every=2)
    stale = ckpts / ".step=4.ckpt.12345.tmp"
    stale.write_bytes(b"half a checkpoint")
    _fit_vamoh(tmp_path, steps=4, every=2, resume=True)
    assert not stale.exists()
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 4


def _flip_bytes_in_the_largest_tensor(path, count=64):
    """Flip ``count`` bytes in the middle of the largest stored tensor record of a torch zip archive."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_len + extra_len + info.file_size // 2 - count // 2
    for i in range(start, start + count):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_a_flipped_tensor_byte_is_an_error_naming_the_file_and_resume_falls_back(tmp_path):
    from pcfunc.training import AtomicCheckpointIO, last_checkpoint
    from pcfunc.training._checksum import DIGEST_KEY, tensor_digest

    _fit_vamoh(tmp_path, steps=4, every=2)
    last = tmp_path / "checkpoints" / "last.ckpt"
    good = torch.load(last, weights_only=True)
    assert good[DIGEST_KEY] == tensor_digest(good)  # written with every checkpoint
    _flip_bytes_in_the_largest_tensor(last)
    torch.load(last, weights_only=True)  # torch reads it without a word
    for load in (VaMoHModule.load_model, VaMoHModule.load_from_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(ValueError, match=r"last.ckpt' is corrupt: its tensors do not match the checksum"):
            load(last)
    with pytest.warns(UserWarning, match="skipping checkpoint .*last.ckpt.*corrupt"):
        assert last_checkpoint(tmp_path).name == "step=4.ckpt"
    # A checkpoint written before the checksums existed still loads.
    del good[DIGEST_KEY]
    torch.save(good, tmp_path / "old.ckpt")
    assert VaMoHModule.load_model(tmp_path / "old.ckpt") is not None


def test_ctrl_c_during_training_saves_the_step_and_raises_preempted(tmp_path):
    import lightning.pytorch as pl

    from pcfunc.training import RESUMABLE_EXIT_CODE, Preempted

    class CtrlC(pl.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == 3:
                raise KeyboardInterrupt

    torch.manual_seed(0)
    module = VaMoHModule.from_config("era5", lr=1e-3, warmup_steps=1, seed=5, **TINY)
    trainer = make_trainer(tmp_path, max_steps=8, checkpoint_every=5, accelerator="cpu", progress_bar=False,
                           tensorboard=False, limit_val_batches=0, callbacks=[CtrlC()])
    with pytest.raises(Preempted) as stop:
        fit(trainer, module, FunctionDataModule(dataset(), batch_size=4))
    assert stop.value.code == RESUMABLE_EXIT_CODE and stop.value.signal_name == "SIGINT" and stop.value.step == 3
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3


def test_resuming_with_another_batch_size_says_what_changes(tmp_path):
    _fit_vamoh(tmp_path, steps=2, every=2)
    torch.manual_seed(0)
    module = VaMoHModule.from_config("era5", lr=1e-3, warmup_steps=1, seed=5, **TINY)
    trainer = make_trainer(tmp_path, max_steps=4, checkpoint_every=2, accelerator="cpu", progress_bar=False,
                           tensorboard=False, limit_val_batches=0)
    with pytest.warns(UserWarning, match=r"resuming with batch size 4 -> 3: .*not bit-identical"):
        fit(trainer, module, FunctionDataModule(dataset(), batch_size=3), resume=True)
    assert trainer.global_step == 4
