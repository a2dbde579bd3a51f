"""Whether VaMoH's predictive intervals mean what they say: coverage and CRPS on hidden points, raw and
recalibrated on held-out calibration fields, next to Gaussian baselines."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..data import Grid, LatLonGrid
from ..metrics import crps_gaussian, fit_std_scale, interval_coverage, pit_histogram
from ._baselines import BilinearDownscaling, _check_fields, _nan_moments, observed_mask, valid_points
from ._mos import OutputStatistics
from ._points import RefineSteps, _chunks, points_batch, refine_steps_for
from ._scoring import channel_scale, score

__all__ = ["evaluate_uncertainty"]

LEVELS = (0.5, 0.9)


def _select(mean: Tensor, std: Tensor, truth: Tensor, hidden: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """The scored points: ``hidden`` (bool :math:`(N,)`; ``None``: all) where ``truth`` is not missing; packed
    :math:`(P, C)` when some are missing, else :math:`(B, N', C)`."""
    valid = valid_points(truth)
    if bool(valid.all()):
        return (mean, std, truth) if hidden is None else (mean[:, hidden], std[:, hidden], truth[:, hidden])
    mask = valid if hidden is None else valid & hidden
    return mean[mask], std[mask], truth[mask]


def _scores(mean: Tensor, std: Tensor, truth: Tensor, hidden: Optional[Tensor], scale: Any,
            factors: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Coverage of the central 50% and 90% intervals and the mean CRPS (times ``scale``), each with its own
    factor of ``std`` (``factors``: ``{"crps", "coverage_50", "coverage_90"}``, each a number or one per field;
    ``None``: the raw spread), over the hidden points that are not missing; with the CRPS's factor also the
    spread-skill ratio and the PIT histogram (10 bins)."""

    B = truth.size(0)
    f = factors or {}

    def scaled(key: str) -> Tuple[Tensor, Tensor, Tensor]:
        k = f.get(key, 1.0)
        k = torch.as_tensor(k, dtype=std.dtype).view(-1, *([1] * (std.dim() - 1))) if isinstance(k, list) else k
        return _select(mean, std * k, truth, hidden)

    out: Dict[str, Any] = {}
    for lv in LEVELS:
        key = f"coverage_{int(100 * lv)}"
        out[key] = float(interval_coverage(*scaled(key), lv).double().mean())
    m, s, t = scaled("crps")
    units = channel_scale(scale, truth.size(-1)).to(m.device)  # CRPS in data units, channel by channel
    m, s, t = m.double() * units, s.double() * units, t.double() * units
    out["crps"] = float(crps_gaussian(m, s, t).mean())
    # With the CRPS's spread: spread (root mean variance) over skill (RMSE of the mean), 1 when calibrated; and the
    # PIT histogram (flat when calibrated).
    out["spread_skill"] = float(s.square().mean().sqrt() / (m - t).square().mean().sqrt())
    out["pit_histogram"] = [round(float(v), 4) for v in pit_histogram(m, s.clamp_min(1e-30), t)]
    out["points"] = int(t.size(1)) if t.dim() == 3 else int(round(t.size(0) / B))
    accuracy = score(mean, truth, hidden, scale=scale)
    out["psnr"], out["rmse"] = accuracy["psnr"], accuracy["rmse"]
    if factors is not None:
        out["std_scale"] = dict(factors)
    return out


def _factors(mean: Tensor, std: Tensor, truth: Tensor, hidden: Optional[Tensor]) -> Dict[str, float]:
    """Factors fitted on calibration predictions: CRPS-optimal, and split-conformal for each level."""
    mean, std, truth = _select(mean, std, truth, hidden)
    out = {"crps": fit_std_scale(mean, std, truth)}
    for lv in LEVELS:
        out[f"coverage_{int(100 * lv)}"] = fit_std_scale(mean, std, truth, level=lv)
    return out


def _others(B: int) -> List[List[int]]:
    """For each of ``B`` fields, the indices of the others (leave-one-field-out)."""
    return [[j for j in range(B) if j != i] for i in range(B)]


def _loo_factors(mean: Tensor, std: Tensor, truth: Tensor, hidden: Optional[Tensor]) -> Dict[str, List[float]]:
    """Each field's factors fitted on the other fields (cross-conformal calibration)."""
    per = [_factors(mean[o], std[o], truth[o], hidden) for o in _others(truth.size(0))]
    return {k: [p[k] for p in per] for k in per[0]}


def evaluate_uncertainty(model: Any, grid: Grid, train: Tensor, test: Tensor, *,
                         masks: Optional[Mapping[str, Tensor]] = None,
                         fine: Optional[Sequence[Any]] = None,
                         calibration: Optional[Union[Tensor, Tuple[Tensor, Optional[Tensor]]]] = None,
                         num_samples: int = 16, scale: Union[float, Sequence[float]] = 1.0, fields_per_call: int = 8,
                         seed: int = 0,
                         refine_steps: RefineSteps = 0, residual_neighbors: int = 4,
                         residual_kernel: str = "idw") -> Dict[str, Any]:
    r"""Calibration of :meth:`VaMoH.predictive <pcfunc.models.VaMoH.predictive>` on hidden points: the coverage of
    its central 50% and 90% Gaussian intervals :math:`\mu \pm \Phi^{-1}(\tfrac{1 + p}{2})\,\sigma` and its mean
    CRPS (:func:`~pcfunc.metrics.crps_gaussian`), for in-painting (the hidden points of each mask) and
    super-resolution (every fine point).

    Rows of each task:

    * ``vamoh``: the predictive as the model gives it (``num_samples`` posterior draws, observation noise
      included; for super-resolution with ``residual_neighbors`` the draws pass through the coarse values);
    * ``vamoh_calibrated`` (with ``calibration``): the same with its standard deviation multiplied by factors
      fitted on the calibration fields (:func:`~pcfunc.metrics.fit_std_scale`): the CRPS-optimal factor for the
      CRPS and the split-conformal factor of each level for its coverage, listed under ``std_scale``;
    * baselines, Gaussians of training statistics: for in-painting ``climatology``, the training fields' mean
      and standard deviation at each point; for super-resolution on a :class:`~pcfunc.data.LatLonGrid` with
      training fields on the fine points, ``bilinear_mean_residual``, bilinear interpolation plus the mean
      sub-grid residual with the residuals' standard deviation at each point; each also ``..._calibrated``;
    * ``vamoh_mos`` (with a baseline): model output statistics (:class:`OutputStatistics`) over the scored
      points: the model's posterior mean plus its mean error on the training fields (their reconstruction,
      :meth:`~pcfunc.models.VaMoH.reconstruct`, in-painted or super-resolved like the test fields), blended with
      the baseline's mean (climatology; bilinear plus the mean residual) by a weight fitted on the calibration
      fields (``weight``; 1 without them), its standard deviation the corrected errors' spread on the training
      fields and the posterior's (``Predictive.spread``, from the same pass as ``vamoh``); also
      ``vamoh_mos_calibrated``.

    One predictive pass per task and field gives both the intervals and the posterior's spread, and the training
    fields are decoded once each (no draws).

    Calibrated intervals cover their level on the calibration fields by construction; on the test fields they
    do when the errors of both come from one distribution (fields from the same season, say). With
    ``calibration="leave_one_out"`` the factors of each field are fitted on the others (``std_scale`` and
    ``weight`` then list one value per field).

    Args:
        model (VaMoH): A trained model.
        grid (Grid): The points of ``train``, ``test`` and the calibration fields.
        train (Tensor): Training fields :math:`(T, N, C)`, for the baselines.
        test (Tensor): Held-out fields :math:`(B, N, C)`, scored.
        masks (dict, optional): Name to observed mask (bool :math:`(N,)`) for in-painting.
        fine (sequence, optional): ``(fine_grid, fine_test[, fine_train[, fine_calibration]])`` as for
            :func:`evaluate_vamoh`, with the calibration fields on the fine points last.
        calibration (Tensor, tuple or str, optional): Calibration fields :math:`(K, N, C)`, held out from training
            and from ``test``; or ``(fields, fine_fields)`` with the same fields on the fine points
            :math:`(K, M, C)` (then super-resolution is calibrated too); or ``"leave_one_out"``: every test field
            is scored with factors (and the MOS weight) fitted on the other test fields (cross-conformal
            calibration: every held-out field is scored, each calibrated on more fields than a split leaves).
        num_samples (int): Posterior draws per field (at least 2).
        scale (float or sequence of float): CRPS multiplied by it (data units; one per channel for several).
        fields_per_call (int): Fields per forward pass (memory).
        seed (int): Seed of the draws.
        refine_steps (int or dict): Refinement of the posterior (``predictive(refine_steps=...)``), one count or
            ``{"reconstruction": n, "inpainting": m}`` (see :func:`~pcfunc.evaluation.evaluate_vamoh`).
        residual_neighbors (int): For super-resolution (``predictive(residual_neighbors=...)``).
        residual_kernel (str): Likewise (``predictive(residual_kernel=...)``: ``"idw"`` or ``"linear"``).

    Returns:
        dict: ``{task: {method: {"coverage_50", "coverage_90", "crps", "spread_skill", "pit_histogram", "psnr",
        "rmse", "points"[, "std_scale"][, "weight"]}}}``, with the PSNR and RMSE (times ``scale``) of each
        method's mean on the scored points; ``spread_skill`` is the root mean predictive variance over the mean's
        RMSE (1 when calibrated, below 1 over-confident) and ``pit_histogram`` the shares of the truths' predictive
        CDF values in 10 equal bins (:func:`~pcfunc.metrics.pit_histogram`; flat when calibrated), both with the
        CRPS's spread.
    """
    _check_fields(train, "train")
    _check_fields(test, "test")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise ValueError(f"num_samples must be an integer of at least 2, got {num_samples!r}")
    N = grid.num_points
    for name, t in (("train", train), ("test", test)):
        if t.size(1) != N:
            raise ValueError(f"{name} has {t.size(1)} points per field but grid has {N}")
    loo = isinstance(calibration, str)
    if loo and calibration != "leave_one_out":
        raise ValueError(f"calibration must be fields, (fields, fine_fields) or 'leave_one_out', got {calibration!r}")
    if loo and test.size(0) < 2:
        raise ValueError(f"calibration='leave_one_out' needs at least 2 test fields, got {test.size(0)}")
    cal, cal_fine = (calibration, None) if isinstance(calibration, Tensor) or calibration is None else \
        (None, None) if loo else calibration
    if cal is not None:
        _check_fields(cal, "calibration")
        if cal.size(1) != N or cal.size(-1) != test.size(-1):
            raise ValueError(f"calibration must have shape [K, {N}, {test.size(-1)}], got {tuple(cal.shape)}")

    model.eval()
    g = torch.Generator().manual_seed(seed)

    def predict(values: Tensor, observed: Optional[Tensor], pos: Tensor, k: int) -> Tuple[Tensor, Tensor, Tensor]:
        """The predictive ``(mean, std, spread)`` of every field: one pass gives the intervals (noise included) and
        the inferred function's spread (model output statistics)."""
        parts = [model.predictive(points_batch(grid, values[s], observed), pos.to(values.dtype),
                                  num_samples=num_samples, generator=g,
                                  refine_steps=refine_steps_for(refine_steps, observed is not None),
                                  residual_neighbors=k, residual_kernel=residual_kernel)
                 for s in _chunks(values.size(0), fields_per_call)]
        return tuple(torch.cat([getattr(p, a) for p in parts]).to(values.dtype)  # type: ignore[return-value]
                     for a in ("mean", "std", "spread"))

    def fit_means(values: Tensor, observed: Optional[Tensor], pos: Tensor, k: int) -> Tensor:
        """The model's reconstruction of training fields (one decoding at the posterior mean, no draws): model
        output statistics learn its errors there."""
        return torch.cat([model.reconstruct(points_batch(grid, values[s], observed), pos.to(values.dtype),
                                            refine_steps=refine_steps_for(refine_steps, observed is not None),
                                            residual_neighbors=k,
                                            residual_kernel=residual_kernel).to(values.dtype)
                          for s in _chunks(values.size(0), fields_per_call)])

    Pair = Tuple[Tensor, Tensor]

    def rows(methods: Mapping[str, Tuple[Pair, Optional[Pair]]], truth: Tensor, cal_truth: Optional[Tensor],
             hidden: Optional[Tensor]) -> Dict[str, Dict[str, Any]]:
        """Each method's (mean, std) on the scored fields, raw and calibrated on its (mean, std) of the
        calibration fields."""
        out: Dict[str, Dict[str, Any]] = {}
        for name, (test_pred, cal_pred) in methods.items():
            out[name] = _scores(*test_pred, truth, hidden, scale)
            if loo:
                out[f"{name}_calibrated"] = _scores(*test_pred, truth, hidden, scale,
                                                    _loo_factors(*test_pred, truth, hidden))
            elif cal_truth is not None and cal_pred is not None:
                out[f"{name}_calibrated"] = _scores(*test_pred, truth, hidden, scale,
                                                    _factors(*cal_pred, cal_truth, hidden))
        return out

    def add_mos(methods: Dict[str, Any], tp: Pair, cp: Optional[Pair], train_mean: Tensor, ref: Any,
                test_truth: Tensor, cal_truth: Optional[Tensor], train_truth: Tensor, hidden: Optional[Tensor]) -> Any:
        """Model output statistics of the model's posterior mean and spread (``tp`` on the test fields, ``cp`` on
        the calibration fields; ``train_mean`` its reconstruction of the training fields) against the reference
        ``ref``, over the ``hidden`` points, as ``methods["vamoh_mos"]`` (elsewhere the model's own); returns the
        weight, or one per field with ``loo``."""
        sel = (lambda t: t) if hidden is None else (lambda t: t[:, hidden])  # noqa: E731
        cp = None if cal_truth is None else cp
        mos = OutputStatistics(sel(train_mean), sel(train_truth), sel(ref(train)))
        r_test, r_cal = ref(test), None if cp is None else ref(cal)

        def put(pred: Tuple[Tensor, Tensor], corrected: Tuple[Tensor, Tensor]) -> Tuple[Tensor, Tensor]:
            if hidden is None:
                return corrected
            m, s = pred[0].clone(), pred[1].clone()
            m[:, hidden], s[:, hidden] = corrected
            return m, s

        if loo:  # each field's weight fitted on the others
            parts, weight = [], []
            for i, o in enumerate(_others(test.size(0))):
                weight.append(mos.fit_weight(sel(tp[0][o]), sel(test_truth[o]), sel(r_test[o])))
                parts.append(mos.predict(sel(tp[0][i:i + 1]), sel(r_test[i:i + 1]), sel(tp[1][i:i + 1])))
            methods["vamoh_mos"] = (put(tp, (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))),
                                    None)
            return weight
        if cp is not None:
            mos.fit_weight(sel(cp[0]), sel(cal_truth), sel(r_cal))
        methods["vamoh_mos"] = (put(tp, mos.predict(sel(tp[0]), sel(r_test), sel(tp[1]))),
                                None if cp is None else put(cp, mos.predict(sel(cp[0]), sel(r_cal), sel(cp[1]))))
        return mos.weight

    result: Dict[str, Any] = {}
    clim_mean, clim_std = (t.to(train.dtype)[None] for t in _nan_moments(train))
    clim_std = clim_std if train.size(0) > 1 else None
    for name, observed in (masks or {}).items():
        obs = observed_mask(observed, 1, N, f"masks[{name!r}]")[0]
        hidden = ~obs
        if not bool(hidden.any()) or not bool(obs.any()):
            raise ValueError(f"masks[{name!r}] must observe some points and hide some")
        tp, cp = predict(test, obs, grid.pos, 0), None if cal is None else predict(cal, obs, grid.pos, 0)
        methods = {"vamoh": (tp[:2], None if cp is None else cp[:2])}
        weight = None
        if clim_std is not None:
            methods["climatology"] = tuple(None if v is None else (clim_mean.expand_as(v), clim_std.expand_as(v))
                                           for v in (test, cal))
            weight = add_mos(methods, (tp[0], tp[2]), None if cp is None else (cp[0], cp[2]),
                             fit_means(train, obs, grid.pos, 0), lambda v: clim_mean.expand_as(v), test, cal, train,
                             hidden)
        result[f"inpaint_{name}"] = rows(methods, test, cal, hidden)
        if weight is not None:
            result[f"inpaint_{name}"]["vamoh_mos"]["weight"] = weight
    if fine is not None:
        if not isinstance(fine, (tuple, list)) or not 2 <= len(fine) <= 4:
            raise ValueError("fine must be (fine_grid, fine_test[, fine_train[, fine_calibration]])")
        fine_grid, fine_test = fine[0], fine[1]
        fine_train = fine[2] if len(fine) >= 3 else None
        fine_cal = fine[3] if len(fine) == 4 else cal_fine
        M = fine_grid.num_points
        if fine_test.shape != (test.size(0), M, test.size(-1)):
            raise ValueError(f"fine[1] must have shape [{test.size(0)}, {M}, {test.size(-1)}], got "
                             f"{tuple(fine_test.shape)}")
        if fine_cal is not None and loo:
            raise ValueError("calibration='leave_one_out' calibrates on the test fields: pass no fine calibration "
                             "fields")
        if fine_cal is not None and (cal is None or fine_cal.shape != (cal.size(0), M, cal.size(-1))):
            raise ValueError("the fine calibration fields need the coarse ones (calibration) and shape "
                             f"[K, {M}, C] with the same K")
        tp, cp = (None if v is None else predict(v, None, fine_grid.pos, residual_neighbors)
                  for v in (test, None if fine_cal is None else cal))
        methods = {"vamoh": (tp[:2], None if cp is None else cp[:2])}
        if isinstance(grid, LatLonGrid) and fine_train is not None and train.size(0) > 1:
            down = BilinearDownscaling(grid, fine_grid, train, fine_train)
            base = lambda v: (down.predict(v), down.std.to(v.dtype).expand(v.size(0), -1, -1))  # noqa: E731
            methods["bilinear_mean_residual"] = (base(test), None if fine_cal is None else base(cal))
            # Model output statistics: the model's mean error on the training fields added, blended with the
            # baseline; its spread the corrected errors' on the training fields and the posterior's.
            mos_weight = add_mos(methods, (tp[0], tp[2]), None if cp is None else (cp[0], cp[2]),
                                 fit_means(train, None, fine_grid.pos, residual_neighbors), down.predict, fine_test,
                                 fine_cal, fine_train, None)
        result["super_resolution"] = rows(methods, fine_test, fine_cal, None)
        if "vamoh_mos" in methods:
            result["super_resolution"]["vamoh_mos"]["weight"] = mos_weight
    return result
