"""Image datasets as point clouds: scikit-learn's digits (embedded), folders of images, MNIST idx files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ._grids import ImageGrid

__all__ = ["load_digits_images", "load_image_folder", "load_mnist_idx", "ImageDataset"]

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def load_digits_images() -> Tuple[np.ndarray, np.ndarray, int]:
    """scikit-learn's handwritten digits (1,797 real 8 x 8 scans, shipped with scikit-learn).

    Returns:
        tuple: images ``(1797, 8, 8, 1)`` float32 in :math:`[0, 1]` (the 17 grey levels 0..16 divided by
        16), labels ``(1797,)`` and the number of levels (17, for a discretized likelihood).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images.astype(np.float32) / 16.0)[..., None]
    return images, d.target.astype(np.int64), 17


def load_image_folder(path: Union[str, Path], size: Union[int, Tuple[int, int]] = 64, channels: int = 3,
                      limit: Optional[int] = None) -> np.ndarray:
    """Every image of a folder (recursively, sorted by path; CelebA-HQ style), centre-cropped to a square
    and resized to ``size``.

    Args:
        path: The folder.
        size (int or (int, int)): Output height and width.
        channels (int): 1 (grey) or 3 (RGB).
        limit (int, optional): Read at most this many.

    Returns:
        numpy.ndarray: ``(N, H, W, channels)`` float32 in :math:`[0, 1]` (8-bit levels / 255).
    """
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"path must be a folder of images, got {str(path)!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    h, w = (size, size) if isinstance(size, int) else size
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise ValueError(f"no images ({', '.join(_IMAGE_SUFFIXES)}) under {str(path)!r}")
    out = np.empty((len(files), h, w, channels), np.float32)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            im = im.convert("L" if channels == 1 else "RGB")
            s = min(im.size)
            left, top = (im.size[0] - s) // 2, (im.size[1] - s) // 2
            im = im.crop((left, top, left + s, top + s)).resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float32) / 255.0
        out[i] = a[..., None] if channels == 1 else a
    return out


def load_mnist_idx(path: Union[str, Path]) -> np.ndarray:
    """Images of an MNIST-format idx file (``train-images-idx3-ubyte``, optionally ``.gz``).

    Returns:
        numpy.ndarray: ``(N, H, W, 1)`` float32 in :math:`[0, 1]` (bytes / 255).
    """
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"cannot read idx file {str(path)!r}: {e}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{str(path)!r} is not an idx file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08 or ndim != 3:
        raise ValueError(f"{str(path)!r} must hold unsigned-byte images (idx3-ubyte), got type 0x{dtype_code:02x} "
                         f"with {ndim} dimensions")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{str(path)!r} is truncated: header says {dims}, found {data.size} bytes")
    return (data.reshape(*dims).astype(np.float32) / 255.0)[..., None]


class ImageDataset(torch.utils.data.Dataset):
    """Images ``(N, H, W, C)`` in :math:`[0, 1]` as PyG ``Data`` on their :class:`ImageGrid` (``pos`` in
    :math:`[-1, 1]^2`, ``x`` :math:`(HW, C)`), with ``image_index``.

    Args:
        images (array): ``(N, H, W)`` or ``(N, H, W, C)``.
        transform (callable, optional): Applied to every item.
    """

    def __init__(self, images: Any, transform: Optional[Any] = None) -> None:
        a = torch.as_tensor(np.asarray(images, dtype=np.float32))
        if a.dim() == 3:
            a = a[..., None]
        if a.dim() != 4 or a.size(0) == 0:
            raise ValueError(f"images must have shape (N, H, W) or (N, H, W, C) with N > 0, got {tuple(a.shape)}")
        if not bool(torch.isfinite(a).all()) or float(a.min()) < 0 or float(a.max()) > 1:
            raise ValueError("images must be finite and scaled to [0, 1]")
        self.images, self.transform = a, transform
        self.grid = ImageGrid(a.size(1), a.size(2))

    def __len__(self) -> int:
        return int(self.images.size(0))

    def __getitem__(self, i: int) -> Any:
        data = self.grid.to_data(self.images[i])
        data.image_index = torch.tensor([int(i) % len(self)])
        return self.transform(data) if self.transform is not None else data

    @property
    def shape(self) -> Sequence[int]:
        """``(H, W, C)``."""
        return tuple(self.images.shape[1:])
