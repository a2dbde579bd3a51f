import numpy as np
import pytest
import torch

from pcfunc.data import (VoxelDataset, VoxelGrid, augmented_voxels, load_bunny_points, load_voxel_folder,
                         read_binvox, voxelize_points)


def sphere_points(n=4000, r=0.7, seed=0):
    p = np.random.default_rng(seed).normal(size=(n, 3))
    return r * p / np.linalg.norm(p, axis=1, keepdims=True)


def test_voxelize_a_sampled_sphere_gives_a_solid_ball():
    vol = voxelize_points(sphere_points(), resolution=24, extent=0.8)
    pos = VoxelGrid(24, 24, 24).pos.reshape(24, 24, 24, 3).numpy()
    inside = np.linalg.norm(pos, axis=-1) < 0.8 - 2 * (2 / 23)
    outside = np.linalg.norm(pos, axis=-1) > 0.8 + 2 * (2 / 23)
    assert vol[inside].all()  # filled, not a shell
    assert not vol[outside].any()
    # Volume close to the ball's, the surface cells included (radius r plus half a cell), in cells of (2/23)^3.
    h = 2 / 23
    expected = 4 / 3 * np.pi * (0.8 + h / 2) ** 3 / h ** 3
    assert abs(vol.sum() - expected) / expected < 0.1


def test_bunny_and_augmentation():
    p = load_bunny_points()
    assert p.shape == (2503, 3) and abs(np.linalg.norm(p, axis=1).max() - 1) < 1e-12
    vox = augmented_voxels(p, 3, resolution=16, seed=0)
    assert vox.shape == (3, 16, 16, 16) and set(np.unique(vox)) <= {0.0, 1.0}
    np.testing.assert_array_equal(vox[0], voxelize_points(p, 16))  # the first one is the shape itself
    assert not np.array_equal(vox[1], vox[0])
    assert 0.02 < vox.mean() < 0.3


def test_binvox_and_folder(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.random((4, 5, 6)) > 0.5  # [x, y, z]
    stored = v.transpose(0, 2, 1).reshape(-1)  # binvox order: x, z, y
    runs, vals = [], []
    i = 0
    while i < stored.size:
        j = i
        while j < stored.size and stored[j] == stored[i] and j - i < 255:
            j += 1
        vals.append(int(stored[i]))
        runs.append(j - i)
        i = j
    body = bytes(b for pair in zip(vals, runs) for b in pair)
    (tmp_path / "a.binvox").write_bytes(b"#binvox 1\ndim 4 5 6\ntranslate 0 0 0\nscale 1\ndata\n" + body)
    np.testing.assert_array_equal(read_binvox(tmp_path / "a.binvox"), v)
    np.save(tmp_path / "b.npy", v.astype(np.uint8) * 3)
    out = load_voxel_folder(tmp_path)
    assert out.shape == (2, 4, 5, 6)
    np.testing.assert_array_equal(out[0], v.astype(np.float32))
    np.testing.assert_array_equal(out[1], v.astype(np.float32))
    np.save(tmp_path / "c.npy", np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="has shape"):
        load_voxel_folder(tmp_path)
    with pytest.raises(ValueError, match="folder"):
        load_voxel_folder(tmp_path / "nope")


def test_voxel_dataset_items():
    vox = augmented_voxels(load_bunny_points(), 2, resolution=8)
    ds = VoxelDataset(vox)
    d = ds[1]
    assert d.x.shape == (512, 1) and d.pos.shape == (512, 3) and int(d.shape_index) == 1
    torch.testing.assert_close(ds.grid.to_array(d.x)[..., 0], torch.as_tensor(vox[1]))
    with pytest.raises(ValueError, match="occupancies"):
        VoxelDataset(vox * 0.5)
