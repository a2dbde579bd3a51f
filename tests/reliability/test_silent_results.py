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
    with pytest.raises(ValueError, match="not_netcdf.nc' is not a NetCDF file, Zarr store or GRIB file"):
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


def _tiny_vamoh():
    return VaMoH("sphere", encoder=[LayerSpec(8, 4, num_centroids=32), LayerSpec(8, 4, global_centroid=True)],
                 latent_dim=4, num_components=2, hypernet_hidden=(8,), generator_hidden=(8,), num_frequencies=4,
                 categorical_hidden=(8,), flow_layers=1, likelihood="gaussian")


def test_unhelpful_model_errors_now_name_the_argument_and_the_fix():
    from pcfunc.nn import FunctionRepresentation, PointConv

    # A name that needs arguments: used to be "Euclidean.__init__() missing 1 required positional argument".
    with pytest.raises(TypeError, match=r"'euclidean' cannot be built.*Euclidean\(dim=2\)"):
        PointConv(1, 8, 9, manifold="euclidean")
    # A zero-size weight batch: used to be reported as "num_functions must be a positive integer, got 0".
    fr = FunctionRepresentation(3, 1, (8,))
    with pytest.raises(ValueError, match=r"weights holds no function \(shape \(0, "):
        fr(GRID.pos, torch.zeros(0, fr.num_weights))
    # A float64 batch into a float32 model: used to be "mat1 and mat2 must have the same dtype".
    model = _tiny_vamoh().eval()
    b64 = Batch.from_data_list([Data(x=torch.rand(GRID.num_points, 1, dtype=torch.float64),
                                     pos=GRID.pos.double()) for _ in range(2)])
    for call in (lambda: model.elbo(b64), lambda: model.reconstruct(b64)):
        with pytest.raises(TypeError, match=r"batch.x is torch.float64 but the model's parameters are torch.float32"):
            call()
    model.double()
    assert model.reconstruct(b64).dtype == torch.float64  # the advice works
    # A meta tensor: used to be "Tensor.item() cannot be called on meta tensors".
    meta = Batch.from_data_list([Data(x=torch.rand(GRID.num_points, 1).to("meta"), pos=GRID.pos.to("meta"))])
    with pytest.raises(ValueError, match="batch.pos is a meta tensor"):
        _tiny_vamoh().elbo(meta)
    # GASP with too few points for its discriminator levels: used to be "k=9 is larger than cloud 0 of x".
    gasp = GASP.from_config("era5")
    assert gasp.discriminator.min_points == 513  # 4 levels pooling to 1/4 with 9 neighbours: 9 * 4**3 < 513
    pos = torch.nn.functional.normalize(torch.randn(512, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    few = Batch.from_data_list([Data(x=torch.rand(512, 1) * 2 - 1, pos=pos)])
    with pytest.raises(ValueError, match="each cloud needs at least 513 points .* cloud 0 has 512"):
        gasp.discriminator_loss(few)


def test_point_conv_net_min_points_is_the_exact_threshold():
    # Brute force: the smallest cloud that runs through the network, against the computed bound.
    from pcfunc.nn import PointConvNet

    specs = [LayerSpec(4, 5, ratio=0.5, pool_neighbors=3, pool_ratio=0.5), LayerSpec(4, 7, num_centroids=6),
             LayerSpec(4, 3, num_centroids=4, pool_neighbors=2, pool_centroids=50)]
    net = PointConvNet(1, specs, "sphere", weight_hidden=(4,), cache=None)
    ok = []
    for n in range(20, 40):
        pos = torch.nn.functional.normalize(torch.randn(n, 3, generator=torch.Generator().manual_seed(n)), dim=-1)
        try:
            net.features(torch.rand(n, 1), pos)
            ok.append(n)
        except ValueError:
            pass
    assert ok and ok[0] == net.min_points and ok == list(range(ok[0], 40))


def test_expver_advice_is_to_combine_era5_and_era5t(tmp_path):
    import numpy as np
    import xarray as xr

    from pcfunc.data import load_era5

    v = np.full((2, 2, 3, 4), np.nan, dtype=np.float32)
    v[0, 0], v[1, 1] = 280.0, 281.0  # time 0 final (expver 1), time 1 preliminary (expver 5)
    ds = xr.Dataset({"t2m": (("expver", "time", "latitude", "longitude"), v)},
                    coords={"expver": [1, 5], "time": np.array(["2020-01-01", "2020-02-01"], dtype="datetime64[ns]"),
                            "latitude": [90.0, 0.0, -90.0], "longitude": [0.0, 90.0, 180.0, 270.0]})
    with pytest.raises(ValueError, match="combine_first") as e:
        load_era5(ds)
    # The advice, followed literally, loads every time step.
    cmd = str(e.value).split("e.g. ")[1].split(", and pass")[0]
    scope = {"ds": ds}
    exec(cmd, scope)
    field = load_era5(scope["da"].to_dataset())
    assert field.values[:, 0, 0].tolist() == [280.0, 281.0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_inner_layers_turn_non_finite_inputs_into_non_finite_outputs(bad):
    # The documented contract of the unchecked inner layers: garbage in, non-finite out (never a finite value).
    from pcfunc.nn import FunctionRepresentation, HyperNetwork, PlanarFlow, PointConv

    g = torch.Generator().manual_seed(0)
    for act in ("leaky_relu", "tanh"):
        flow = PlanarFlow(4, activation=act)
        y = torch.randn(3, 4, generator=g)
        y[1, 2] = bad
        for out, logdet in (flow(y), flow.inverse(y)):
            assert out.isfinite().all(-1).tolist() == [True, False, True]
            assert logdet.isfinite().tolist() == [True, False, True]  # a NaN once picked a leaky-ReLU slope
    hyper = HyperNetwork(4, (8,), FunctionRepresentation(3, 1, (8,)))
    z = torch.randn(2, 4, generator=g)
    z[0, 1] = bad
    assert (~hyper(z).isfinite()).any(-1).tolist() == [True, False]
    conv = PointConv(1, 4, 5, manifold="sphere", weight_hidden=(4,), cache=None)
    x = torch.rand(GRID.num_points, 1, generator=g)
    x[7] = bad
    out = conv(x, GRID.pos)[0]
    assert not out.isfinite().all()
    model = _tiny_vamoh()  # ... and the model boundary says so
    with pytest.raises(ValueError, match="batch.x contains NaN or Inf"):
        model.elbo(Data(x=x, pos=GRID.pos))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_latents_are_refused_at_the_public_boundary(bad):
    # They used to decode to NaN fields with no error.
    vamoh = _tiny_vamoh().eval()
    gasp = GASP("sphere", latent_dim=4, hypernet_hidden=[8], inr_hidden=[8], num_frequencies=4, disc_channels=[4, 8],
                weight_hidden=[4])
    z = torch.zeros(2, 4)
    z[1, 2] = bad
    with pytest.raises(ValueError, match=r"latents contains NaN or Inf values \(1 rows\)"):
        vamoh.decode(z, GRID.pos)
    with pytest.raises(ValueError, match="latents contains NaN or Inf"):
        vamoh.interpolate(z[1], z[0], GRID.pos, steps=3)
    with pytest.raises(ValueError, match=r"z contains NaN or Inf values \(1 rows\)"):
        gasp.generate(z, GRID.pos)
    with pytest.raises(ValueError, match=r"z must have shape \[B, 4\]"):
        gasp.generate(torch.zeros(2, 3), GRID.pos)
    # Finite latents still decode.
    assert torch.isfinite(vamoh.decode(z[:1], GRID.pos)).all() and torch.isfinite(gasp.generate(z[:1], GRID.pos)).all()
