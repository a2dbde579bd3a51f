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


def test_no_loading_path_runs_code_from_a_checkpoint(tmp_path, monkeypatch, vamoh_ckpt):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.ckpt"
    real = torch.load(vamoh_ckpt[0], weights_only=True)
    real["hyper_parameters"]["payload"] = _Payload(marker)
    with open(evil, "wb") as fh:
        pickle.dump(real, fh)  # a pickle torch.load reads with weights_only=False
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # would make torch's default unsafe
    for load in (VaMoHModule.load_from_checkpoint, VaMoHModule.load_model, GASPModule.load_from_checkpoint,
                 GASPModule.load_model):
        with pytest.raises(pickle.UnpicklingError, match="never runs code from a checkpoint"):
            load(evil)
        assert not marker.exists()


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
