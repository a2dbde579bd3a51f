"""Quality harness: train named VaMoH configurations for a fixed number of optimiser steps on a real dataset,
then report every task on held-out fields next to the trivial baselines, and the model's health.

Each variant is trained in this process, one after the other, with the same data, seed and step count, and
scored by :func:`pcfunc.evaluation.evaluate_vamoh`. Prints one table per variant and writes everything to
``--out`` as JSON. With ``--model gasp``, GASP variants are trained the same way (``--steps`` counts batches,
each one discriminator and one generator step) and scored by :func:`pcfunc.evaluation.evaluate_gasp` against
the held-out and the training fields, with a learning curve of the sample statistics.

Examples::

    python benchmarks/quality.py --dataset era5 --variants default paper --steps 1500
    python benchmarks/quality.py --dataset digits --variants default --steps 1500
    python benchmarks/quality.py --dataset era5 --model gasp --variants default ema --steps 1000 --batch-size 8
    python benchmarks/quality.py --dataset file --data hgt_djf.nc --variable z --variants default
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from pcfunc.data import ERA5Dataset, ImageDataset, ImageGrid, LatLonGrid, MinMaxNormalizer, load_digits_images
from pcfunc.evaluation import evaluate_vamoh, format_report, inpainting_masks

# VaMoH variants: keyword overrides of the model (and "module" ones for VaMoHModule). "default" is what
# the examples use; "paper" is the paper's objective (continuous Bernoulli, Monte Carlo KL at weight 1).
VARIANTS: Dict[str, Dict[str, Any]] = {
    "paper": dict(likelihood="continuous_bernoulli"),
    # The default's training without changing the dataset's own likelihood (digits: discretized logistic).
    "default_own_likelihood": dict(init=True, max_dropout=0.0),
    "own_likelihood_dropout": dict(init=True),
    "reference_estimator": dict(likelihood="continuous_bernoulli", kl_estimator="cross_entropy"),
    # What the examples train: Gaussian likelihood with a learned scale, generators started at the mean function,
    # no point dropout (q(z) is refined on the observed points at inference instead, --refine-steps).
    "default": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0),
    # The default with e3nn's real spherical harmonics up to degree 12 (169 features) as the coordinate encoding of the
    # generators and the categorical nets, instead of 128 random Fourier features (256).
    "default_sh12": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                         encoding=("spherical_harmonics", {"lmax": 12})),
    # The default trained with fine supervision: the encoder sees the 4-degree field, the likelihood is evaluated
    # at 4,096 random points of the same field at 1 degree.
    "default_fine": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                         fine_points=4096),
    # ... with a base function (one INR of 3 x 128 units on 256 Fourier features, shared by every field) for the
    # fine detail every field shares.
    "default_fine_base": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                              fine_points=4096, base_hidden=(128, 128, 128)),
    # ... with a predicted (per-point) noise scale: the base function then also carries a static map of the
    # log noise level (heteroscedastic, as the sub-grid detail is: larger over mountains and coasts).
    "default_fine_base_pred": dict(likelihood=("gaussian", dict(scale="predicted")), init=True, max_dropout=0.0,
                                   fine_points=4096, base_hidden=(128, 128, 128)),
    # ... with a wider base function (3 x 256 units on 512 Fourier features): 0.33 K from the mean 1-degree
    # training field when fitted alone (3 x 128 on 256: 0.54 K).
    "default_fine_base256": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                                 fine_points=4096, base_hidden=(256, 256, 256), base_frequencies=512),
    # ... with the base a table on the 1-degree grid (VaMoH(base_grid=...)): the mean's fine detail held exactly.
    "default_fine_table": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                               fine_points=4096, base_grid=(181, 360)),
    # ... with smoother generators (Fourier scale 1 instead of 2): the table holds the static detail, the
    # generators the anomalies (their sub-grid part overfits 18 training fields).
    "default_fine_table_smooth": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                                      fine_points=4096, base_grid=(181, 360), sigma=1.0),
    # ... with beta = 4 on the latent KL: less information per field, less of each field's sub-grid detail learnt.
    "default_fine_table_smooth_beta4": dict(likelihood=("gaussian", dict(scale="learned")), init=True,
                                            max_dropout=0.0, fine_points=4096, base_grid=(181, 360), sigma=1.0,
                                            kl_weight=4.0),
    # ... with still smoother generators (Fourier scale 0.5): the anomalies large-scale, the sub-grid detail the
    # table's (the generators' sub-grid part did not carry over from 18 training fields).
    "default_fine_table_smooth05": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                                        fine_points=4096, base_grid=(181, 360), sigma=0.5),
    "default_fine_table_smooth025": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                                         fine_points=4096, base_grid=(181, 360), sigma=0.25),
    "default_fine_table_smooth0125": dict(likelihood=("gaussian", dict(scale="learned")), init=True, max_dropout=0.0,
                                          fine_points=4096, base_grid=(181, 360), sigma=0.125),
    # ... with a predicted (per-point) noise scale: the table then also holds a static 1-degree map of the log noise
    # level (heteroscedastic, as the sub-grid detail is: larger over mountains and coasts).
    "default_fine_table_smooth05_pred": dict(likelihood=("gaussian", dict(scale="predicted")), init=True,
                                             max_dropout=0.0, fine_points=4096, base_grid=(181, 360), sigma=0.5),
    "default_fine_table_smooth025_pred": dict(likelihood=("gaussian", dict(scale="predicted")), init=True,
                                              max_dropout=0.0, fine_points=4096, base_grid=(181, 360), sigma=0.25),
    "default_fine_table_smooth05_beta4": dict(likelihood=("gaussian", dict(scale="learned")), init=True,
                                              max_dropout=0.0, fine_points=4096, base_grid=(181, 360), sigma=0.5,
                                              kl_weight=4.0),
    "default_fine_table_smooth_beta16": dict(likelihood=("gaussian", dict(scale="learned")), init=True,
                                             max_dropout=0.0, fine_points=4096, base_grid=(181, 360), sigma=1.0,
                                             kl_weight=16.0),
    "gaussian_learned": dict(likelihood=("gaussian", dict(scale="learned", init_scale=0.05))),
    "gaussian_fixed": dict(likelihood=("gaussian", dict(scale="fixed", init_scale=0.02))),
    "no_dropout": dict(max_dropout=0.0),
    "gaussian_learned_init_beta10": dict(likelihood=("gaussian", dict(scale="learned", init_scale=0.05)), init=True,
                                         kl_weight=10.0),
    "gaussian_fixed_init": dict(likelihood=("gaussian", dict(scale="fixed", init_scale=0.02)), init=True),
    "gaussian_learned_init_nodrop": dict(likelihood=("gaussian", dict(scale="learned", init_scale=0.05)), init=True,
                                         max_dropout=0.0),
    "gaussian_predicted": dict(likelihood=("gaussian", dict(scale="predicted"))),
    "gaussian_learned_init": dict(likelihood=("gaussian", dict(scale="learned", init_scale=0.05)), init=True),
    "gaussian_learned_init_drop25": dict(likelihood=("gaussian", dict(scale="learned", init_scale=0.05)), init=True,
                                         max_dropout=0.25),
    "gaussian_predicted_init": dict(likelihood=("gaussian", dict(scale="predicted")), init=True),
    "paper_init": dict(likelihood="continuous_bernoulli", init=True),
    "gaussian_learned_init_ln": dict(likelihood=("gaussian", dict(scale="learned", init_scale=0.05)), init=True,
                                     encoder_norm="layer"),
    "gaussian_predicted_init_ln": dict(likelihood=("gaussian", dict(scale="predicted")), init=True,
                                       encoder_norm="layer"),
    "paper_ln": dict(likelihood="continuous_bernoulli", encoder_norm="layer"),
    "gaussian_learned_init_in": dict(likelihood=("gaussian", dict(scale="learned", init_scale=0.05)), init=True,
                                     encoder_norm="instance"),
    "gaussian_learned_init_nonorm": dict(likelihood=("gaussian", dict(scale="learned", init_scale=0.05)),
                                         init=True, encoder_norm="none"),
}

# GASP variants: "init" starts the generator at the training fields' mean function (the examples' default);
# "ema" samples from an exponential moving average of the weights (decay per batch); "lr" scales both learning
# rates of GASP App. A.1.
GASP_VARIANTS: Dict[str, Dict[str, Any]] = {
    "default": dict(init=True),
    "no_init": dict(),
    "ema": dict(init=True, ema=0.999),
    "lr_half": dict(init=True, lr=0.5),
}


def era5_data(resolution: float = 4.0) -> Dict[str, Any]:
    """The embedded ERA5 sample on a ``resolution``-degree grid, split 75/25 in time, normalised to [0, 1]."""
    from pcfunc.data import load_era5_sample, split_by_time

    field = load_era5_sample()
    n_lat, n_lon = int(round(180 / resolution)) + 1, int(round(360 / resolution))
    coarse = field.regrid(np.linspace(90.0, -90.0, n_lat), np.arange(n_lon) * (360.0 / n_lon))
    train_f, test_f = split_by_time(coarse, (0.75, 0.25))
    norm = MinMaxNormalizer.fit(train_f)
    grid = LatLonGrid(coarse.lat, coarse.lon)
    fine = LatLonGrid(field.lat, field.lon)
    t = lambda v: torch.as_tensor(norm.transform(v, clip=True), dtype=torch.float32)[..., None]  # noqa: E731
    n_train = train_f.values.shape[0]
    test_fine = fine.to_batch(t(field.values[n_train:])).x.view(-1, fine.num_points, 1)
    train_fine = fine.to_batch(t(field.values[:n_train])).x.view(n_train, fine.num_points, 1)
    fine_train_field = field.select_time(np.arange(n_train))

    def fine_dataset(points: int, seed: int) -> ERA5Dataset:  # fine supervision: targets drawn from the 1-degree field
        return ERA5Dataset(train_f, norm, target=fine_train_field, target_points=points,
                           generator=torch.Generator().manual_seed(seed))

    return dict(name="era5", grid=grid, train=grid.to_batch(t(train_f.values)).x.view(n_train, -1, 1),
                test=grid.to_batch(t(test_f.values)).x.view(-1, grid.num_points, 1),
                dataset=ERA5Dataset(train_f, norm), fine=(fine, test_fine, train_fine), scale=norm.range,
                units=coarse.units, masks=inpainting_masks(grid), fine_dataset=fine_dataset)


def file_data(path: Path, variable: str) -> Dict[str, Any]:
    """Any gridded NetCDF/Zarr file (global or a regional box) on its own grid, split 75/25 in time, in [0, 1]."""
    from pcfunc.data import load_era5, split_by_time

    field = load_era5(path, variable)
    train_f, test_f = split_by_time(field, (0.75, 0.25))
    norm = MinMaxNormalizer.fit(train_f)
    grid = LatLonGrid(field.lat, field.lon)
    t = lambda v: torch.as_tensor(norm.transform(v, clip=True), dtype=torch.float32)[..., None]  # noqa: E731
    n_train = train_f.values.shape[0]
    return dict(name=f"file:{Path(path).name}", grid=grid,
                train=grid.to_batch(t(train_f.values)).x.view(n_train, -1, 1),
                test=grid.to_batch(t(test_f.values)).x.view(-1, grid.num_points, 1),
                dataset=ERA5Dataset(train_f, norm), fine=None, scale=norm.range,
                units=field.units or "", masks=box_masks(grid))


def box_masks(grid: LatLonGrid) -> Dict[str, torch.Tensor]:
    """Observed masks inside any lat/lon box: a cap at the box's centre (radius a sixth of its latitude extent)
    hidden, and the box's western half hidden."""
    from pcfunc.manifolds import latlon_to_xyz, xyz_to_latlon

    pos = grid.pos.double()
    lat, lon = xyz_to_latlon(pos)
    lat_c = float(lat.min() + lat.max()) / 2
    lon_r = torch.remainder(lon - float(lon[0]) + 180.0, 360.0) - 180.0  # relative to the first column, unwrapped
    lon_c = float(lon[0]) + float(lon_r.min() + lon_r.max()) / 2
    centre = latlon_to_xyz(torch.tensor(lat_c, dtype=torch.float64), torch.tensor(lon_c, dtype=torch.float64))
    radius = math.radians(float(lat.max() - lat.min()) / 6)
    in_patch = torch.acos((pos @ centre).clamp(-1, 1)) < radius
    west = lon_r < float(lon_r.min() + lon_r.max()) / 2
    return {"patch": ~in_patch, "half": ~west}


def digits_data() -> Dict[str, Any]:
    """scikit-learn's digits (8 x 8, 17 levels): the first 90% for training, the last 10% held out."""
    images, _, levels = load_digits_images()
    n_train = int(0.9 * len(images))
    H, W, C = images.shape[1:]
    grid = ImageGrid(H, W)
    flat = lambda a: grid.to_batch(torch.as_tensor(a)).x.view(len(a), -1, C)  # noqa: E731
    rows, cols = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    centre = (((rows - (H - 1) / 2).abs() < H / 4) & ((cols - (W - 1) / 2).abs() < W / 4)).reshape(-1)
    return dict(name="digits", grid=grid, train=flat(images[:n_train]), test=flat(images[n_train:]),
                dataset=ImageDataset(images[:n_train]), fine=None, scale=1.0, units="", levels=levels,
                masks={"centre_hidden": ~centre, "centre_only": centre})


def build_vamoh(data: Dict[str, Any], variant: Dict[str, Any]):
    from pcfunc.models import VaMoH
    from pcfunc.nn import get_likelihood

    kw = dict(variant)
    kw.pop("init", None)
    kw.pop("fine_points", None)
    lik = kw.pop("likelihood", None)
    if isinstance(lik, tuple):
        lik = get_likelihood(lik[0], **lik[1])
    if data["name"] == "era5":
        model = VaMoH.from_config("era5", **era5_small(), **({} if lik is None else {"likelihood": lik}), **kw)
    elif data["name"].startswith("file:"):
        n = data["grid"].num_points
        cents = [max(4, n // 4 ** (i + 1)) for i in range(4)]
        enc = [dict(out_channels=w, num_neighbors=9, num_centroids=c) for w, c in zip((32, 64, 128, 32), cents)]
        small = {**era5_small(), "encoder": enc}
        model = VaMoH.from_config("era5", **small, **({} if lik is None else {"likelihood": lik}), **kw)
    else:
        from pcfunc.nn import DiscretizedLogisticLikelihood

        C = data["train"].size(-1)
        n = data["grid"].num_points
        cents = [max(4, n // 2), max(4, n // 8), max(4, n // 32)]
        enc = [dict(out_channels=w, num_neighbors=min(9, c if i == 0 else cents[i - 1]), num_centroids=c)
               for i, (w, c) in enumerate(zip((32, 64, 128), cents))]
        if lik is None:
            lik = DiscretizedLogisticLikelihood(C, num_bins=data["levels"])
        model = VaMoH(data["grid"].manifold, in_channels=C, encoder=enc, likelihood=lik, **{
            **dict(latent_dim=16, num_components=4, hypernet_hidden=(64, 128), generator_hidden=(32, 32, 32),
                   num_frequencies=64, sigma=1.0, categorical_hidden=(32, 32), flow_layers=3,
                   weight_hidden=(16, 16)), **kw})
    return model


def era5_small() -> Dict[str, Any]:
    """The examples' "small" ERA5 configuration."""
    return dict(encoder=[dict(out_channels=32, num_neighbors=9, num_centroids=1024),
                         dict(out_channels=64, num_neighbors=9, num_centroids=256),
                         dict(out_channels=128, num_neighbors=9, num_centroids=64),
                         dict(out_channels=32, num_neighbors=9, num_centroids=16)],
                weight_hidden=[16, 16], hypernet_hidden=[128, 256], generator_hidden=[32, 32, 32])


def quick_psnr(model, data: Dict[str, Any]) -> Dict[str, float]:
    """Reconstruction PSNR of the held-out and of the first 16 training fields (a learning curve's point)."""
    from pcfunc.evaluation import score
    from pcfunc.evaluation._harness import points_batch

    grid, out = data["grid"], {}
    recalibrate(model, data, 8)
    for name, values in (("test_psnr", data["test"][:16]), ("train_psnr", data["train"][:16])):
        rec = model.reconstruct(points_batch(grid, values), grid.pos.to(values.dtype))
        out[name] = round(score(rec, values)["psnr"], 2)
    return out


def recalibrate(model, data: Dict[str, Any], batch_size: int, fields: int = 64) -> None:
    """Precise BatchNorm on the first ``fields`` training fields, as :class:`~pcfunc.training.VaMoHModule` does."""
    from torch_geometric.data import Batch

    items = [data["dataset"][i] for i in range(min(fields, len(data["dataset"])))]
    model.recalibrate_encoder(Batch.from_data_list(items[s:s + batch_size]) for s in range(0, len(items), batch_size))


def train_vamoh(model, data: Dict[str, Any], steps: int, batch_size: int, lr: float, warmup_steps: int,
                seed: int, log_every: int = 100, fine_points: Optional[int] = None
                ) -> Tuple[Any, List[Dict[str, float]], float]:
    """Adam on the negative ELBO for ``steps`` optimiser steps (the same loop as
    :class:`~pcfunc.training.VaMoHModule`, without Lightning). With ``fine_points``, the likelihood is evaluated
    at that many random points of the fine training fields (fine supervision)."""
    from torch_geometric.loader import DataLoader

    from pcfunc.data import target_points
    from pcfunc.training import step_generator

    torch.manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    if fine_points is not None and "fine_dataset" not in data:
        raise SystemExit(f"fine supervision needs a dataset with finer fields; {data['name']} has none")
    dataset = data["dataset"] if fine_points is None else data["fine_dataset"](fine_points, seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=False,
                        generator=torch.Generator().manual_seed(seed))
    model.train()
    log, step, t0 = [], 0, time.perf_counter()
    while step < steps:
        for batch in loader:
            model.warmup = step < warmup_steps
            target = None if fine_points is None else target_points(batch)
            out = model.elbo(batch, generator=step_generator(seed, step), target=target)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1000.0)
            opt.step()
            step += 1
            if step % log_every == 0 or step == steps:
                row = {"step": step, "seconds": round(time.perf_counter() - t0, 1), **out.scalars(),
                       **quick_psnr(model, data)}
                model.train()
                log.append(row)
                print(json.dumps(row), flush=True)
            if step >= steps:
                break
    recalibrate(model, data, batch_size)
    return model.eval(), log, time.perf_counter() - t0


def build_gasp(data: Dict[str, Any]):
    """The examples' GASP sizes: ERA5's "small" configuration, or the images example's."""
    from pcfunc.models import GASP

    if data["name"] == "digits":
        return GASP(data["grid"].manifold, in_channels=data["train"].size(-1), latent_dim=32,
                    hypernet_hidden=(128, 256), inr_hidden=(64, 64, 64), num_frequencies=64, sigma=1.0,
                    disc_channels=(32, 64), weight_hidden=(16, 16))
    return GASP.from_config("era5", hypernet_hidden=[128, 256], inr_hidden=[64, 64, 64],
                            disc_channels=[16, 32, 64, 128], weight_hidden=[16, 16])


def gasp_figures(model, data: Dict[str, Any], seed: int) -> Dict[str, Any]:
    """The harness's sample statistics (against the held-out and the training fields), GASP's [-1, 1] mapped back."""
    from pcfunc.evaluation import evaluate_gasp

    model.eval()
    rep = evaluate_gasp(model, data["grid"], data["test"], train=data["train"], num_samples=32,
                        transform=lambda v: (v + 1) / 2, scale=data["scale"], seed=seed)
    model.train()
    return rep


def train_gasp(model, data: Dict[str, Any], variant: Dict[str, Any], steps: int, batch_size: int, seed: int,
               log_every: int) -> Tuple[Any, List[Dict[str, Any]], float]:
    """Alternating discriminator and generator Adam steps, as :class:`~pcfunc.training.GASPModule` does (without
    Lightning); ``steps`` counts batches. With ``ema``, the returned model's generator holds the moving average."""
    import copy

    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from pcfunc.evaluation._harness import points_batch
    from pcfunc.training import step_generator

    torch.manual_seed(seed)
    lr = variant.get("lr", 1.0)
    opt_g = torch.optim.Adam(model.hypernet.parameters(), lr=1e-4 * lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=4e-4 * lr, betas=(0.5, 0.999))
    ema = (AveragedModel(model.hypernet, multi_avg_fn=get_ema_multi_avg_fn(variant["ema"]))
           if variant.get("ema") else None)
    num_points = None if data["name"] == "digits" else 2048
    train = data["train"] * 2 - 1
    g = torch.Generator().manual_seed(seed)
    log: List[Dict[str, Any]] = []
    t0 = time.perf_counter()

    def figures():  # of the averaged generator, if any, swapped in for the evaluation
        if ema is None:
            return gasp_figures(model, data, seed)
        current = copy.deepcopy(model.hypernet.state_dict())
        model.hypernet.load_state_dict(ema.module.state_dict())
        try:
            return gasp_figures(model, data, seed)
        finally:
            model.hypernet.load_state_dict(current)

    model.train()
    for step in range(steps):
        idx = torch.randint(0, train.size(0), (batch_size,), generator=g)
        real = points_batch(data["grid"], train[idx])
        terms = model.discriminator_loss(real, num_points=num_points, generator=step_generator(seed, step))
        opt_d.zero_grad(set_to_none=True)
        terms.loss.backward()
        opt_d.step()
        for p in model.discriminator.parameters():
            p.requires_grad_(False)
        loss = model.generator_loss(real, num_points=num_points, generator=step_generator(seed, step, 1000))
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        for p in model.discriminator.parameters():
            p.requires_grad_(True)
        if ema is not None:
            ema.update_parameters(model.hypernet)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            h = figures()["health"]
            row = {"step": step + 1, "seconds": round(time.perf_counter() - t0, 1),
                   "d_loss": float(terms.loss.detach()), "g_loss": float(loss.detach())}
            for key, name in (("samples", "test"), ("samples_vs_train", "train")):
                row.update({f"{name}_mean_rmse": round(h[key]["mean_rmse"], 4),
                            f"{name}_spread_ratio": round(h[key]["spread_ratio"], 3),
                            f"{name}_energy": round(h[key]["energy_distance"], 4)})
            log.append(row)
            print(json.dumps(row), flush=True)
    if ema is not None:
        model.hypernet.load_state_dict(ema.module.state_dict())
    return model, log, time.perf_counter() - t0


def run_gasp(args: argparse.Namespace, data: Dict[str, Any]) -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    for name in args.variants:
        variant = GASP_VARIANTS[name]
        print(f"== {args.dataset} / GASP {name}: {args.steps} batches of {args.batch_size}", flush=True)
        torch.manual_seed(args.seed)
        model = build_gasp(data)
        if variant.get("init"):
            tr = data["train"]
            model.initialize_generator(data["grid"].pos.repeat(tr.size(0), 1), tr.reshape(-1, tr.size(-1)) * 2 - 1,
                                       generator=torch.Generator().manual_seed(args.seed))
        model, log, secs = train_gasp(model, data, variant, args.steps, args.batch_size, args.seed, args.log_every)
        report = gasp_figures(model, data, args.seed)
        report.update(variant=name, batches=args.steps, batch_size=args.batch_size, train_seconds=round(secs, 1),
                      log=log)
        print(format_report(report, data["units"]), flush=True)
        results[name] = report
        (args.out / f"{args.dataset}_gasp_{name}.json").write_text(json.dumps(report, indent=1))
    return results


def uncertainty(model, data: Dict[str, Any], args: argparse.Namespace) -> Dict[str, Any]:
    """Coverage and CRPS of the predictive on the held-out fields, each calibrated on the others (leave one field
    out), next to the baselines and the model output statistics."""
    from pcfunc.evaluation import evaluate_uncertainty

    test = data["test"]
    if test.size(0) < 2:
        raise SystemExit("the uncertainty figures need at least 2 held-out fields (calibration and scoring)")
    fine = data.get("fine")
    fine_kw = {} if fine is None else dict(fine=(fine[0], fine[1], fine[2]))
    return evaluate_uncertainty(model, data["grid"], data["train"], test, masks=data["masks"],
                                calibration="leave_one_out", num_samples=args.predictive_samples,
                                scale=data["scale"],
                                seed=args.seed, refine_steps=args.refine_steps,
                                residual_neighbors=args.residual_neighbors, residual_kernel=args.residual_kernel,
                                **fine_kw)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["era5", "digits", "file"], default="era5",
                   help="era5: the embedded sample at 4 degrees (1 degree for super-resolution); "
                        "digits: scikit-learn's; "
                        "file: --data PATH --variable NAME, any gridded NetCDF/Zarr file on its own grid")
    p.add_argument("--data", type=Path, default=None, help="the file for --dataset file")
    p.add_argument("--variable", default=None, help="its variable")
    p.add_argument("--model", choices=["vamoh", "gasp"], default="vamoh")
    p.add_argument("--variants", nargs="+", default=["default"], metavar="VARIANT",
                   help=f"variants to train: VaMoH's {sorted(VARIANTS)}; GASP's {sorted(GASP_VARIANTS)}")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=150)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refine-steps", type=int, default=100,
                   help="steps refining q(z) on the observed points at evaluation (0: the encoder alone)")
    p.add_argument("--log-every", type=int, default=100, help="steps between learning-curve points")
    p.add_argument("--save", action="store_true", help="also save each trained model's state_dict to --out")
    p.add_argument("--predictive-samples", type=int, default=0,
                   help="posterior draws for the uncertainty figures (coverage, CRPS) on the held-out fields, each "
                        "calibrated on the others (default 0: none)")
    p.add_argument("--load", type=Path, default=None,
                   help="evaluate the state_dicts DIR/DATASET_VARIANT.pt saved by --save instead of training")
    p.add_argument("--residual-neighbors", type=int, default=4,
                   help="super-resolution with the model's residuals from this many coarse neighbours (default: 4)")
    p.add_argument("--residual-kernel", choices=["idw", "linear"], default="idw",
                   help="how the residuals are interpolated: idw (default) or linear (a local linear RBF)")
    p.add_argument("--out", type=Path, default=Path("outputs/quality"))
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.dataset == "file":
        if args.data is None or args.variable is None:
            p.error("--dataset file needs --data PATH and --variable NAME")
        data = file_data(args.data, args.variable)
    else:
        data = era5_data() if args.dataset == "era5" else digits_data()
    args.out.mkdir(parents=True, exist_ok=True)
    known = GASP_VARIANTS if args.model == "gasp" else VARIANTS
    unknown = [v for v in args.variants if v not in known]
    if unknown:
        p.error(f"unknown {args.model} variants {unknown}; choose from {sorted(known)}")
    if args.model == "gasp":
        return run_gasp(args, data)
    results: Dict[str, Any] = {}
    for name in args.variants:
        print(f"== {args.dataset} / {name}: {args.steps} steps at batch {args.batch_size}", flush=True)
        model = build_vamoh(data, VARIANTS[name])
        if args.load is not None:
            model.load_state_dict(torch.load(args.load / f"{args.dataset}_{name}.pt", weights_only=True))
            model.eval()
            log, secs = [], 0.0
        elif VARIANTS[name].get("init"):
            t0 = time.perf_counter()
            # At the mean of the points the likelihood will see: the fine fields under fine supervision.
            grid, tr = data["grid"], data["train"]
            if VARIANTS[name].get("fine_points"):
                grid, tr = data["fine"][0], data["fine"][2]
            nll = model.initialize_generators(grid.pos.repeat(tr.size(0), 1), tr.reshape(-1, tr.size(-1)),
                                              generator=torch.Generator().manual_seed(args.seed))
            print(f"initialize_generators: NLL per point {nll:.4f} in {time.perf_counter() - t0:.1f} s", flush=True)
        if args.load is None:
            model, log, secs = train_vamoh(model, data, args.steps, args.batch_size, args.lr, args.warmup_steps,
                                           args.seed, args.log_every, VARIANTS[name].get("fine_points"))
            if args.save:
                torch.save(model.state_dict(), args.out / f"{args.dataset}_{name}.pt")
        t0 = time.perf_counter()
        report = evaluate_vamoh(model, data["grid"], data["train"], data["test"], masks=data["masks"],
                                fine=data.get("fine"), scale=data["scale"], seed=args.seed,
                                refine_steps=args.refine_steps, residual_neighbors=args.residual_neighbors,
                                residual_kernel=args.residual_kernel)
        if args.predictive_samples:
            report["uncertainty"] = uncertainty(model, data, args)
        report.update(variant=name, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      train_seconds=round(secs, 1), eval_seconds=round(time.perf_counter() - t0, 1), log=log)
        print(format_report(report, data["units"]), flush=True)
        results[name] = report
        (args.out / f"{args.dataset}_{name}.json").write_text(json.dumps(report, indent=1))
    return results


if __name__ == "__main__":
    main()
