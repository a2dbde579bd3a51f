"""Inputs that used to give silently wrong results (issue "Checkpoints a user can trust ...")."""

import pytest
import torch
from torch_geometric.data import Batch, Data

from pcfunc.data import LatLonGrid
from pcfunc.models import GASP, VaMoH
from pcfunc.nn import LayerSpec

GRID = LatLonGrid.regular(9, 16)


def _batch_with_empty_last_cloud(channels=1):
    full = [Data(x=torch.rand(GRID.num_points, channels), pos=GRID.pos) for _ in range(2)]
    empty = Data(x=torch.zeros(0, channels), pos=torch.zeros(0, 3))
    return Batch.from_data_list(full + [empty])


def test_an_empty_last_cloud_is_an_error_not_a_dropped_result():
    b = _batch_with_empty_last_cloud()
    assert b.num_graphs == 3 and int(b.batch[-1]) == 1  # the last cloud is invisible in batch
    model = VaMoH("sphere", encoder=[LayerSpec(8, 4, num_centroids=32), LayerSpec(8, 4, global_centroid=True)],
                  latent_dim=4, num_components=2, hypernet_hidden=(8,), generator_hidden=(8,), num_frequencies=4,
                  categorical_hidden=(8,), flow_layers=1, likelihood="gaussian").eval()
    for call in (lambda: model.reconstruct(b), lambda: model.inpaint(b, GRID.pos), lambda: model.elbo(b)):
        with pytest.raises(ValueError, match="3 clouds but its last 1 have no points"):
            call()
    gasp = GASP("sphere", latent_dim=4, hypernet_hidden=[8], inr_hidden=[8], num_frequencies=4, disc_channels=[4, 8],
                weight_hidden=[4])
    b.x = b.x * 2 - 1
    with pytest.raises(ValueError, match="3 clouds but its last 1 have no points"):
        gasp.discriminator_loss(b)


def test_gasp_rejects_query_points_off_the_manifold_like_vamoh():
    gasp = GASP("sphere", latent_dim=4, hypernet_hidden=[8], inr_hidden=[8], num_frequencies=4, disc_channels=[4, 8],
                weight_hidden=[4])
    off = GRID.pos * 2  # norm 2
    for call in (lambda: gasp.sample(2, off), lambda: gasp.generate(torch.zeros(2, 4), off)):
        with pytest.raises(ValueError, match="pos"):
            call()
    assert gasp.sample(2, GRID.pos).shape == (2, GRID.num_points, 1)
