"""Rendering: functions on the sphere as shaded PyTorch3D globes (CPU or GPU)."""

from ._globe import DEFAULT_VIEWS, View, globe_colors, render_globe, render_sphere

__all__ = ["render_sphere", "render_globe", "globe_colors", "View", "DEFAULT_VIEWS"]
