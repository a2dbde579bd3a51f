"""Data: grids (images, voxels, lat/lon) to point clouds and back, and ERA5 files."""

from ._era5 import ERA5Field, load_era5
from ._grids import Grid, ImageGrid, LatLonGrid, VoxelGrid

__all__ = ["Grid", "ImageGrid", "VoxelGrid", "LatLonGrid", "ERA5Field", "load_era5"]
