"""Detection of optional compiled packages, done once, on first use.

pcfunc's core (manifolds, the reference neighbour search) needs only PyTorch.
The compiled packages speed things up or add features; an operation that needs
a missing one calls :func:`require`, which raises an :class:`ImportError`
saying what to install. ``import pcfunc`` imports none of them: ``WITH_<NAME>``
is computed (by importing the package) the first time it is read.
"""

from __future__ import annotations

import importlib.util

__all__ = ["available", "require"]  # and the WITH_<NAME> flags, computed on first read (__getattr__)


def _importable(name: str) -> bool:
    if importlib.util.find_spec(name) is None:
        return False
    try:  # a wheel built against another torch is found but fails to import
        importlib.import_module(name)
    except (ImportError, OSError):
        return False
    return True


_FLAGS = {"WITH_TORCH_CLUSTER": "torch_cluster", "WITH_PYTORCH3D": "pytorch3d", "WITH_NUMBA": "numba"}
_AVAILABLE: dict = {}


def available(name: str) -> bool:
    """Whether the optional package ``name`` imports (detected once, on the first call)."""
    if name not in _AVAILABLE:
        _AVAILABLE[name] = _importable(name)
    return _AVAILABLE[name]


def __getattr__(attr: str) -> bool:  # PEP 562: WITH_<NAME> on first read
    if attr in _FLAGS:
        return available(_FLAGS[attr])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")

_HINTS = {
    "torch_cluster": (
        "torch-cluster: pip install torch-cluster -f https://data.pyg.org/whl/torch-<version>+<cuda>.html, "
        "or compile it against your torch with 'pip install --no-build-isolation torch-cluster'"
    ),
    "pytorch3d": (
        "PyTorch3D built for your torch; with torch 2.12 on Linux: pip install easypytorch3d==0.7.9.post1 "
        "(see the install page of the docs)"
    ),
    "numba": "numba: pip install numba",
}


def require(name: str, feature: str) -> None:
    """Raise an informative :class:`ImportError` if the compiled package ``name`` is missing.

    Args:
        name (str): The import name (``"torch_cluster"``, ``"pytorch3d"``, ``"numba"``).
        feature (str): What needs it, for the message.
    """
    if name not in _HINTS:
        raise ValueError(f"name must be one of {sorted(_HINTS)}, got {name!r}")
    if not available(name):
        raise ImportError(f"{feature} needs '{name}', which is not importable. Install {_HINTS[name]}.")
