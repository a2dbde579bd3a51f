"""Data: grids (images, voxels, lat/lon) to point clouds and back."""

from ._grids import Grid, ImageGrid, LatLonGrid, VoxelGrid

__all__ = ["Grid", "ImageGrid", "VoxelGrid", "LatLonGrid"]
