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


def test_gasp_refuses_a_non_finite_discriminator_gradient_before_the_update(tmp_path):
    # The losses are finite; one discriminator weight's gradient is NaN. Nothing may be updated with it.
    from pcfunc.training import FunctionDataModule, GASPModule, NonFiniteLossError, fit, make_trainer

    from tests.training.test_training import GASP_TINY, _gasp_data

    torch.manual_seed(0)
    module = GASPModule.from_config("era5", num_points=40, seed=3, **GASP_TINY)
    weight = next(module.model.discriminator.parameters())
    weight.register_hook(lambda g: g * float("nan"))
    before = {k: v.detach().clone() for k, v in module.model.named_parameters()}
    trainer = make_trainer(tmp_path, max_steps=4, checkpoint_every=2, accelerator="cpu", progress_bar=False,
                           tensorboard=False, log_every=1, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match="non-finite discriminator gradient at batch 0"):
        fit(trainer, module, FunctionDataModule(_gasp_data(), batch_size=4, seed=1))
    for k, v in module.model.named_parameters():  # parameters (BatchNorm's running statistics move in forward)
        torch.testing.assert_close(v.detach(), before[k], msg=k)


def test_unhelpful_data_errors_now_name_the_file_or_argument(tmp_path):
    import numpy as np

    from pcfunc.data import ERA5Dataset, MinMaxNormalizer, load_era5, load_era5_sample

    bad = tmp_path / "not_netcdf.nc"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="not_netcdf.nc' is not a NetCDF file or Zarr store"):
        load_era5(bad)
    field = load_era5_sample()
    with pytest.raises(ValueError, match="field has no time steps"):
        ERA5Dataset(field.select_time(np.arange(0)), MinMaxNormalizer.fit(field))


def test_reduced_precision_positions_work_in_fps_and_knn():
    # bfloat16/float16 positions used to fail inside the default backend ("unsupported ScalarType BFloat16").
    from pcfunc.ops import fps, knn

    x = torch.rand(60, 3, generator=torch.Generator().manual_seed(0)).bfloat16().float()  # exact in bfloat16
    for dtype in (torch.bfloat16, torch.float16):
        assert fps(x.to(dtype), num=6).tolist() == fps(x, num=6).tolist()
        torch.testing.assert_close(knn(x.to(dtype), x[:5].to(dtype), 3), knn(x, x[:5], 3))
