"""The Lightning wrapper of :class:`~pcfunc.models.VaMoH`: optimisation, warm-up schedule, logging, checks."""

from __future__ import annotations

import hashlib
import math
import pickle
from pathlib import Path
from typing import Any, Dict, Optional, Union

import lightning.pytorch as pl
import torch
from torch import Tensor

from ..metrics import psnr, rmse
from ..models import VaMoH
from ..nn._kernels import release_gradient_buffers
from ._checksum import verify_digest

__all__ = ["VaMoHModule", "NonFiniteLossError", "step_generator"]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss or gradient; the parameters were not updated with it."""


_KIND_HPARAMS = {"GASP": "lr_generator", "VaMoH": "warmup_steps"}  # a hyperparameter only that module saves


def read_checkpoint(checkpoint: Union[str, Path], cls: Any, map_location: Union[str, torch.device] = "cpu"
                    ) -> Dict[str, Any]:
    """A Lightning checkpoint of a ``cls`` module, read with ``torch.load(weights_only=True)`` (never code from
    the file, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says), with errors that name the file and say what
    it is instead: missing, empty or truncated, not a checkpoint, a plain ``state_dict``, another model's."""
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"checkpoint {str(path)!r} is empty (0 bytes): a save that did not finish?")
    where = str(map_location) if isinstance(map_location, (str, torch.device)) else ""
    if where.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"map_location={map_location!r} but this machine has no CUDA device: load {str(path)!r} "
                         "with map_location='cpu'")
    try:
        # weights_only passed explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD overrides only torch's default.
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):  # neither a zip nor a pickle
            raise ValueError(f"checkpoint {str(path)!r} is not a readable torch file (truncated or not a "
                             f"checkpoint: {str(err).split('WeightsUnpickler error:')[-1].strip()[:120]})") from None
        raise pickle.UnpicklingError(f"{str(path)!r} holds objects other than tensors and plain values; pcfunc "
                                     f"never runs code from a checkpoint (weights_only=True): {err}") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"checkpoint {str(path)!r} is not a readable torch file (truncated or not a checkpoint: "
                         f"{type(err).__name__}: {str(err)[:200]})") from None
    verify_digest(ckpt, path)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise ValueError(f"{str(path)!r} is a plain state_dict, not a training checkpoint: build the model and "
                             f"call model.load_state_dict(torch.load(path, weights_only=True))")
        raise ValueError(f"{str(path)!r} is not a Lightning checkpoint (no 'state_dict' entry)")
    hp = ckpt.get("hyper_parameters") or {}
    want = cls.__name__
    for kind, key in _KIND_HPARAMS.items():
        if kind != want and key in hp and _KIND_HPARAMS[want] not in hp:
            raise ValueError(f"{str(path)!r} is a {kind} checkpoint, not a {want} one: load it with "
                             f"{kind}Module.load_model")
    return ckpt


def load_trained_model(checkpoint: Union[str, Path], cls: Any, model: Optional[torch.nn.Module] = None,
                       map_location: Union[str, torch.device] = "cpu") -> Any:
    """The ``model.*`` weights of a Lightning checkpoint (``torch.load(weights_only=True)``) loaded into ``model``,
    or into ``cls.from_config(**model_config)`` rebuilt from the checkpoint's hyperparameters; in eval mode."""
    return _model_from(read_checkpoint(checkpoint, cls, map_location), checkpoint, cls, model)


def _model_from(ckpt: Dict[str, Any], checkpoint: Any, cls: Any, model: Optional[torch.nn.Module]) -> Any:
    if model is None:
        cfg = dict((ckpt.get("hyper_parameters") or {}).get("model_config") or {})
        if "name" not in cfg:
            raise ValueError(f"{checkpoint} has no model_config to rebuild the model from; pass model=")
        model = cls.from_config(cfg.pop("name"), **cfg)
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.eval()


def module_from_checkpoint(module_cls: Any, model_cls: Any, checkpoint: Union[str, Path],
                           map_location: Union[str, torch.device] = "cpu", **overrides: Any) -> Any:
    """``module_cls(model, **hyperparameters)`` from a checkpoint read with ``weights_only=True``: the model rebuilt
    from its ``model_config`` and loaded, the other hyperparameters as saved unless given in ``overrides``."""
    ckpt = read_checkpoint(checkpoint, model_cls, map_location)
    model = _model_from(ckpt, checkpoint, model_cls, None).train()
    hp = {**dict(ckpt.get("hyper_parameters") or {}), **overrides}
    return module_cls(model, **hp)


def _target(batch: Any) -> Any:
    """Fine supervision: the batch's target points (:class:`~pcfunc.data.ERA5Dataset` with ``target=``), if any."""
    if getattr(batch, "target_x", None) is None:
        return None
    from ..data import target_points

    return target_points(batch)


def step_generator(seed: int, step: int, rank: int = 0, device: Union[str, torch.device] = "cpu") -> torch.Generator:
    """A generator seeded from ``(seed, step, rank)``: each step's randomness (point dropout, the latent
    sample) is then a pure function of where the run is, so a resumed run repeats it exactly."""
    digest = hashlib.sha256(f"{seed}:{step}:{rank}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


class VaMoHModule(pl.LightningModule):
    r"""Trains a :class:`~pcfunc.models.VaMoH` with PyTorch Lightning (Algorithm 1 of the VaMoH paper).

    The model holds all the math; this module adds the optimiser (Adam; fused, except with gradient
    clipping under mixed precision, which Lightning does not allow for fused optimisers), the warm-up
    schedule (the :math:`\mathcal N(0, I)` prior and uniform categorical prior for the first
    ``warmup_steps`` optimiser steps, then the planar flow), logging of the ELBO terms, and guards: a
    non-finite loss or gradient raises :class:`NonFiniteLossError` before the optimiser step, so the
    parameters and every checkpoint written so far stay finite. Validation logs the ELBO and the
    reconstruction PSNR (VaMoH App. B.3) and RMSE of the posterior-mean reconstruction.

    Randomness inside a step comes from :func:`step_generator` ``(seed, global_step, rank)``, so a run
    resumed from a checkpoint repeats the uninterrupted run's losses.

    Args:
        model (VaMoH): The model; or build it with :meth:`from_config`.
        lr (float): Adam learning rate (Table 3: ``1e-4`` for ERA5). (default: ``1e-4``)
        warmup_steps (int): Optimiser steps with the standard prior. (default: ``0``)
        seed (int): Seed of the per-step randomness. (default: ``0``)
        model_config (dict, optional): Plain keyword arguments that rebuild the model
            (``{"name": ..., **overrides}`` for :meth:`VaMoH.from_config <pcfunc.models.VaMoH.from_config>`); saved in checkpoints so
            :meth:`load_model` can rebuild it.
    """

    def __init__(self, model: VaMoH, lr: float = 1e-4, warmup_steps: int = 0, seed: int = 0,
                 model_config: Optional[Dict[str, Any]] = None, recalibrate_fields: int = 64) -> None:
        super().__init__()
        if not isinstance(model, VaMoH):
            raise TypeError(f"model must be a VaMoH, got {type(model).__name__}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative integer, got {warmup_steps!r}")
        if isinstance(recalibrate_fields, bool) or not isinstance(recalibrate_fields, int) or recalibrate_fields < 0:
            raise ValueError(f"recalibrate_fields must be a non-negative integer, got {recalibrate_fields!r}")
        self.model = model
        self.save_hyperparameters({"lr": float(lr), "warmup_steps": warmup_steps, "seed": int(seed),
                                   "model_config": model_config, "recalibrate_fields": recalibrate_fields})

    @classmethod
    def from_config(cls, name: str, lr: Optional[float] = None, warmup_steps: int = 0, seed: int = 0,
                    **overrides: Any) -> "VaMoHModule":
        """A module around ``VaMoH.from_config(name, **overrides)``, with Table 3's learning rate by default.
        ``overrides`` must be plain values (numbers, strings, lists, dicts) to be saved in checkpoints."""
        from ..models import vamoh_config

        model = VaMoH.from_config(name, **overrides)
        lr = vamoh_config(name)["training"]["lr"] if lr is None else lr
        return cls(model, lr, warmup_steps, seed, model_config={"name": name, **overrides})

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Union[str, Path], map_location: Any = "cpu",  # type: ignore[override]
                             **overrides: Any) -> "VaMoHModule":
        """The module of a checkpoint, to continue training or evaluate: the model rebuilt from the saved
        ``model_config`` and loaded, the module's hyperparameters as saved unless given in ``overrides``.

        Read with ``torch.load(weights_only=True)`` always, unlike Lightning's own method (which follows torch's
        default and so the ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` variable): no code runs from the file. The
        optimiser state is restored by ``fit(..., resume=...)``, not here.
        """
        return module_from_checkpoint(cls, VaMoH, checkpoint_path, map_location, **overrides)

    @staticmethod
    def load_model(checkpoint: Union[str, Path], model: Optional[VaMoH] = None,
                   map_location: Union[str, torch.device] = "cpu") -> VaMoH:
        """The trained :class:`~pcfunc.models.VaMoH` of a checkpoint, read with ``torch.load(weights_only=True)``.

        Args:
            checkpoint: Path of a ``.ckpt`` file written by the trainer.
            model (VaMoH, optional): A model of the same architecture to load into; by default it is rebuilt
                from the saved ``model_config``.
        """
        return load_trained_model(checkpoint, VaMoH, model, map_location)

    # ---------------------------------------------------------------- Lightning hooks
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        fused = all(p.device.type in ("cpu", "cuda") for p in params) and all(p.is_floating_point() for p in params)
        t = self._trainer
        if t is not None and "mixed" in str(t.precision) and t.gradient_clip_val:
            fused = False  # Lightning cannot clip the gradients of a fused optimizer under mixed precision
        return torch.optim.Adam(params, lr=self.hparams.lr, fused=fused or None)

    def _sync_warmup(self) -> None:
        self.model.warmup = self.global_step < self.hparams.warmup_steps

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._sync_warmup()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        g = step_generator(self.hparams.seed, self.global_step, self.global_rank)
        out = self.model.elbo(batch, generator=g, target=_target(batch))
        if not bool(torch.isfinite(out.loss)):
            raise NonFiniteLossError(
                f"non-finite training loss {float(out.loss)} at step {self.global_step} "
                f"(log-likelihood {out.scalars()['log_likelihood']}, KL z {out.scalars()['kl_z']}, "
                f"KL c {out.scalars()['kl_c']}); training stopped before the update, the last checkpoint is "
                "intact. Lower the learning rate or enable gradient clipping.")
        bs = int(out.elbo.numel())
        logs = {f"train/{k}": v for k, v in out.scalars().items()}
        logs["train/warmup"] = float(self.model.warmup)
        self.log_dict(logs, batch_size=bs, on_step=True, on_epoch=False, prog_bar=False, sync_dist=False)
        self.log("loss", out.loss.detach(), batch_size=bs, prog_bar=True, on_step=True, on_epoch=False)
        return out.loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if not grads:
            return
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        if not bool(torch.isfinite(norm)):
            raise NonFiniteLossError(f"non-finite gradient norm at step {self.global_step}; training stopped "
                                     "before the update, the last checkpoint is intact.")
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)

    # ---------------------------------------------------------------- precise BatchNorm
    def _recalibrate(self) -> bool:
        n = self.hparams.get("recalibrate_fields", 0)
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        data = getattr(dm, "train_set", None)
        if not n or data is None or len(data) == 0:
            return False
        from torch_geometric.data import Batch

        items = [data[i] for i in range(min(n, len(data)))]
        size = max(1, int(getattr(dm, "batch_size", 16)))
        device = next(self.model.parameters()).device
        batches = (Batch.from_data_list(items[s:s + size]).to(device) for s in range(0, len(items), size))
        return self.model.recalibrate_encoder(batches) > 0

    def on_validation_start(self) -> None:
        self._recalibrate()

    def on_train_end(self) -> None:
        self._recalibrate()
        release_gradient_buffers()

    def on_save_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        # The saved model is the evaluation-mode model that was trained: BatchNorm statistics of whole clouds.
        if self._recalibrate():
            state = checkpoint.get("state_dict")
            if state is not None:
                for k, v in self.model.encoder.state_dict(prefix="model.encoder.").items():
                    if k in state:
                        state[k] = v.detach().clone()

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._sync_warmup()
        g = step_generator(self.hparams.seed, batch_idx, -1 - self.global_rank)
        out = self.model.elbo(batch, dropout=False, generator=g, target=_target(batch))
        rec = self.model.reconstruct(batch)
        n = int(out.elbo.numel())
        p = psnr(rec, batch.x, data_range=1.0, batch=batch.batch)
        e = rmse(rec, batch.x, batch=batch.batch)
        self.log_dict({"val/elbo": out.elbo.mean(), "val/elbo_per_point": (out.elbo / out.num_points).mean(),
                       "val/psnr": p.mean(), "val/rmse": e.mean()},
                      batch_size=n, on_epoch=True, prog_bar=False, sync_dist=True)
