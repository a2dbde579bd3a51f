"""Training on PyTorch Lightning: the VaMoH and GASP modules, resumable data loading, a configured trainer.

This is the only package of pcfunc that imports Lightning.
"""

from ._convergence import Convergence, convergence_report, data_budget
from ._data import FunctionDataModule, StepLoader
from ._ddp import DDPStrategy, parallelize_networks
from ._gasp_module import GASPModule
from ._sync_batch_norm import BatchNormSync, DistributedBatchNorm, convert_sync_batchnorm, revert_sync_batchnorm
from ._trainer import (RESUMABLE_EXIT_CODE, AtomicCheckpointIO, Preempted, SyncBatchNorm, fit, last_checkpoint,
                       make_trainer, resolve_precision, training_budget)
from ._vamoh_module import NonFiniteLossError, VaMoHModule, step_generator

__all__ = ["VaMoHModule", "GASPModule", "NonFiniteLossError", "step_generator", "FunctionDataModule", "StepLoader",
           "make_trainer", "fit", "Convergence", "convergence_report", "data_budget", "last_checkpoint",
           "resolve_precision", "training_budget", "DDPStrategy", "parallelize_networks",
           "DistributedBatchNorm", "convert_sync_batchnorm", "revert_sync_batchnorm", "BatchNormSync", "SyncBatchNorm",
           "AtomicCheckpointIO", "Preempted", "RESUMABLE_EXIT_CODE"]
