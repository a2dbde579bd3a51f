"""Data: grids (images, voxels, lat/lon) to point clouds and back, and ERA5 files."""

from ._era5 import ERA5_ATTRIBUTION, load_era5, load_era5_sample
from ._field import ERA5Field, MinMaxNormalizer, split_by_time
from ._era5_dataset import ERA5Dataset, pooled_points, target_points
from ._grids import Grid, ImageGrid, LatLonGrid, VoxelGrid
from ._latlon_axes import regular_axes
from ._lazy import LazyERA5Dataset
from ._images import ImageDataset, load_digits_images, load_image_folder, load_mnist_idx
from ._regrid import interpolate_latlon, interpolate_to_points, latlon_cell_area, regrid
from ._voxels import (VoxelDataset, augmented_voxels, load_bunny_points, load_voxel_folder, read_binvox,
                      voxelize_points)
from ._transforms import PointDropout, RandomSubset, ToSymmetric, select_points
from ._xarray_out import predictions_to_xarray

__all__ = ["ERA5_ATTRIBUTION", "Grid", "ImageGrid", "VoxelGrid", "LatLonGrid", "ERA5Field", "load_era5", "load_era5_sample", "MinMaxNormalizer",
           "split_by_time", "ERA5Dataset", "PointDropout", "RandomSubset", "select_points", "interpolate_latlon",
           "interpolate_to_points", "regrid", "latlon_cell_area", "ImageDataset", "load_digits_images",
           "load_image_folder", "load_mnist_idx", "VoxelDataset", "augmented_voxels", "load_bunny_points",
           "load_voxel_folder", "read_binvox", "voxelize_points", "target_points", "pooled_points", "regular_axes",
           "LazyERA5Dataset", "ToSymmetric", "predictions_to_xarray"]
