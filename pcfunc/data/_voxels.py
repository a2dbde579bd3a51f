"""3D shapes as occupancy functions: voxelising point clouds, the Stanford bunny, voxel files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np
import torch

from ._grids import VoxelGrid

__all__ = ["load_bunny_points", "voxelize_points", "augmented_voxels", "load_voxel_folder", "read_binvox",
           "VoxelDataset"]


def load_bunny_points() -> np.ndarray:
    """The Stanford bunny as a point cloud (2,503 surface points, shipped with PyGSP), centred and scaled into
    the unit ball, ``(2503, 3)`` float64 with z up."""
    import os

    import pygsp
    from scipy.io import loadmat

    path = os.path.join(os.path.dirname(pygsp.__file__), "data", "pointclouds", "bunny.mat")
    pts = np.asarray(loadmat(path)["bunny"], dtype=np.float64)
    pts = pts[:, [0, 2, 1]]  # the scan's y axis is up; pcfunc renders with z up
    pts -= (pts.max(0) + pts.min(0)) / 2
    return pts / np.linalg.norm(pts, axis=1).max()


def voxelize_points(points: Any, resolution: int = 32, closing: int = 1, extent: float = 0.9) -> np.ndarray:
    r"""Solid occupancy of the shape whose surface the points sample, on a ``resolution``\ :sup:`3` grid of
    :math:`[-1, 1]^3` (the cells of :class:`VoxelGrid`).

    Points (already in :math:`[-\text{extent}, \text{extent}]^3` after centring and scaling into the unit ball)
    mark their cells; a morphological closing with ``closing`` iterations seals the gaps between samples; the
    interior is filled (cells not connected to the border); the result is eroded back by the same amount.

    Returns:
        numpy.ndarray: ``(R, R, R)`` bool, indexed ``[x, y, z]`` like :class:`VoxelGrid` (depth, height, width).
    """
    from scipy import ndimage

    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 3 or not np.isfinite(p).all():
        raise ValueError(f"points must be a finite array of shape (N, 3), got {p.shape}")
    if resolution < 4:
        raise ValueError(f"resolution must be at least 4, got {resolution}")
    r = np.linalg.norm(p, axis=1).max()
    p = p / max(r, 1e-12) * extent
    idx = np.clip(np.round((p + 1) / 2 * (resolution - 1)).astype(int), 0, resolution - 1)
    vol = np.zeros((resolution,) * 3, bool)
    vol[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    if closing:
        vol = ndimage.binary_dilation(vol, iterations=closing)
    vol = ndimage.binary_fill_holes(vol)
    if closing:
        vol = ndimage.binary_erosion(vol, iterations=closing, border_value=0)
    return vol


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    a, b, c, d = q
    return np.array([[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
                     [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
                     [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d]])


def augmented_voxels(points: Any, num: int, resolution: int = 32, seed: int = 0,
                     max_angle: float = 180.0) -> np.ndarray:
    """A small dataset from one shape: ``num`` voxelisations after a random rotation about the vertical axis
    (up to ``max_angle`` degrees), a small random tilt and an anisotropic scaling (0.8 to 1.2 per axis).
    The first item is the shape itself.

    Returns:
        numpy.ndarray: ``(num, R, R, R)`` float32 occupancies in {0, 1}.
    """
    p = np.asarray(points, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty((num, resolution, resolution, resolution), np.float32)
    for i in range(num):
        q = p
        if i:
            t = math.radians(rng.uniform(-max_angle, max_angle))
            spin = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
            tilt = _rotation(rng)
            tilt = np.eye(3) + 0.15 * (tilt - np.eye(3))  # a small perturbation of the identity
            u, _, vt = np.linalg.svd(tilt)
            q = p @ (u @ vt).T @ spin.T * rng.uniform(0.8, 1.2, size=3)
        out[i] = voxelize_points(q, resolution)
    return out


def read_binvox(path: Union[str, Path]) -> np.ndarray:
    """A ``.binvox`` voxel file (ShapeNet's format): run-length encoded occupancy stored with x slowest, then z,
    then y; the header's ``dim`` is read as the x, y, z sizes (binvox grids are cubes in practice). Returned
    ``(X, Y, Z)`` bool, indexed ``[x, y, z]`` like :class:`VoxelGrid`."""
    with open(path, "rb") as f:
        if not f.readline().strip().startswith(b"#binvox"):
            raise ValueError(f"{str(path)!r} is not a binvox file")
        dims = None
        line = f.readline().strip()
        while line != b"data":
            if line.startswith(b"dim"):
                dims = [int(v) for v in line.split()[1:4]]
            line = f.readline().strip()
            if not line:
                raise ValueError(f"{str(path)!r}: no data section")
        if dims is None:
            raise ValueError(f"{str(path)!r}: no dim line")
        raw = np.frombuffer(f.read(), np.uint8)
    values, counts = raw[::2], raw[1::2]
    flat = np.repeat(values.astype(bool), counts)
    if flat.size != int(np.prod(dims)):
        raise ValueError(f"{str(path)!r}: {flat.size} voxels for dims {dims}")
    # binvox stores x slowest, then z, then y: [x, z, y] -> [x, y, z].
    return flat.reshape(dims[0], dims[2], dims[1]).transpose(0, 2, 1)


def load_voxel_folder(path: Union[str, Path], limit: Optional[int] = None) -> np.ndarray:
    """Every ``.npy`` (a 3-D array, non-zero = occupied) or ``.binvox`` file under a folder (sorted by path;
    ShapeNet-style trees work), all of the same shape.

    Returns:
        numpy.ndarray: ``(N, D, H, W)`` float32 in {0, 1}.
    """
    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"path must be a folder of .npy/.binvox voxel files, got {str(path)!r}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".npy", ".binvox"))[:limit]
    if not files:
        raise ValueError(f"no .npy or .binvox files under {str(path)!r}")
    vols: List[np.ndarray] = []
    for f in files:
        v = read_binvox(f) if f.suffix.lower() == ".binvox" else np.load(f)
        if v.ndim != 3:
            raise ValueError(f"{f} holds an array of shape {v.shape}, expected 3 dimensions")
        if vols and v.shape != vols[0].shape:
            raise ValueError(f"{f} has shape {v.shape} but {files[0]} has {vols[0].shape}")
        vols.append(np.asarray(v != 0, np.float32))
    return np.stack(vols)


class VoxelDataset(torch.utils.data.Dataset):
    """Occupancy grids ``(N, D, H, W)`` as PyG ``Data`` on their :class:`VoxelGrid` (``pos`` in :math:`[-1, 1]^3`,
    ``x`` :math:`(DHW, 1)` in {0, 1}), with ``shape_index``.

    Args:
        voxels (array): Occupancies.
        transform (callable, optional): Applied to every item (e.g. :class:`RandomSubset` of 4,096 points).
    """

    def __init__(self, voxels: Any, transform: Optional[Any] = None) -> None:
        v = torch.as_tensor(np.asarray(voxels, dtype=np.float32))
        if v.dim() != 4 or v.size(0) == 0:
            raise ValueError(f"voxels must have shape (N, D, H, W) with N > 0, got {tuple(v.shape)}")
        if not bool(((v == 0) | (v == 1)).all()):
            raise ValueError("voxels must be occupancies in {0, 1}")
        self.voxels, self.transform = v, transform
        self.grid = VoxelGrid(*v.shape[1:])

    def __len__(self) -> int:
        return int(self.voxels.size(0))

    def __getitem__(self, i: int) -> Any:
        data = self.grid.to_data(self.voxels[i])
        data.shape_index = torch.tensor([int(i) % len(self)])
        return self.transform(data) if self.transform is not None else data
