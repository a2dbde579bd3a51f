"""pcfunc: distributions over functions represented as point clouds on manifolds."""

__version__ = "0.1.0.dev0"

from . import manifolds, ops  # noqa: E402

__all__ = ["manifolds", "ops", "__version__"]
