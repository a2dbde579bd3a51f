"""Image batches as one PNG grid (matplotlib only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

__all__ = ["save_image_grid"]


def save_image_grid(images: Any, out: Union[str, Path], ncols: Optional[int] = None,
                    row_titles: Optional[Sequence[str]] = None, cmap: str = "gray", scale: int = 4,
                    title: str = "", masks: Any = None) -> Path:
    """Save images ``(N, H, W)`` or ``(N, H, W, C)`` (C = 1 or 3, values in :math:`[0, 1]`) as a grid PNG.

    Args:
        images: Array or tensor.
        out: PNG path (parent folders are created).
        ncols (int, optional): Images per row (default: all in one row, at most 16).
        row_titles (sequence of str, optional): A label to the left of each row.
        cmap (str): Colormap of one-channel images.
        scale (int): Screen pixels per image pixel (nearest-neighbour upscaling, so pixels stay visible).
        title (str): Figure title.
        masks: Optional boolean ``(N, H, W)``; ``False`` pixels (unobserved) are tinted red.

    Returns:
        Path: ``out``.
    """
    from matplotlib.figure import Figure

    a = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float32)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3) or a.shape[0] == 0:
        raise ValueError(f"images must have shape (N, H, W) or (N, H, W, C) with C in (1, 3), got {a.shape}")
    n, h, w, c = a.shape
    ncols = min(n, 16) if ncols is None else int(ncols)
    if ncols < 1:
        raise ValueError(f"ncols must be positive, got {ncols}")
    nrows = -(-n // ncols)
    if row_titles is not None and len(row_titles) != nrows:
        raise ValueError(f"row_titles has {len(row_titles)} entries for {nrows} rows")
    a = np.clip(a, 0.0, 1.0)
    rgb = a if c == 3 else _colormap(a[..., 0], cmap)
    if masks is not None:
        m = np.asarray(masks.detach().cpu() if hasattr(masks, "detach") else masks, dtype=bool)
        if m.shape != (n, h, w):
            raise ValueError(f"masks must have shape {(n, h, w)}, got {m.shape}")
        tint = np.array([0.85, 0.15, 0.15], np.float32)
        rgb = np.where(m[..., None], rgb, 0.5 * rgb + 0.5 * tint)
    pad = 1
    canvas = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), np.float32)
    for i in range(n):
        r, col = divmod(i, ncols)
        canvas[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = rgb[i]
    canvas = canvas.repeat(scale, 0).repeat(scale, 1)
    left = 1.6 if row_titles else 0.1
    top = 0.4 if title else 0.1
    dpi = 100
    fig = Figure(figsize=(canvas.shape[1] / dpi + left, canvas.shape[0] / dpi + top), dpi=dpi)
    ax = fig.add_axes((left / fig.get_figwidth(), 0, 1 - left / fig.get_figwidth(),
                       1 - top / fig.get_figheight()))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for s in ax.spines.values():
        s.set_visible(False)
    if row_titles:
        for r, t in enumerate(row_titles):
            ax.text(-4, (pad + r * (h + pad) + h / 2) * scale, t, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _colormap(a: np.ndarray, cmap: str) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps[cmap](a)[..., :3].astype(np.float32)
