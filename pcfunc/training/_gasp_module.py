"""The Lightning wrapper of :class:`~pcfunc.models.GASP`: alternating discriminator and generator updates."""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, ContextManager, Dict, Optional, Sequence, Union

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from ..models import GASP, gasp_config
from ..nn._kernels import release_gradient_buffers
from ._ddp import parallelize_networks
from ._vamoh_module import NonFiniteLossError, load_trained_model, module_from_checkpoint, step_generator

__all__ = ["GASPModule"]


class GASPModule(pl.LightningModule):
    r"""Trains a :class:`~pcfunc.models.GASP` with manual optimisation: per batch, one discriminator step
    (GAN loss + R1 on the real batch, fakes generated without gradients) and then one generator step
    (non-saturating loss), each with its own Adam (GASP App. A.1: :math:`\beta = (0.5, 0.999)`, learning
    rates 1e-4 for the generator and 4e-4 for the discriminator).

    Lightning counts both optimiser steps in ``global_step`` (two per batch); ``optimizer_steps_per_batch``
    tells :class:`~pcfunc.training.FunctionDataModule` so that resuming starts at the right batch. Each
    batch's randomness (point subset, latents) comes from :func:`step_generator`, so a resumed run repeats
    an uninterrupted one. A non-finite loss raises :class:`NonFiniteLossError` before the update. During the
    generator step the discriminator's parameters are frozen (no gradient is computed for them).

    Under distributed data parallel (:class:`~pcfunc.training.DDPStrategy`) the generator and the discriminator
    get a wrapper each (:meth:`parallelize`): the discriminator step all-reduces the discriminator's gradients
    only, and the generator step the generator's only.

    Args:
        model (GASP): The model; or :meth:`from_config`.
        lr_generator (float): (default: ``1e-4``)
        lr_discriminator (float): (default: ``4e-4``)
        betas (pair of float): Adam betas. (default: ``(0.5, 0.999)``)
        num_points (int, optional): Train on a random subset of this many points per cloud (shared by a
            batch on a grid); ``None`` for all points.
        seed (int): Seed of the per-batch randomness.
        model_config (dict, optional): Plain keyword arguments that rebuild the model, saved in checkpoints.
    """

    optimizer_steps_per_batch = 2

    def __init__(self, model: GASP, lr_generator: float = 1e-4, lr_discriminator: float = 4e-4,
                 betas: Sequence[float] = (0.5, 0.999), num_points: Optional[int] = None, seed: int = 0,
                 model_config: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        if not isinstance(model, GASP):
            raise TypeError(f"model must be a GASP, got {type(model).__name__}")
        for name, lr in (("lr_generator", lr_generator), ("lr_discriminator", lr_discriminator)):
            if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
                raise ValueError(f"{name} must be a positive number, got {lr!r}")
        self.model = model
        self._wrappers: Dict[str, nn.Module] = {}  # per-network DDP wrappers, see parallelize
        self.automatic_optimization = False
        self.save_hyperparameters({"lr_generator": float(lr_generator), "lr_discriminator": float(lr_discriminator),
                                   "betas": [float(b) for b in betas], "num_points": num_points, "seed": int(seed),
                                   "model_config": model_config})

    @classmethod
    def from_config(cls, name: str, num_points: Optional[int] = None, seed: int = 0, **overrides: Any) -> "GASPModule":
        """A module around ``GASP.from_config(name, **overrides)`` with the paper's learning rates."""
        tr = gasp_config(name)["training"]
        return cls(GASP.from_config(name, **overrides), tr["lr_generator"], tr["lr_discriminator"],
                   num_points=num_points, seed=seed, model_config={"name": name, **overrides})

    def configure_optimizers(self):
        betas = tuple(self.hparams.betas)
        g = torch.optim.Adam(self.model.hypernet.parameters(), lr=self.hparams.lr_generator, betas=betas)
        d = torch.optim.Adam(self.model.discriminator.parameters(), lr=self.hparams.lr_discriminator, betas=betas)
        return [g, d]

    def parallelize(self, wrap: Optional[Callable[[nn.Module], nn.Module]]) -> Dict[str, nn.Module]:
        """One wrapper per network, the hypernetwork's and the discriminator's (:func:`parallelize_networks`);
        called by :class:`~pcfunc.training.DDPStrategy`. ``None`` removes them."""
        self._wrappers = parallelize_networks(self.model, ("hypernet", "discriminator"), wrap)
        return dict(self._wrappers)

    def _no_sync(self, name: str) -> ContextManager:
        wrapper = self._wrappers.get(name)
        return nullcontext() if wrapper is None else wrapper.no_sync()

    def _check(self, loss: Tensor, what: str) -> None:
        if not bool(torch.isfinite(loss)):
            raise NonFiniteLossError(f"non-finite {what} loss {float(loss)} at batch {self._batch_index()}; "
                                     "training stopped before the update, the last checkpoint is intact.")

    def _check_grads(self, optimizer: Any, what: str) -> None:
        """Refuse an update with a non-finite gradient: checked before every optimiser step (the discriminator's
        included), so a NaN never reaches the parameters or Adam's moments."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not bool(torch.isfinite(torch.stack([torch.linalg.vector_norm(g) for g in grads]).sum())):
            raise NonFiniteLossError(f"non-finite {what} gradient at batch {self._batch_index()}; training stopped "
                                     "before the update, the last checkpoint is intact.")

    def _batch_index(self) -> int:
        return self.global_step // self.optimizer_steps_per_batch

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        step = self._batch_index()
        gen = step_generator(self.hparams.seed, step, self.global_rank)
        terms = self.model.discriminator_loss(batch, num_points=self.hparams.num_points, generator=gen)
        self._check(terms.loss, "discriminator")
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(terms.loss)
        self._check_grads(opt_d, "discriminator")
        opt_d.step()
        gen = step_generator(self.hparams.seed, step, 1000 + self.global_rank)
        # The discriminator is frozen (toggled_optimizer) and its wrapper does not expect gradients (no_sync).
        with self.toggled_optimizer(opt_g), self._no_sync("discriminator"):
            g_loss = self.model.generator_loss(batch, num_points=self.hparams.num_points, generator=gen)
            self._check(g_loss, "generator")
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
        self._check_grads(opt_g, "generator")
        opt_g.step()
        logs = {f"train/{k}": v for k, v in terms.scalars().items()}
        logs["train/g_loss"] = float(g_loss.detach())
        self.log_dict(logs, batch_size=terms.real_logits.numel(), on_step=True, on_epoch=False)
        self.log("g_loss", g_loss.detach(), prog_bar=True, on_step=True, on_epoch=False)

    def on_train_end(self) -> None:
        release_gradient_buffers()  # the hypernetwork's recycled weight-gradient buffer (pcfunc.nn._kernels)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Union[str, Path], map_location: Any = "cpu",  # type: ignore[override]
                             **overrides: Any) -> "GASPModule":
        """The module of a checkpoint (see :meth:`VaMoHModule.load_from_checkpoint
        <pcfunc.training.VaMoHModule.load_from_checkpoint>`), read with ``torch.load(weights_only=True)``."""
        return module_from_checkpoint(cls, GASP, checkpoint_path, map_location, **overrides)

    @staticmethod
    def load_model(checkpoint: str, model: Optional[GASP] = None, map_location: str = "cpu") -> GASP:
        """The trained :class:`~pcfunc.models.GASP` of a checkpoint, read with ``torch.load(weights_only=True)``."""
        return load_trained_model(checkpoint, GASP, model, map_location)
