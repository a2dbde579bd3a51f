"""Rendering: functions on the sphere as shaded PyTorch3D globes (CPU or GPU), equirectangular maps, and image grids."""

from ._globe import DEFAULT_VIEWS, View, globe_colors, render_globe, render_sphere
from ._image_grid import save_image_grid
from ._maps import Panel, plot_map, plot_panels
from ._meshes import SHAPE_VIEWS, occupancy_mesh, render_occupancy

__all__ = ["render_sphere", "render_globe", "globe_colors", "View", "DEFAULT_VIEWS", "plot_map", "plot_panels",
           "Panel", "save_image_grid",
           "occupancy_mesh", "render_occupancy", "SHAPE_VIEWS"]
