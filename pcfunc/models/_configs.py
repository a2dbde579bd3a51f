"""The paper configurations of VaMoH (Table 3 of the VaMoH paper), by name."""

from __future__ import annotations

from typing import Any, Dict

from ..manifolds import Euclidean

__all__ = ["VAMOH_CONFIGS", "vamoh_config"]

# VaMoH, ICML 2023, Table 3 and App. B.1. Model keyword arguments of :class:`VaMoH` plus the training
# settings under "training". ``("euclidean", d)`` stands for ``Euclidean(d)``. The encoder rows are :data:`pcfunc.nn.VAMOH_ENCODERS` (named by ``encoder``).
# Likelihoods (App. B.1): discretized logistic for CelebA-HQ, Shapes3D and PolyMNIST; Bernoulli for
# ShapeNet voxels; continuous Bernoulli for ERA5. RFF: m = 128 frequencies, sigma = 2 everywhere.
VAMOH_CONFIGS: Dict[str, Dict[str, Any]] = {
    "era5": dict(
        manifold="sphere", in_channels=1, encoder="era5", latent_dim=32, num_components=3,
        hypernet_hidden=(256, 512), generator_hidden=(64, 64, 64), categorical_hidden=(32, 32),
        flow_layers=10, likelihood="continuous_bernoulli",
        training=dict(epochs=600, batch_size=64, lr=1e-4),
    ),
    "celeba_hq": dict(
        manifold=("euclidean", 2), in_channels=3, encoder="celeba_hq", latent_dim=64, num_components=10,
        hypernet_hidden=(256, 512), generator_hidden=(64, 64, 64), categorical_hidden=(64, 32),
        flow_layers=80, likelihood="discretized_logistic",
        training=dict(epochs=1000, batch_size=64, lr=1e-4),
    ),
    "shapes3d": dict(
        manifold=("euclidean", 2), in_channels=3, encoder="shapes3d", latent_dim=32, num_components=5,
        hypernet_hidden=(128, 256), generator_hidden=(32, 32), categorical_hidden=(32, 32),
        flow_layers=20, likelihood="discretized_logistic",
        training=dict(epochs=600, batch_size=64, lr=1e-4),
    ),
    "polymnist": dict(
        manifold=("euclidean", 2), in_channels=3, encoder="polymnist", latent_dim=16, num_components=4,
        hypernet_hidden=(16, 32), generator_hidden=(4, 4, 4), categorical_hidden=(32, 32),
        flow_layers=3, likelihood="discretized_logistic",
        training=dict(epochs=600, batch_size=256, lr=1e-3),
    ),
    "shapenet": dict(
        manifold=("euclidean", 3), in_channels=1, encoder="shapenet", latent_dim=32, num_components=3,
        hypernet_hidden=(256, 512), generator_hidden=(64, 64, 64), categorical_hidden=(32, 32),
        flow_layers=40, likelihood="bernoulli",
        training=dict(epochs=500, batch_size=22, lr=1e-3),
    ),
}


def vamoh_config(name: str) -> Dict[str, Any]:
    """A copy of the paper configuration ``name`` (``"era5"``, ``"celeba_hq"``, ``"shapes3d"``,
    ``"polymnist"``, ``"shapenet"``): :class:`VaMoH` keyword arguments plus ``"training"``
    (``epochs``, ``batch_size``, ``lr`` of Table 3)."""
    return copy_config(VAMOH_CONFIGS, name)


def copy_config(table: Dict[str, Dict[str, Any]], name: str) -> Dict[str, Any]:
    """A copy of ``table[name]`` (case-insensitive) with ``("euclidean", d)`` turned into ``Euclidean(d)``."""
    if not isinstance(name, str) or name.lower() not in table:
        raise ValueError(f"name must be one of {sorted(table)}, got {name!r}")
    cfg = dict(table[name.lower()])
    if isinstance(cfg["manifold"], tuple):
        cfg["manifold"] = Euclidean(cfg["manifold"][1])
    cfg["training"] = dict(cfg["training"])
    return cfg
