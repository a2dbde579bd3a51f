"""Neighbour search on manifolds: farthest point sampling, kNN and cached neighbour hierarchies."""

from ._fps import fps
from ._hierarchy import Level, NeighborCache, build_hierarchy, default_cache, sample_and_group
from ._knn import DEFAULT_CHUNK_ELEMENTS, knn

__all__ = [
    "fps",
    "knn",
    "sample_and_group",
    "build_hierarchy",
    "Level",
    "NeighborCache",
    "default_cache",
    "DEFAULT_CHUNK_ELEMENTS",
]
