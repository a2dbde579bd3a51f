import pytest
import torch
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from pcfunc.data import ERA5Dataset, MinMaxNormalizer, PointDropout, RandomSubset, load_era5_sample, split_by_time


def _cloud(n=1000):
    pos = torch.randn(n, 3)
    return Data(pos=pos, x=torch.arange(n, dtype=torch.float32)[:, None], y=torch.tensor([7.0]))


def test_point_dropout_rate_and_floor():
    g = torch.Generator().manual_seed(0)
    t = PointDropout(0.5, min_points=10, generator=g)
    kept = []
    for _ in range(400):
        d = t(_cloud())
        idx = d.x[:, 0].long()
        assert bool((idx[1:] > idx[:-1]).all())  # original order, no repeats
        assert d.y.item() == 7.0  # graph-level attributes untouched
        kept.append(d.num_nodes)
    kept = torch.tensor(kept, dtype=torch.float64)
    # E[kept] = N (1 - E[p]) = 1000 * (1 - 0.25); p ~ U(0, 0.5) so kept spans about [500, 1000].
    assert abs(kept.mean().item() - 750) < 15 and kept.min() > 450 and kept.max() <= 1000
    d = PointDropout(0.99, min_points=900, generator=g)(_cloud())
    assert d.num_nodes >= 900
    with pytest.raises(ValueError, match="max_rate must be in"):
        PointDropout(1.0)
    with pytest.raises(ValueError, match="fewer than min_points"):
        PointDropout(0.1, min_points=2000)(_cloud())


def test_random_subset_keeps_rows_together():
    d = _cloud(50)
    s = RandomSubset(20, generator=torch.Generator().manual_seed(1))(d)
    idx = s.x[:, 0].long()
    assert s.num_nodes == 20 and torch.equal(s.pos, d.pos[idx]) and idx.unique().numel() == 20
    same = RandomSubset(100)(d)
    assert torch.equal(same.pos, d.pos) and torch.equal(same.x, d.x)
    with pytest.raises(ValueError, match="num_points must be"):
        RandomSubset(0)


def test_era5_dataset_batches():
    train, val = split_by_time(load_era5_sample().subsample(4), (0.75, 0.25))
    norm = MinMaxNormalizer.fit(train)
    ds = ERA5Dataset(train, norm)
    assert len(ds) == 18 and ds.grid.num_points == 3962
    item = ds[3]
    assert item.x.shape == (3962, 1) and 0.0 <= float(item.x.min()) and float(item.x.max()) <= 1.0
    # Values at the grid points are the normalised array values (interior rows untouched by pole merging).
    assert torch.allclose(item.x[1:91, 0], torch.as_tensor(norm.transform(train.values[3, 1])), atol=1e-6)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.num_graphs == 4 and batch.pos.shape == (4 * 3962, 3)
    dropped = ERA5Dataset(val, norm, transform=PointDropout(0.5, min_points=1024))[0]
    assert 1024 <= dropped.num_nodes <= 3962
    with pytest.raises(IndexError):
        ds[18]


def test_to_symmetric_maps_unit_features_to_gasps_range():
    from torch_geometric.data import Data

    from pcfunc.data import ToSymmetric

    d = Data(x=torch.tensor([[0.0], [0.25], [1.0]]), pos=torch.zeros(3, 3), target_x=torch.tensor([[0.5]]))
    out = ToSymmetric()(d.clone())
    assert out.x[:, 0].tolist() == [-1.0, -0.5, 1.0] and out.target_x.tolist() == [[0.0]]
    torch.testing.assert_close(out.pos, d.pos)
