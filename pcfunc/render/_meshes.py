"""Occupancy functions as shaded meshes: marching cubes (PyTorch3D) and the tiled renderer of the globes."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .. import _compat
from ._globe import View, render_globe

__all__ = ["occupancy_mesh", "render_occupancy", "SHAPE_VIEWS"]

#: Camera directions ``(label, elevation, azimuth)`` in degrees for shapes (z up).
SHAPE_VIEWS: Tuple[View, ...] = (("front", 20.0, -60.0), ("side", 20.0, 30.0), ("back", 20.0, 120.0))


def _volume(source: Union[Tensor, np.ndarray, Callable[[Tensor], Tensor]], resolution: int,
            chunk_size: int) -> Tensor:
    if callable(source) and not isinstance(source, (Tensor, np.ndarray)):
        from ..manifolds import Euclidean

        pos = Euclidean(3).grid((resolution,) * 3)
        with torch.no_grad():
            vals = torch.cat([source(pos[s:s + chunk_size]).reshape(-1).float().cpu()
                              for s in range(0, pos.size(0), chunk_size)])
        return vals.view(resolution, resolution, resolution)
    v = torch.as_tensor(np.asarray(source.detach().cpu() if isinstance(source, Tensor) else source),
                        dtype=torch.float32)
    if v.dim() != 3:
        raise ValueError(f"the occupancy volume must have 3 dimensions (x, y, z), got shape {tuple(v.shape)}")
    return v


def occupancy_mesh(source: Union[Tensor, np.ndarray, Callable[[Tensor], Tensor]], resolution: int = 128,
                   level: float = 0.5, chunk_size: int = 65536):
    r"""The ``level`` iso-surface of an occupancy function as a PyTorch3D ``Meshes`` in :math:`[-1, 1]^3`.

    Args:
        source: A volume ``(X, Y, Z)`` of occupancies indexed like :class:`~pcfunc.data.VoxelGrid`, or a function of
            points ``(M, 3)`` in :math:`[-1, 1]^3` returning ``(M,)`` occupancies (e.g. an INR), evaluated on a
            ``resolution``\ :sup:`3` grid in chunks of ``chunk_size`` points.
        resolution (int): Grid size for a callable. (default: ``128``)
        level (float): Iso-level (0.5 for occupancy probabilities).

    Returns:
        pytorch3d.structures.Meshes: One mesh (possibly empty) with outward-facing triangles.
    """
    _compat.require("pytorch3d", "pcfunc.render.occupancy_mesh")
    from pytorch3d.ops.marching_cubes import marching_cubes
    from pytorch3d.structures import Meshes

    vol = _volume(source, resolution, chunk_size)
    # Pad with empty space so surfaces touching the border close; PyTorch3D reads volumes as (D, H, W) = (z, y, x).
    padded = torch.nn.functional.pad(vol, (1, 1, 1, 1, 1, 1))
    verts, faces = marching_cubes(padded.permute(2, 1, 0)[None].contiguous(), level, return_local_coords=True)
    v, f = verts[0], faces[0]
    if not isinstance(f, Tensor) or not isinstance(v, Tensor) or f.numel() == 0:  # no surface at this level
        v, f = torch.zeros(0, 3), torch.zeros(0, 3, dtype=torch.int64)
    if f.numel():
        # Local coordinates span the padded volume: map back so the original cell centres sit on [-1, 1].
        n = torch.tensor(vol.shape[::-1], dtype=v.dtype)[[2, 1, 0]]
        v = v * (n + 1) / (n - 1)
        # Orient outwards: the signed volume of an outward-oriented closed surface is positive.
        tri = v[f]
        signed = (torch.linalg.cross(tri[:, 0], tri[:, 1]) * tri[:, 2]).sum()
        if float(signed) < 0:
            f = f[:, [0, 2, 1]]
    return Meshes([v], [f])


def render_occupancy(source: Union[Tensor, np.ndarray, Callable[[Tensor], Tensor]], out: Optional[Union[str, Path]] = None,
                     resolution: int = 128, views: Sequence[View] = SHAPE_VIEWS, image_size: int = 256,
                     title: str = "", color: Sequence[float] = (0.72, 0.76, 0.86), level: float = 0.5) -> List[np.ndarray]:
    """Marching cubes of an occupancy function and a shaded PyTorch3D render from ``views``, optionally to a PNG
    (views side by side, labelled).

    Returns:
        list of numpy.ndarray: One ``(S, S, 3)`` image per view (white if the surface is empty).
    """
    from pytorch3d.renderer import TexturesVertex

    mesh = occupancy_mesh(source, resolution, level)
    verts = mesh.verts_packed()
    if mesh.faces_packed().numel() == 0:
        images = [np.ones((image_size, image_size, 3), np.float32) for _ in views]
    else:
        mesh.textures = TexturesVertex([torch.tensor(color, dtype=torch.float32).expand(verts.size(0), 3)])
        images = render_globe(mesh, views, image_size)
    if out is not None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(len(images) * image_size / 100, image_size / 100 + (0.45 if title else 0.25)), dpi=100)
        for i, (img, (label, _, _)) in enumerate(zip(images, views)):
            ax = fig.add_axes((i / len(images), 0.0, 1 / len(images), image_size / 100 / fig.get_figheight()))
            ax.imshow(img)
            ax.set_axis_off()
            ax.set_title(label, fontsize=8, y=0.0, pad=-12)
        if title:
            fig.suptitle(title, fontsize=10)
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return images
