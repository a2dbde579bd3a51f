import numpy as np
import pytest
import torch

from pcfunc.evaluation import OutputStatistics


def _fields(seed, T=7, M=30, C=2):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(T, M, C, generator=g, dtype=torch.float64)
    model = truth + 0.5 + 0.3 * torch.randn(T, M, C, generator=g, dtype=torch.float64)  # biased, noisy
    ref = truth - 0.2 + 0.6 * torch.randn(T, M, C, generator=g, dtype=torch.float64)
    return truth, model, ref


def test_without_a_reference_the_model_plus_its_mean_error_and_the_errors_spread():
    truth, model, _ = _fields(0)
    mos = OutputStatistics(model, truth)
    new_truth, new_model, _ = _fields(1, T=3)
    s = torch.full_like(new_model, 0.1)
    mean, std = mos.predict(new_model, std=s)
    err = (truth - model).numpy()
    np.testing.assert_allclose(mean.numpy(), new_model.numpy() + err.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std.numpy(), np.broadcast_to(np.sqrt(err.var(0, ddof=1) + 0.01), std.shape),
                               rtol=1e-12)
    assert mos.weight == 1.0
    # The bias is gone from new fields: the corrected error's mean is near zero, the raw one near -0.5.
    assert abs(float((new_truth - mean).mean())) < 0.1 < abs(float((new_truth - new_model).mean()))


def test_with_a_reference_the_weight_is_least_squares_and_the_spread_that_of_the_blend():
    truth, model, ref = _fields(2)
    mos = OutputStatistics(model, truth, ref)
    cal_truth, cal_model, cal_ref = _fields(3, T=4)
    w = mos.fit_weight(cal_model, cal_truth, cal_ref)
    b_m, b_r = (truth - model).mean(0), (truth - ref).mean(0)
    delta = (cal_model + b_m) - (cal_ref + b_r)
    target = cal_truth - (cal_ref + b_r)
    ls = np.linalg.lstsq(delta.reshape(-1, 1).numpy(), target.reshape(-1).numpy(), rcond=None)[0][0]
    assert w == pytest.approx(ls, rel=1e-10) and mos.weight == w and 0 < w < 1
    mean, std = mos.predict(cal_model, cal_ref)
    np.testing.assert_allclose(mean.numpy(), (cal_ref + b_r + w * delta).numpy(), rtol=1e-12)
    # The spread: the variance over the training fields of the blended prediction's errors.
    blended = ref + b_r + w * ((model + b_m) - (ref + b_r))
    np.testing.assert_allclose(std[0].numpy(), (truth - blended).numpy().std(0, ddof=1), rtol=1e-10)
    # The blend beats both on fields like these (independent errors).
    rmse = lambda p: float((cal_truth - p).pow(2).mean().sqrt())  # noqa: E731
    assert rmse(mean) < min(rmse(cal_model + b_m), rmse(cal_ref + b_r))
    # A known weight is recovered.
    exact = cal_ref + b_r + 0.3 * delta
    assert mos.fit_weight(cal_model, exact, cal_ref) == pytest.approx(0.3, rel=1e-12)


def test_missing_values_are_skipped():
    truth, model, ref = _fields(4)
    truth[0, 3, 1] = truth[2, 5, 0] = float("nan")
    mos = OutputStatistics(model, truth, ref)
    keep = [t for t in range(truth.size(0)) if t != 0]
    e = (truth - model)[keep, 3, 1]
    assert float(mos.bias[3, 1]) == pytest.approx(float(e.mean()), rel=1e-12)
    mean, std = mos.predict(model[:1], ref[:1])  # weight 1: the model's own spread
    assert float(std[0, 3, 1]) == pytest.approx(float(e.std()), rel=1e-10)
    assert bool(torch.isfinite(mean).all() & torch.isfinite(std).all())
    cal = truth[:3].clone()
    w = mos.fit_weight(model[:3], cal, ref[:3])
    assert np.isfinite(w)
    # A point missing in all but one training field (land in a sea-surface field): no bias correction there and
    # the moments pooled over the others.
    truth[1:, 7, 0] = float("nan")
    mos = OutputStatistics(model, truth)
    mean, std = mos.predict(model[:1])
    assert float(mean[0, 7, 0]) == pytest.approx(float(model[0, 7, 0] + (truth - model)[0, 7, 0]))
    others = [i for i in range(truth.size(1)) if i != 7]
    d = (truth - model)[:, others, 0]
    d = d - torch.nanmean(d, 0)
    ok = ~torch.isnan(d)
    pooled = float(torch.where(ok, d, 0.0).square().sum() / (ok.sum(0) - 1).sum())
    assert float(std[0, 7, 0]) == pytest.approx(pooled ** 0.5, rel=1e-10)


def test_errors_name_the_argument():
    truth, model, ref = _fields(5)
    with pytest.raises(ValueError, match="prediction must have the shape of truth"):
        OutputStatistics(model[:, :-1], truth)
    with pytest.raises(ValueError, match="at least 2 training fields"):
        OutputStatistics(model[:1], truth[:1])
    with pytest.raises(ValueError, match="prediction has NaN"):
        OutputStatistics(model * float("nan"), truth)
    with pytest.raises(ValueError, match="at some point in at least 2 training fields"):
        OutputStatistics(model, truth * float("nan"))
    mos = OutputStatistics(model, truth)
    with pytest.raises(ValueError, match="fit_weight needs a reference"):
        mos.fit_weight(model, truth, ref)
    with pytest.raises(ValueError, match="reference must be given exactly"):
        mos.predict(model, ref)
    with pytest.raises(ValueError, match=r"prediction must have shape \[B, 30, 2\]"):
        mos.predict(model[:, :4])
    with_ref = OutputStatistics(model, truth, ref)
    with pytest.raises(ValueError, match="reference must be given exactly"):
        with_ref.predict(model)
    with pytest.raises(ValueError, match="truth must have the shape of prediction"):
        with_ref.fit_weight(model, truth[:2], ref)
