"""Rendering: functions on the sphere as shaded PyTorch3D globes (CPU or GPU), equirectangular maps, and image grids."""

from ._globe import DEFAULT_VIEWS, View, globe_colors, globe_views, render_globe, render_sphere
from ._image_grid import save_image_grid
from ._maps import Panel, plot_map, plot_panels
from ._meshes import SHAPE_VIEWS, occupancy_mesh, render_occupancy
from ._tasks import grid_spacing, plot_task_maps

__all__ = ["render_sphere", "render_globe", "globe_colors", "globe_views", "View", "DEFAULT_VIEWS", "plot_map",
           "plot_panels", "Panel", "save_image_grid", "occupancy_mesh", "render_occupancy", "SHAPE_VIEWS",
           "plot_task_maps", "grid_spacing"]
