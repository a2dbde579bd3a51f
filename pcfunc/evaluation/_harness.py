"""The quality harness: a trained model's tasks on held-out fields, next to the baselines, and its health."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..data import Grid, LatLonGrid
from ..manifolds import xyz_to_latlon
from ._baselines import (BilinearDownscaling, PCABaseline, _check_fields, observed_mask, training_mean, valid_points,
                         zonal_mean_fill)
from ._health import active_units, mixture_usage, sample_statistics
from ._kriging import ResidualKriging
from ._points import RefineSteps, _chunks, _refine_record, points_batch, refine_steps_for
from ._scoring import _spectra, score
from ._uncertainty import evaluate_uncertainty

__all__ = ["evaluate_vamoh", "evaluate_gasp"]


def _lat(grid: Grid) -> Optional[Tensor]:
    if isinstance(grid, LatLonGrid):
        return xyz_to_latlon(grid.pos.double())[0]
    return None


def evaluate_vamoh(model: Any, grid: Grid, train: Tensor, test: Tensor, *,
                   masks: Optional[Mapping[str, Tensor]] = None,
                   fine: Optional[Tuple[Grid, Tensor]] = None,
                   pca_components: Optional[int] = None, scale: Union[float, Sequence[float]] = 1.0,
                   data_range: float = 1.0,
                   num_prior_samples: int = 32, max_train_fields: int = 64, fields_per_call: int = 16,
                   seed: int = 0, refine_steps: RefineSteps = 0, residual_neighbors: int = 4,
                   residual_kernel: str = "idw",
                   calibration: Optional[Union[Tensor, Tuple[Tensor, Optional[Tensor]], str]] = None,
                   predictive_samples: int = 0, kriging: Union[bool, ResidualKriging] = True,
                   progress: Optional[Callable[[str], None]] = None,
                   on_task: Optional[Callable[[str, Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    r"""Every task of a trained :class:`~pcfunc.models.VaMoH` on held-out fields, next to the baselines.

    Tasks (each scored by :func:`score` on the points it predicts):

    * ``reconstruction`` of the held-out fields and ``reconstruction_train`` of (up to ``max_train_fields``)
      training fields, from all their points: VaMoH against the training mean and PCA with
      ``pca_components`` components (default: the latent dimension) fitted on the training fields;
    * ``inpaint_<name>`` for each observed mask of ``masks`` (bool :math:`(N,)`, ``True`` = observed), scored on
      the hidden points: VaMoH against the training mean, PCA fitted to the observed points, and on a
      :class:`~pcfunc.data.LatLonGrid` the zonal mean of the observed points; with ``kriging``, VaMoH and PCA also
      with their residuals at the observed points kriged into the hidden ones (``vamoh_kriged``,
      ``pca_<k>_kriged``: :class:`~pcfunc.evaluation.ResidualKriging`, regression kriging);
    * ``super_resolution`` when ``fine`` = ``(fine_grid, fine_test)`` gives the same held-out fields on finer
      points: VaMoH evaluated there from the coarse fields against, on lat/lon grids, bilinear interpolation
      of the coarse field; with ``fine = (fine_grid, fine_test, fine_train)`` (the training fields on the
      fine points too) also against bilinear interpolation plus the training fields' mean sub-grid residual
      :math:`\frac1T \sum_t (\mathbf y^{\text{fine}}_t - \mathrm{bilinear}(\mathbf y_t))`
      (``bilinear_mean_residual``, the first statistical downscaling a climate scientist tries); and
      ``vamoh_residuals``, the model plus its interpolated residuals at the coarse points. On a global
      latitude/longitude fine grid without missing values each method's row also has ``lsd``, the mean
      log-spectral distance (dB) of its fields' spherical-harmonic power spectra to the truth's
      (:func:`~pcfunc.metrics.power_spectrum`), and the report ``spectra``: the mean spectrum of the truth and of
      each method by degree (does the method have the small-scale variance of the real fields?);

    Uncertainty (``uncertainty``, with ``predictive_samples`` :math:`\geq 2`): the coverage of the predictive
    intervals and the CRPS of the in-painting and super-resolution tasks, raw and recalibrated on
    ``calibration``, next to Gaussian baselines (:func:`~pcfunc.evaluation.evaluate_uncertainty`).

    Health (``health``): active latent dimensions (:func:`~pcfunc.evaluation.active_units`) on the held-out
    and on the training fields, the posterior mixture's usage (:func:`~pcfunc.evaluation.mixture_usage`) on
    the held-out fields, and :func:`~pcfunc.evaluation.sample_statistics` of ``num_prior_samples`` prior
    samples against the held-out fields. ``elbo``: the ELBO and its terms per point on the held-out fields
    (no point dropout).

    Args:
        model (VaMoH): A trained model (put in eval mode here).
        grid (Grid): The points of ``train`` and ``test``.
        train (Tensor): Training fields :math:`(T, N, C)`, normalised as the model saw them.
        test (Tensor): Held-out fields :math:`(B, N, C)` (with :math:`B = 1` the figures that need a variance
            over fields, active units and prior-sample spread, are ``None``).
        masks (dict, optional): Name to observed mask for in-painting.
        fine (tuple, optional): ``(fine_grid, fine_test)`` or ``(fine_grid, fine_test, fine_train)``, with
            ``fine_test`` :math:`(B, M, C)` and ``fine_train`` :math:`(T, M, C)`.
        pca_components (int, optional): Components of the PCA baseline.
        scale (float or sequence of float): RMSE (and spreads) multiplied by it: data units (e.g. the
            normaliser's range; one per channel for a field of several variables, whose scores then also
            list each channel alone).
        data_range (float): PSNR peak value (default: 1, data in :math:`[0, 1]`).
        num_prior_samples (int): Prior samples for the spread figures.
        max_train_fields (int): Training fields reconstructed (the first ones).
        fields_per_call (int): Fields per forward pass (memory).
        seed (int): Seed of the prior samples and the ELBO's latent sample.
        refine_steps (int or dict): Passed to ``reconstruct``, ``inpaint`` and ``predictive`` (semi-amortised
            inference); ``0``: the encoder alone. ``{"reconstruction": n, "inpainting": m}``: ``n`` for the fields
            observed everywhere (reconstruction, super-resolution), ``m`` for the in-painting masks.
        residual_neighbors (int): Super-resolution also with the model's residuals at the coarse points
            interpolated from this many neighbours (``reconstruct(..., residual_neighbors=k)``, row
            ``vamoh_residuals``); ``0``: not.
        residual_kernel (str): How (``reconstruct(..., residual_kernel=...)``: ``"idw"`` or ``"linear"``).
        calibration (Tensor, tuple or str, optional): Calibration fields, or ``"leave_one_out"``, for the
            uncertainty figures, see :func:`~pcfunc.evaluation.evaluate_uncertainty`.
        predictive_samples (int): Posterior draws per field for the uncertainty figures; ``0``: none.
            (default: ``0``)
        kriging (bool or ResidualKriging): The in-painting rows with kriged residuals: ``True`` with
            :class:`~pcfunc.evaluation.ResidualKriging`'s defaults, or one configured; ``False``: none.
            (default: ``True``)
        progress (callable, optional): Called with one line as each task ends (``"reconstruction: 12.3 s"``),
            e.g. ``print``; the harness can take minutes with refinement. (default: silent)
        on_task (callable, optional): Called with each task's name and its rows as the task ends (``"health"``
            with the health figures, ``"uncertainty"`` with that report), e.g. to write them to a file, so that a
            later failure does not lose them. (default: none)

    Returns:
        dict: ``{"tasks": {task: {method: {"psnr", "rmse", "points"[, "rmse_weighted", "bias_weighted",
        "lsd"]}}}, "health": {...}, "elbo": {...}[, "spectra": {...}]}``, JSON-serialisable;
        :func:`~pcfunc.evaluation.format_report` prints it as a table.
    """
    _check_fields(train, "train")
    _check_fields(test, "test")
    N = grid.num_points
    for name, t in (("train", train), ("test", test)):
        if t.size(1) != N:
            raise ValueError(f"{name} has {t.size(1)} points per field but grid has {N}")
    if test.size(0) < 1:
        raise ValueError("test must hold at least one field")
    model.eval()
    k = pca_components if pca_components is not None else model.latent_dim
    pca = PCABaseline(train, k)
    mean = training_mean(train)
    lat = _lat(grid)
    B = test.size(0)
    tasks: Dict[str, Dict[str, Dict[str, float]]] = {}
    # Area-weighted RMSE and bias beside the papers' unweighted figures on a latitude/longitude grid.
    areas = grid.point_areas if isinstance(grid, LatLonGrid) and min(grid.shape) >= 2 else None
    sc = lambda p, t, h=None, w=areas: score(p, t, h, data_range, scale, w)  # noqa: E731

    def run(fn: Callable[[Tensor], Tensor], values: Tensor) -> Tensor:
        return torch.cat([fn(values[s]) for s in _chunks(values.size(0), fields_per_call)])

    record = _refine_record(refine_steps)
    refine = dict(refine_steps=refine_steps_for(refine_steps, partial=False))
    refine_partial = dict(refine_steps=refine_steps_for(refine_steps, partial=True))

    def rec(values: Tensor) -> Tensor:
        return model.reconstruct(points_batch(grid, values), grid.pos.to(values.dtype), **refine).to(values.dtype)

    clock = [time.perf_counter()]

    def done(what: str, task: Optional[str] = None, rows: Optional[Dict[str, Any]] = None) -> None:
        """One line per finished task, with its time; its rows to ``on_task``."""
        now = time.perf_counter()
        if progress is not None:
            progress(f"{what}: {now - clock[0]:.1f} s")
        if on_task is not None and task is not None:
            on_task(task, rows if rows is not None else tasks[task])
        clock[0] = now

    pca_name = f"pca_{pca.num_components}"
    krige = ResidualKriging() if kriging is True else (kriging or None)
    if krige is not None and not isinstance(krige, ResidualKriging):
        raise TypeError(f"kriging must be a bool or a ResidualKriging, got {type(kriging).__name__}")
    for task, values in (("reconstruction", test), ("reconstruction_train", train[:max_train_fields])):
        tasks[task] = {"vamoh": sc(run(rec, values), values),
                       "training_mean": sc(mean.expand_as(values), values),
                       pca_name: sc(pca.reconstruct(values), values)}
        done(f"{task} ({values.size(0)} fields)", task)
    for name, observed in (masks or {}).items():
        obs = observed_mask(observed, 1, N, f"masks[{name!r}]")[0]
        hidden = ~obs
        if not bool(hidden.any()) or not bool(obs.any()):
            raise ValueError(f"masks[{name!r}] must observe some points and hide some")

        def inp(values: Tensor, obs: Tensor = obs) -> Tensor:
            return model.inpaint(points_batch(grid, values, obs), grid.pos.to(values.dtype),
                                 **refine_partial).to(values.dtype)

        preds = {"vamoh": run(inp, test), "training_mean": mean.expand_as(test), pca_name: pca.reconstruct(test, obs)}
        if krige is not None:  # each prediction plus its residuals at the observed points, kriged
            preds.update({f"{m}_kriged": krige(grid.pos, preds[m], test, obs) for m in ("vamoh", pca_name)})
        row = {m: sc(p, test, hidden) for m, p in preds.items()}
        if lat is not None:
            row["zonal_mean"] = sc(zonal_mean_fill(test, lat, obs), test, hidden)
        tasks[f"inpaint_{name}"] = row
        done(f"inpaint_{name}", f"inpaint_{name}")
    report_spectra: Optional[Dict[str, Any]] = None
    if fine is not None:
        if not isinstance(fine, (tuple, list)) or len(fine) not in (2, 3, 4):
            raise ValueError("fine must be (fine_grid, fine_test[, fine_train[, fine_calibration]])")
        fine_grid, fine_test = fine[0], fine[1]
        fine_train = fine[2] if len(fine) >= 3 else None
        _check_fields(fine_test, "fine[1]")
        if fine_test.size(0) != B or fine_test.size(1) != fine_grid.num_points:
            raise ValueError(f"fine[1] must have shape [{B}, {fine_grid.num_points}, C], got {tuple(fine_test.shape)}")
        if fine_train is not None:
            _check_fields(fine_train, "fine[2]")
            if fine_train.shape != (train.size(0), fine_grid.num_points, train.size(-1)):
                raise ValueError(f"fine[2] must have shape [{train.size(0)}, {fine_grid.num_points}, "
                                 f"{train.size(-1)}] (the training fields on the fine points), got "
                                 f"{tuple(fine_train.shape)}")
        fpos = fine_grid.pos.to(test.dtype)
        fine_areas = fine_grid.point_areas if isinstance(fine_grid, LatLonGrid) and min(fine_grid.shape) >= 2 else None
        sc = lambda p, t, h=None, w=fine_areas: score(p, t, h, data_range, scale, w)  # noqa: E731
        preds = {"vamoh": torch.cat([model.reconstruct(points_batch(grid, test[s]), fpos, **refine).to(test.dtype)
                                     for s in _chunks(B, fields_per_call)])}
        if residual_neighbors:
            preds["vamoh_residuals"] = torch.cat([
                model.reconstruct(points_batch(grid, test[s]), fpos, residual_neighbors=residual_neighbors,
                                  residual_kernel=residual_kernel, **refine).to(test.dtype)
                for s in _chunks(B, fields_per_call)])
        if isinstance(grid, LatLonGrid):
            from ._baselines import _bilinear, _filled

            preds["bilinear"] = _bilinear(grid, _filled(test, mean), fine_grid)
            if fine_train is not None:
                # The one-line statistical downscaling: bilinear plus the training fields' mean sub-grid residual.
                preds["bilinear_mean_residual"] = BilinearDownscaling(grid, fine_grid, train, fine_train).predict(test)
        row = {name: sc(pred, fine_test) for name, pred in preds.items()}
        found = _spectra(fine_grid, fine_test, preds)
        if found is not None:  # a global grid without missing values: the small-scale variance of each method
            report_spectra, lsd = found
            for name, distance in lsd.items():
                row[name]["lsd"] = distance
        tasks["super_resolution"] = row
        done("super_resolution", "super_resolution")

    # Health figures.
    def means(values: Tensor) -> Tensor:
        with torch.no_grad():
            return torch.cat([model.encode(points_batch(grid, values[s]))[0]
                              for s in _chunks(values.size(0), fields_per_call)])

    # Figures that need a variance over fields are None with a single held-out field.
    health: Dict[str, Any] = {"active_units_test": active_units(means(test)) if B >= 2 else None,
                              "latent_dim": int(model.latent_dim)}
    tr = train[:max_train_fields]
    if tr.size(0) >= 2:
        health["active_units_train"] = active_units(means(tr))
    valid = valid_points(test)
    if bool(valid.all()):
        probs = torch.cat([model.component_maps(points_batch(grid, test[s]), posterior=True).probs
                           for s in _chunks(B, fields_per_call)])
    else:  # fields of different sizes: one at a time, on a dense (B, N, K) array masked by the valid points
        probs = torch.full((B, N, model.num_components), 1.0 / model.num_components, dtype=test.dtype)
        for b in range(B):
            probs[b, valid[b]] = model.component_maps(points_batch(grid, test[b:b + 1]), posterior=True).probs[0].to(
                test.dtype)
    health["mixture"] = mixture_usage(probs, valid)
    g = torch.Generator().manual_seed(seed)
    samples = torch.cat([model.sample(min(fields_per_call, num_prior_samples - s), grid.pos.to(test.dtype),
                                      generator=g).to(test.dtype)
                         for s in range(0, num_prior_samples, fields_per_call)])
    complete = valid.all(0)  # the spread figures compare fields point by point: points no test field misses
    health["prior_samples"] = sample_statistics(samples[:, complete], test[:, complete], scale) \
        if B >= 2 and num_prior_samples >= 2 and bool(complete.any()) else None
    with torch.no_grad():
        terms = [model.elbo(points_batch(grid, test[s]), dropout=False, generator=g)
                 for s in _chunks(B, fields_per_call)]
    npts = torch.cat([t.num_points for t in terms]).double()
    per_point = lambda name: float((torch.cat([getattr(t, name) for t in terms]).double() / npts).mean())  # noqa: E731
    elbo = {name: per_point(name) for name in ("elbo", "log_likelihood", "kl_z", "kl_c")}
    report = {"tasks": tasks, "health": health, "elbo_per_point": elbo, "refine_steps": record,
              "fields": {"train": int(train.size(0)), "test": int(B), "points": int(N)}}
    if report_spectra is not None:
        report["spectra"] = report_spectra
    done("health", "health", health)
    if predictive_samples:
        report["uncertainty"] = evaluate_uncertainty(
            model, grid, train, test, masks=masks, fine=fine, calibration=calibration,
            num_samples=predictive_samples, scale=scale, fields_per_call=fields_per_call, seed=seed,
            refine_steps=refine_steps, residual_neighbors=residual_neighbors, residual_kernel=residual_kernel)
        done(f"uncertainty ({predictive_samples} draws per field)", "uncertainty", report["uncertainty"])
    return report


def evaluate_gasp(model: Any, grid: Grid, test: Tensor, *, train: Optional[Tensor] = None, num_samples: int = 64,
                  transform: Optional[Callable[[Tensor], Tensor]] = None,
                  scale: Union[float, Sequence[float]] = 1.0,
                  seed: int = 0) -> Dict[str, Any]:
    r"""Samples of a trained :class:`~pcfunc.models.GASP` against held-out fields (and the training fields).

    A generative model can at best reproduce the distribution of its training fields. Where the held-out
    fields come from another time (a chronological split of a reanalysis), even that ideal sampler is off:
    pass ``train`` and the report holds, besides the samples against the held-out fields, the samples
    against the training fields (what the model was asked to learn) and the **training fields used as
    samples** against the held-out fields (the figure a perfect sampler of the training distribution gets).

    Args:
        model (GASP): A trained model.
        grid (Grid): The points of ``test``; the samples are drawn there.
        test (Tensor): Held-out fields :math:`(R, N, C)` in the data's normalised range.
        train (Tensor, optional): The training fields :math:`(T, N, C)`, :math:`T \ge 2`, on the same points.
        num_samples (int): Samples drawn (at least 2).
        transform (callable, optional): Maps the model's outputs to the range of ``test`` (GASP's features are
            in :math:`[-1, 1]`; for data in :math:`[0, 1]` pass ``lambda v: (v + 1) / 2``).
        scale (float or sequence of float): Multiplies the figures (data units; one per channel for several).
        seed (int): Seed of the samples.

    Returns:
        dict: ``{"health": {"samples": sample_statistics(samples, test)}}``; with ``train`` also
        ``"samples_vs_train": sample_statistics(samples, train)`` and
        ``"train_as_samples": sample_statistics(train, test)``.
    """
    _check_fields(test, "test")
    if train is not None:
        _check_fields(train, "train")
        if train.shape[1:] != test.shape[1:] or train.size(0) < 2:
            raise ValueError(f"train must have shape [T, N, C] with T >= 2 and test's [N, C] "
                             f"{tuple(test.shape[1:])}, got {tuple(train.shape)}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2, got {num_samples}")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        s = model.sample(num_samples, grid.pos.to(test.dtype), generator=g).to(test.dtype)
    if transform is not None:
        s = transform(s)
    health = {"samples": sample_statistics(s, test, scale)}
    fields = {"test": int(test.size(0)), "points": int(grid.num_points), "samples": int(num_samples)}
    if train is not None:
        health["samples_vs_train"] = sample_statistics(s, train.to(s.dtype), scale)
        health["train_as_samples"] = sample_statistics(train.to(s.dtype), test, scale)
        fields["train"] = int(train.size(0))
    return {"health": health, "fields": fields}
