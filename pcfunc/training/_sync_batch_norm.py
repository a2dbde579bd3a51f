"""BatchNorm synchronised across distributed processes: PyTorch's SyncBatchNorm on CUDA, pcfunc's on other devices
(PyTorch's is CUDA-only), switched on as a Lightning ``LayerSync`` plugin."""

from __future__ import annotations

from typing import Any, List, Optional

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import Tensor, nn

__all__ = ["DistributedBatchNorm", "convert_sync_batchnorm", "revert_sync_batchnorm", "BatchNormSync"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes (:func:`torch.distributed.all_reduce`), whose gradient is the sum of the gradients."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


class DistributedBatchNorm(nn.modules.batchnorm._BatchNorm):
    r"""Batch normalisation whose training statistics are those of the **global** batch over all processes.

    .. math::
        \mu = \frac{\sum_r \sum_{i \in r} x_i}{\sum_r n_r}, \qquad
        \sigma^2 = \frac{\sum_r \sum_{i \in r} x_i^2}{\sum_r n_r} - \mu^2, \qquad
        y_i = \gamma \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta .

    The per-channel sums, sums of squares and counts are summed with a differentiable all-reduce (of
    :func:`torch.distributed.all_reduce`), so the gradient is that of the global batch too; they are accumulated
    in float32 at least (a bfloat16 input, under ``precision="bf16-mixed"``, keeps 8 bits of mantissa: its sums of
    squares would lose the variance), and the output has the input's dtype.
    It works with any backend (``gloo`` on the CPU, ``nccl`` on GPUs) and any number of points per
    process, which :class:`torch.nn.SyncBatchNorm` does not (it requires CUDA). Outside distributed
    training, and in eval mode, it is exactly :class:`torch.nn.BatchNorm1d`. Running statistics are updated
    with the unbiased global variance, as in PyTorch.

    Shapes:
        - **input:** :math:`(N, C)` or :math:`(N, C, L)`
        - **output:** same as input
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 3):
            raise ValueError(f"expected a 2-D or 3-D input (got a {x.dim()}-D input)")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not (self.training and _distributed()):
            return super().forward(x)
        dims: List[int] = [0] + list(range(2, x.dim()))
        c = x.size(1)
        dtype = x.dtype
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        count = x.new_full((1,), x.numel() / max(c, 1))
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = _AllReduceSum.apply(stats)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * (n / (n - 1).clamp_min(1))
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        shape = [1, c] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(dtype)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every :class:`torch.nn.BatchNorm1d` in ``module`` by a :class:`DistributedBatchNorm` with the same
    parameters and running statistics (in place where possible; returns the module)."""
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, DistributedBatchNorm):
        new = DistributedBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats, device=_device(module), dtype=_dtype(module))
        with torch.no_grad():
            if module.affine:
                new.weight.copy_(module.weight)
                new.bias.copy_(module.bias)
            if module.track_running_stats:
                new.running_mean.copy_(module.running_mean)
                new.running_var.copy_(module.running_var)
                new.num_batches_tracked.copy_(module.num_batches_tracked)
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_sync_batchnorm(child))
    return module


def _device(m: nn.Module) -> torch.device:
    for t in list(m.parameters()) + list(m.buffers()):
        return t.device
    return torch.device("cpu")


def _dtype(m: nn.Module) -> torch.dtype:
    for t in list(m.parameters()) + list(m.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype()


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_sync_batchnorm` (and :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`): every
    synchronised BatchNorm becomes a :class:`torch.nn.BatchNorm1d` with the same parameters and statistics."""
    if isinstance(module, (DistributedBatchNorm, nn.SyncBatchNorm)):
        new = nn.BatchNorm1d(module.num_features, module.eps, module.momentum, module.affine,
                             module.track_running_stats, device=_device(module), dtype=_dtype(module))
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, revert_sync_batchnorm(child))
    return module


class BatchNormSync(LayerSync):
    """Lightning's ``LayerSync`` plugin for pcfunc's models: under DDP, every BatchNorm computes the statistics of
    the global batch. On CUDA it is :class:`torch.nn.SyncBatchNorm`; on other devices (the CPU, with ``gloo``)
    :class:`DistributedBatchNorm`, as :class:`torch.nn.SyncBatchNorm` runs on CUDA only. Lightning applies it when
    a distributed strategy sets up for fitting and reverts it at teardown; :func:`~pcfunc.training.make_trainer`
    passes it. Single-process training is unchanged.

    Args:
        device_type (str, optional): ``"cuda"`` or another device type; ``None``: the trainer's device (the
            module's own when it has no trainer). (default: ``None``)
    """

    def __init__(self, device_type: Optional[str] = None) -> None:
        self.device_type = device_type

    def _device_type(self, model: nn.Module) -> str:
        if self.device_type is not None:
            return self.device_type
        trainer = getattr(model, "_trainer", None)
        if trainer is not None:
            return trainer.strategy.root_device.type
        return _device(model).type

    def apply(self, model: nn.Module) -> nn.Module:
        if self._device_type(model) == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return revert_sync_batchnorm(model)
