"""Neighbour search on manifolds: farthest point sampling, kNN and cached neighbour hierarchies."""

from ._fps import fps
from ._hierarchy import Level, NeighborCache, build_hierarchy, default_cache, sample_and_group, shared_grid
from ._common import to_padded
from ._knn import KNN_CHUNK_ELEMENTS, knn

__all__ = [
    "fps",
    "knn",
    "sample_and_group",
    "build_hierarchy",
    "shared_grid",
    "Level",
    "NeighborCache",
    "default_cache",
    "KNN_CHUNK_ELEMENTS",
    "to_padded",
]


def __getattr__(name: str):
    if name == "DEFAULT_CHUNK_ELEMENTS":  # its old name (pcfunc has other chunk sizes: INR, decoding)
        import warnings

        warnings.warn("pcfunc.ops.DEFAULT_CHUNK_ELEMENTS is deprecated, use pcfunc.ops.KNN_CHUNK_ELEMENTS", FutureWarning,
                      stacklevel=2)
        return KNN_CHUNK_ELEMENTS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
