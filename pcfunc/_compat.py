"""Detection of optional compiled packages, done once.

pcfunc's core (manifolds, the reference neighbour search) needs only PyTorch.
The compiled packages speed things up or add features; an operation that needs
a missing one calls :func:`require`, which raises an :class:`ImportError`
saying what to install.
"""

from __future__ import annotations

import importlib.util

__all__ = ["WITH_TORCH_CLUSTER", "WITH_TORCH_SCATTER", "WITH_PYTORCH3D", "WITH_NUMBA", "require"]


def _importable(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:  # a wheel built against another torch is found but fails to import
        importlib.import_module(name)
    except (ImportError, OSError):
        return False
    return True


WITH_TORCH_CLUSTER: bool = _importable("torch_cluster")
WITH_TORCH_SCATTER: bool = _importable("torch_scatter")
WITH_PYTORCH3D: bool = _importable("pytorch3d")
WITH_NUMBA: bool = _importable("numba")

_HINTS = {
    "torch_cluster": (
        "torch-cluster: pip install torch-cluster -f https://data.pyg.org/whl/torch-<version>+<cuda>.html, "
        "or compile it against your torch with 'pip install --no-build-isolation torch-cluster'"
    ),
    "torch_scatter": (
        "torch-scatter: pip install torch-scatter -f https://data.pyg.org/whl/torch-<version>+<cuda>.html, "
        "or compile it against your torch with 'pip install --no-build-isolation torch-scatter'"
    ),
    "pytorch3d": (
        "PyTorch3D built for your torch; with torch 2.12 on Linux: pip install easypytorch3d==0.7.9.post1 "
        "(see the install page of the docs)"
    ),
    "numba": "numba: pip install numba",
}
_AVAILABLE = {
    "torch_cluster": WITH_TORCH_CLUSTER,
    "torch_scatter": WITH_TORCH_SCATTER,
    "pytorch3d": WITH_PYTORCH3D,
    "numba": WITH_NUMBA,
}


def require(name: str, feature: str) -> None:
    """Raise an informative :class:`ImportError` if the compiled package ``name`` is missing.

    Args:
        name (str): The import name (``"torch_cluster"``, ``"torch_scatter"``, ``"pytorch3d"``).
        feature (str): What needs it, for the message.
    """
    if name not in _AVAILABLE:
        raise ValueError(f"name must be one of {sorted(_AVAILABLE)}, got {name!r}")
    if not _AVAILABLE[name]:
        raise ImportError(f"{feature} needs '{name}', which is not importable. Install {_HINTS[name]}.")
