"""Manifolds: the spaces on which functions are defined (see :class:`Manifold`)."""

from ._base import Manifold
from ._euclidean import Euclidean
from ._resolve import register_manifold, resolve_manifold
from ._sphere import Sphere, latlon_to_xyz, xyz_to_latlon
from ._torus import Torus

__all__ = [
    "Manifold",
    "Euclidean",
    "Sphere",
    "Torus",
    "latlon_to_xyz",
    "xyz_to_latlon",
    "resolve_manifold",
    "register_manifold",
]
