"""Rendering: functions on the sphere as shaded PyTorch3D globes (CPU or GPU), and equirectangular maps."""

from ._globe import DEFAULT_VIEWS, View, globe_colors, render_globe, render_sphere
from ._maps import Panel, plot_map, plot_panels

__all__ = ["render_sphere", "render_globe", "globe_colors", "View", "DEFAULT_VIEWS", "plot_map", "plot_panels",
           "Panel"]
