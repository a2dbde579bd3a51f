import gzip
import struct

import numpy as np
import pytest
import torch

from pcfunc.data import ImageDataset, ImageGrid, load_digits_images, load_image_folder, load_mnist_idx


def test_digits_are_real_and_normalised():
    images, labels, levels = load_digits_images()
    assert images.shape == (1797, 8, 8, 1) and labels.shape == (1797,) and levels == 17
    assert images.min() == 0.0 and images.max() == 1.0
    # The 17 grey levels i / 16 only.
    np.testing.assert_allclose(np.unique(images * 16), np.arange(17))


def test_mnist_idx_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    raw = struct.pack(">BBBB", 0, 0, 0x08, 3) + struct.pack(">III", 5, 28, 28) + imgs.tobytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(raw)
    with gzip.open(tmp_path / "t.gz", "wb") as f:
        f.write(raw)
    for name in ("train-images-idx3-ubyte", "t.gz"):
        out = load_mnist_idx(tmp_path / name)
        assert out.shape == (5, 28, 28, 1)
        np.testing.assert_array_equal(np.round(out[..., 0] * 255).astype(np.uint8), imgs)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an idx file"):
        load_mnist_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="truncated"):
        load_mnist_idx(tmp_path / "short")


def test_image_folder(tmp_path):
    from PIL import Image

    a = np.zeros((20, 30, 3), np.uint8)
    a[:, :15] = 255  # left half white
    (tmp_path / "sub").mkdir()
    Image.fromarray(a).save(tmp_path / "sub" / "a.png")
    Image.fromarray(255 - a).save(tmp_path / "b.jpg", quality=100)
    out = load_image_folder(tmp_path, size=10)
    assert out.shape == (2, 10, 10, 3)
    # Centre crop of 20 x 20 from columns 5..25, then resized: left half bright, right half dark (a.png,
    # which sorts after b.jpg by path "sub/a.png").
    img = out[1]
    assert img[:, :3].mean() > 0.9 and img[:, -3:].mean() < 0.1
    assert load_image_folder(tmp_path, size=(4, 6), channels=1).shape == (2, 4, 6, 1)
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(tmp_path / "sub" / "..", limit=0)
    with pytest.raises(ValueError, match="folder"):
        load_image_folder(tmp_path / "missing")


def test_image_dataset_items():
    images, _, _ = load_digits_images()
    ds = ImageDataset(images[:10])
    assert len(ds) == 10 and ds.shape == (8, 8, 1)
    d = ds[3]
    assert d.x.shape == (64, 1) and d.pos.shape == (64, 2) and int(d.image_index) == 3
    torch.testing.assert_close(ImageGrid(8, 8).to_array(d.x)[..., 0], torch.as_tensor(images[3, ..., 0]))
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        ImageDataset(images[:2] * 16)
