"""Neighbour search on manifolds: farthest point sampling, kNN and cached neighbour hierarchies."""

from ._fps import fps
from ._hierarchy import Level, NeighborCache, build_hierarchy, default_cache, sample_and_group, shared_grid
from ._knn import DEFAULT_CHUNK_ELEMENTS, knn

__all__ = [
    "fps",
    "knn",
    "sample_and_group",
    "build_hierarchy",
    "shared_grid",
    "Level",
    "NeighborCache",
    "default_cache",
    "DEFAULT_CHUNK_ELEMENTS",
]
