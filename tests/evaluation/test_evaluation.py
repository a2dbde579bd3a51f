import math

import numpy as np
import pytest
import torch

from pcfunc.data import ImageGrid, LatLonGrid, interpolate_to_points
from pcfunc.evaluation import (BilinearDownscaling, OutputStatistics, PCABaseline, active_units, energy_distance,
                               evaluate_gasp, evaluate_uncertainty, evaluate_vamoh, format_report, mixture_usage,
                               nearest_neighbor_accuracy, sample_statistics, score, task_predictions, training_mean, zonal_mean_fill)
from pcfunc.evaluation._harness import points_batch
from pcfunc.manifolds import xyz_to_latlon
from pcfunc.metrics import crps_gaussian, fit_std_scale, interval_coverage, psnr
from pcfunc.models import VaMoH
from pcfunc.nn import LayerSpec

GRID = LatLonGrid.regular(9, 16)  # 7 * 16 + 2 = 114 points


def fields(num, n=20, c=1, rank=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(rank, n * c, generator=g, dtype=torch.float64)
    coef = torch.randn(num, rank, generator=g, dtype=torch.float64)
    return (0.5 + 0.1 * coef @ basis).reshape(num, n, c)


def test_training_mean_is_the_pointwise_mean():
    t = fields(7, c=2)
    assert torch.allclose(training_mean(t), torch.as_tensor(t.numpy().mean(0)))
    with pytest.raises(ValueError, match="train"):
        training_mean(t[0])


def test_pca_matches_scikit_learn_and_recovers_hidden_points():
    sklearn = pytest.importorskip("sklearn.decomposition")
    train, test = fields(30, rank=6), fields(5, rank=6, seed=1)
    pca = PCABaseline(train, 4)
    ref = sklearn.PCA(4, svd_solver="full").fit(train.reshape(30, -1).numpy())
    expect = ref.inverse_transform(ref.transform(test.reshape(5, -1).numpy())).reshape(5, 20, 1)
    assert np.allclose(pca.reconstruct(test).numpy(), expect, atol=1e-10)
    # A field in the span of the components is recovered at hidden points from a few observed ones.
    full = PCABaseline(train, 6, ridge=0.0)
    inside = train[:2] * 0.3 + train[2:4] * 0.7
    observed = torch.zeros(20, dtype=torch.bool)
    observed[::2] = True
    pred = full.reconstruct(inside, observed)
    assert torch.allclose(pred[:, ~observed], inside[:, ~observed], atol=1e-5)
    # Per-field masks give the same as one shared mask.
    assert torch.allclose(full.reconstruct(inside, observed.expand(2, 20)), pred)


def test_pca_keeps_at_most_the_rank_and_checks_its_input():
    train = fields(5, rank=3)
    pca = PCABaseline(train, 10)
    assert pca.num_components == 3 and pca.requested_components == 10
    assert torch.allclose(pca.reconstruct(train), train, atol=1e-10)
    with pytest.raises(ValueError, match="num_components"):
        PCABaseline(train, 0)
    with pytest.raises(ValueError, match="values must have shape"):
        pca.reconstruct(fields(2, n=21))
    with pytest.raises(ValueError, match="observed"):
        pca.reconstruct(train, torch.ones(19, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        PCABaseline(train * float("nan"), 2)


def test_zonal_mean_fill_by_hand():
    lat = torch.tensor([10.0, 10.0, 10.0, 0.0, 0.0, -10.0, -10.0])
    values = torch.tensor([[1.0, 2.0, 9.0, 4.0, 8.0, 5.0, 7.0]])[..., None]
    observed = torch.tensor([True, True, False, True, False, False, False])
    out = zonal_mean_fill(values, lat, observed)[0, :, 0]
    # Observed points are kept; 10N is filled with (1 + 2) / 2; 0 with 4; -10 (nothing observed) from the
    # nearest latitude that has observations (0 degrees).
    assert out.tolist() == [1.0, 2.0, 1.5, 4.0, 4.0, 4.0, 4.0]
    # A field constant along latitudes is recovered exactly.
    lat_g = xyz_to_latlon(GRID.pos.double())[0]
    field = torch.cos(torch.deg2rad(lat_g))[None, :, None].repeat(2, 1, 1)
    obs = torch.rand(GRID.num_points) < 0.5
    obs[lat_g.abs() == 90] = True
    assert torch.allclose(zonal_mean_fill(field, lat_g, obs), field)
    with pytest.raises(ValueError, match="lat"):
        zonal_mean_fill(values, lat[:-1], observed)


def test_active_units_on_a_constructed_encoder():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g)
    # An "encoder" whose posterior means move with the data in 3 dimensions and not in the other 5.
    mean = torch.cat([x * torch.tensor([1.0, 0.5, 0.2]), 0.05 * torch.randn(200, 1, generator=g),
                      torch.zeros(200, 4)], 1)
    assert active_units(mean) == 3  # variances 1, 0.25, 0.04 count; 0.0025 and 0 do not
    assert active_units(mean, threshold=0.1) == 2
    with pytest.raises(ValueError, match="at least 2"):
        active_units(mean[:1])


def test_mixture_usage_by_hand():
    probs = torch.tensor([[[1.0, 0.0], [0.5, 0.5], [0.2, 0.8], [0.9, 0.1]]])
    u = mixture_usage(probs)
    ent = [0.0, math.log(2), -(0.2 * math.log(0.2) + 0.8 * math.log(0.8)), -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))]
    assert u["mean_entropy"] == pytest.approx(sum(ent) / 4)
    assert u["entropy_gap"] == pytest.approx(math.log(2) - sum(ent) / 4)
    assert u["shares"] == [0.75, 0.25]  # argmax: 0, 0 (tie), 1, 0


def test_energy_distance_against_scipy_in_one_dimension():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, generator=g), 1.5 + torch.randn(25, 1, generator=g)
    # scipy returns the square root of the same V-statistic.
    assert energy_distance(x, y) == pytest.approx(stats.energy_distance(x[:, 0], y[:, 0]) ** 2, rel=1e-9)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-12)
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[3.0, 4.0]])
    assert energy_distance(a, b) == pytest.approx(10.0)  # 2 |a - b|
    with pytest.raises(ValueError, match="same dimension"):
        energy_distance(a, torch.zeros(1, 3))


def test_score_adds_area_weighted_rmse_and_bias_on_the_scored_points():
    g = torch.Generator().manual_seed(0)
    grid = LatLonGrid(np.linspace(90, -90, 7), np.arange(0.0, 360.0, 30.0))
    truth = torch.rand(3, grid.num_points, 1, generator=g, dtype=torch.float64)
    pred = truth + 0.1 * torch.randn(truth.shape, generator=g, dtype=torch.float64)
    truth[1, :4] = float("nan")
    hidden = torch.zeros(grid.num_points, dtype=torch.bool)
    hidden[10:40] = True
    out = score(pred, truth, hidden, scale=2.0, weights=grid.point_areas)
    w = grid.point_areas.numpy()
    rmses, biases = [], []
    for b in range(3):
        keep = hidden.numpy() & np.isfinite(truth[b, :, 0].numpy())
        err = (pred[b, keep, 0] - truth[b, keep, 0]).numpy()
        rmses.append(np.sqrt(np.average(err ** 2, weights=w[keep])))
        biases.append(np.average(err, weights=w[keep]))
    assert out["rmse_weighted"] == pytest.approx(2.0 * np.mean(rmses))
    assert out["bias_weighted"] == pytest.approx(2.0 * np.mean(biases))
    assert out["rmse"] == pytest.approx(score(pred, truth, hidden, scale=2.0)["rmse"])  # the unweighted as before
    text = format_report({"tasks": {"reconstruction": {"vamoh": out}}}, "K")
    assert "RMSE area-wt" in text and f"{out['rmse_weighted']:.3f}" in text


def test_nearest_neighbor_accuracy_against_scikit_learn_and_by_hand():
    neighbors = pytest.importorskip("sklearn.neighbors")
    g = torch.Generator().manual_seed(0)
    for shift, n, m in ((0.0, 30, 30), (0.5, 40, 25), (5.0, 20, 35)):
        x, y = torch.randn(n, 6, generator=g), shift + torch.randn(m, 6, generator=g)
        both, label = torch.cat((x, y)).numpy(), np.r_[np.zeros(n), np.ones(m)]
        # leave-one-out 1-NN labels: the second nearest of each point in the union (the first is itself)
        idx = neighbors.NearestNeighbors(n_neighbors=2).fit(both).kneighbors(both)[1][:, 1]
        right = label[idx] == label
        expected = 0.5 * (right[:n].mean() + right[n:].mean())
        assert nearest_neighbor_accuracy(x, y) == pytest.approx(expected, abs=1e-12)
    # Far-apart sets are told apart every time; interleaved ones never.
    assert nearest_neighbor_accuracy(torch.zeros(3, 1) + torch.arange(3.0)[:, None] * 1e-3,
                                     torch.full((4, 1), 10.0) + torch.arange(4.0)[:, None] * 1e-3) == 1.0
    a, b = torch.tensor([[0.0], [2.0], [4.0]]), torch.tensor([[1.0], [3.0], [5.0]])
    assert nearest_neighbor_accuracy(a + 0.1, b) == 0.0  # each nearest neighbour is in the other set
    with pytest.raises(ValueError, match="x must have shape"):
        nearest_neighbor_accuracy(torch.zeros(1, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="same dimension"):
        nearest_neighbor_accuracy(torch.zeros(2, 2), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="y"):
        nearest_neighbor_accuracy(torch.zeros(2, 2), torch.tensor([[0.0, math.nan], [1.0, 1.0]]))


def test_sample_statistics_by_hand():
    ref = torch.tensor([[0.0, 0.0], [2.0, 2.0]])[..., None]  # per-point std sqrt(2), mean 1
    samples = torch.tensor([[1.0, 1.0], [2.0, 2.0]])[..., None]  # std sqrt(0.5), mean 1.5
    s = sample_statistics(samples, ref, scale=10.0)
    assert s["reference_spread"] == pytest.approx(10 * math.sqrt(2))
    assert s["spread_ratio"] == pytest.approx(0.5)
    assert s["mean_rmse"] == pytest.approx(5.0) and s["mean_within_spread"]


def tiny_vamoh(**kw):
    args = dict(in_channels=1, encoder=[LayerSpec(8, 4, num_centroids=32), LayerSpec(8, 4, global_centroid=True)],
                latent_dim=4, num_components=3, hypernet_hidden=(8,), generator_hidden=(8,), num_frequencies=4,
                categorical_hidden=(8,), flow_layers=2)
    args.update(kw)
    return VaMoH("sphere", **args)


def grid_fields(num, seed=0):
    g = torch.Generator().manual_seed(seed)
    lat = xyz_to_latlon(GRID.pos.double())[0]
    phase = torch.rand(num, 1, generator=g, dtype=torch.float64)
    v = 0.5 + 0.3 * torch.cos(torch.deg2rad(lat))[None] * torch.cos(phase * 3 + torch.deg2rad(lat)[None])
    return v[..., None].float()


def test_evaluate_vamoh_reports_the_baselines_it_claims():
    torch.manual_seed(0)
    model = tiny_vamoh()
    train, test = grid_fields(10), grid_fields(4, seed=1)
    fine_grid = GRID.super_resolution()
    fine_test = torch.rand(4, fine_grid.num_points, 1)
    mask = torch.zeros(GRID.num_points, dtype=torch.bool)
    mask[: GRID.num_points // 2] = True
    rep = evaluate_vamoh(model, GRID, train, test, masks={"half": mask}, fine=(fine_grid, fine_test), scale=100.0,
                         num_prior_samples=5, fields_per_call=3)
    t = rep["tasks"]
    assert set(t) == {"reconstruction", "reconstruction_train", "inpaint_half", "super_resolution"}
    mean = train.mean(0)
    expect = float(psnr(mean.expand_as(test).double(), test.double()).mean())
    assert t["reconstruction"]["training_mean"]["psnr"] == pytest.approx(expect, rel=1e-6)
    pca = PCABaseline(train, 4)
    assert t["reconstruction"]["pca_4"]["psnr"] == pytest.approx(
        float(psnr(pca.reconstruct(test).double(), test.double()).mean()), rel=1e-6)
    hidden = ~mask
    assert t["inpaint_half"]["vamoh"]["points"] == int(hidden.sum())
    lat = xyz_to_latlon(GRID.pos.double())[0]
    zm = zonal_mean_fill(test, lat, mask)
    # the area-weighted RMSE and bias ride along on a latitude/longitude grid
    assert t["inpaint_half"]["zonal_mean"] == score(zm, test, hidden, scale=100.0, weights=GRID.point_areas)
    # PCA's and VaMoH's in-paintings with their residuals kriged: ResidualKriging applied to each by hand.
    from pcfunc.evaluation import ResidualKriging

    krige = ResidualKriging()
    assert t["inpaint_half"]["pca_4_kriged"] == score(krige(GRID.pos, pca.reconstruct(test, mask), test, mask), test,
                                                      hidden, scale=100.0, weights=GRID.point_areas)
    inp = model.inpaint(points_batch(GRID, test, mask), GRID.pos)
    assert t["inpaint_half"]["vamoh_kriged"] == pytest.approx(score(krige(GRID.pos, inp, test, mask), test, hidden,
                                                                    scale=100.0, weights=GRID.point_areas), rel=1e-5)
    assert t["inpaint_half"]["vamoh_kriged"]["psnr"] != t["inpaint_half"]["vamoh"]["psnr"]
    assert {"vamoh", "vamoh_residuals", "bilinear"} == set(t["super_resolution"])
    b = GRID.to_batch(GRID.to_array(test.reshape(-1, 1), torch.arange(4).repeat_interleave(GRID.num_points)))
    srr = model.reconstruct(b, fine_grid.pos, residual_neighbors=4)
    expect = score(srr, fine_test, scale=100.0, weights=fine_grid.point_areas)  # the fine grid's areas
    got = dict(t["super_resolution"]["vamoh_residuals"])
    lsd = got.pop("lsd")
    assert got == pytest.approx(expect, rel=1e-6)  # chunked by 3 fields there
    # Spectra on the global fine grid: the truth's mean spectrum and each method's distance to it, field by field.
    from pcfunc.metrics import log_spectral_distance, power_spectrum

    arr = lambda v: fine_grid.to_array(v.reshape(-1, 1), torch.arange(4).repeat_interleave(  # noqa: E731
        fine_grid.num_points))[..., 0]
    truth_spec = power_spectrum(arr(fine_test), fine_grid.lat, fine_grid.lon)
    assert rep["spectra"]["truth"] == pytest.approx(truth_spec.mean(0).tolist(), rel=1e-9)
    assert lsd == pytest.approx(float(log_spectral_distance(power_spectrum(arr(srr), fine_grid.lat, fine_grid.lon),
                                                            truth_spec).mean()), rel=1e-5)
    assert all(v["lsd"] >= 0 for v in t["super_resolution"].values())
    h = rep["health"]
    assert 0 <= h["active_units_test"] <= 4 and h["mixture"]["max_entropy"] == pytest.approx(math.log(3))
    assert h["prior_samples"]["reference_spread"] > 0
    assert set(rep["elbo_per_point"]) == {"elbo", "log_likelihood", "kl_z", "kl_c"}
    assert "reconstruction" in format_report(rep, "K")
    one = evaluate_vamoh(model, GRID, train, test[:1], num_prior_samples=2, masks={"half": mask}, kriging=False)
    assert set(one["tasks"]["inpaint_half"]) == {"vamoh", "training_mean", "pca_4", "zonal_mean"}
    with pytest.raises(TypeError, match="kriging"):
        evaluate_vamoh(model, GRID, train, test, masks={"half": mask}, kriging="yes")
    assert one["health"]["active_units_test"] is None and one["health"]["prior_samples"] is None
    with pytest.raises(ValueError, match="points per field"):
        evaluate_vamoh(model, GRID, train[:, :-1], test)
    with pytest.raises(ValueError, match="masks"):
        evaluate_vamoh(model, GRID, train, test, masks={"all": torch.ones(GRID.num_points, dtype=torch.bool)})


def test_bilinear_mean_residual_recovers_a_static_sub_grid_pattern():
    # Fine fields = bilinear interpolation of the coarse ones + one static pattern: the baseline is then exact,
    # bilinear alone is not.
    torch.manual_seed(0)
    model = tiny_vamoh()
    train, test = grid_fields(6), grid_fields(3, seed=1)
    fine_grid = GRID.super_resolution()
    pattern = 0.05 * torch.sin(7 * fine_grid.pos[:, :1].double()) * torch.cos(5 * fine_grid.pos[:, 1:2].double())

    def fine(values):
        arr = GRID.to_array(values.reshape(-1, 1), torch.arange(values.size(0)).repeat_interleave(GRID.num_points))
        bil = interpolate_to_points(arr[..., 0].double(), GRID.lat, GRID.lon, fine_grid.pos.double())
        return (bil[..., None] + pattern).float()

    rep = evaluate_vamoh(model, GRID, train, test, fine=(fine_grid, fine(test), fine(train)), num_prior_samples=2)
    sr = rep["tasks"]["super_resolution"]
    assert sr["bilinear_mean_residual"]["rmse"] < 1e-6
    down = BilinearDownscaling(GRID, fine_grid, train, fine(train))
    torch.testing.assert_close(down.mean.float(), pattern.float(), atol=1e-6, rtol=0)
    assert float(down.std.max()) < 1e-6  # one static pattern: no spread between the fields
    with pytest.raises(TypeError, match="grid must be a LatLonGrid"):
        BilinearDownscaling(ImageGrid(4, 4), fine_grid, train, fine(train))
    assert sr["bilinear"]["rmse"] == pytest.approx(float(pattern.pow(2).mean().sqrt()), rel=1e-4)
    with pytest.raises(ValueError, match="fine\\[2\\]"):
        evaluate_vamoh(model, GRID, train, test, fine=(fine_grid, fine(test), fine(train)[:2]))


def test_evaluate_uncertainty_scores_the_predictive_and_its_calibration():
    torch.manual_seed(0)
    model = tiny_vamoh().eval()
    train, test, cal = grid_fields(6), grid_fields(3, seed=1), grid_fields(4, seed=2)
    fine_grid = GRID.super_resolution()
    fine_train, fine_test, fine_cal = (torch.rand(n, fine_grid.num_points, 1, generator=torch.Generator().manual_seed(n))
                                       for n in (6, 3, 4))
    mask = torch.zeros(GRID.num_points, dtype=torch.bool)
    mask[: GRID.num_points // 2] = True
    mask[-1] = True  # the south pole: the same value in every training field, zero spread
    hidden = ~mask
    torch.manual_seed(7)  # the encoder's farthest-point sampling draws its start from the global generator
    rep = evaluate_uncertainty(model, GRID, train, test, masks={"half": mask},
                               fine=(fine_grid, fine_test, fine_train), calibration=(cal, fine_cal), num_samples=4,
                               scale=10.0, fields_per_call=2, seed=3, residual_neighbors=3)
    assert set(rep) == {"inpaint_half", "super_resolution"}
    assert set(rep["inpaint_half"]) == {"vamoh", "vamoh_calibrated", "climatology", "climatology_calibrated",
                                        "vamoh_mos", "vamoh_mos_calibrated"}
    assert set(rep["super_resolution"]) == {"vamoh", "vamoh_calibrated", "bilinear_mean_residual",
                                            "bilinear_mean_residual_calibrated", "vamoh_mos", "vamoh_mos_calibrated"}
    assert isinstance(rep["super_resolution"]["vamoh_mos"]["weight"], float)
    base = rep["super_resolution"]["bilinear_mean_residual"]  # each row scores its mean, as the harness does
    down = BilinearDownscaling(GRID, fine_grid, train, fine_train)
    assert base["rmse"] == pytest.approx(score(down.predict(test), fine_test, scale=10.0)["rmse"], rel=1e-6)
    assert base["psnr"] == pytest.approx(score(down.predict(test), fine_test)["psnr"], rel=1e-6)
    # The climatology rows by hand: a Gaussian of the training fields' mean and spread at each point.
    m, sd = train.mean(0, keepdim=True).expand_as(test), train.std(0, keepdim=True).expand_as(test)
    row = rep["inpaint_half"]["climatology"]
    assert row["points"] == int(hidden.sum())
    assert row["crps"] == pytest.approx(10 * float(crps_gaussian(m[:, hidden], sd[:, hidden], test[:, hidden])
                                                   .double().mean()), rel=1e-5)
    assert row["coverage_90"] == pytest.approx(float(interval_coverage(m[:, hidden], sd[:, hidden], test[:, hidden],
                                                                       0.9).double().mean()))
    # Spread-skill and the PIT histogram against SciPy's normal CDF and NumPy's histogram.
    norm_cdf = pytest.importorskip("scipy.stats").norm.cdf
    mh, sh, th = (v[:, hidden].double().numpy() for v in (m, sd, test))
    u = norm_cdf(th, mh, sh).ravel()
    assert row["pit_histogram"] == pytest.approx(list(np.histogram(u, bins=10, range=(0, 1))[0] / u.size), abs=1e-4)
    assert row["spread_skill"] == pytest.approx(np.sqrt((sh ** 2).mean() / ((mh - th) ** 2).mean()), rel=1e-5)
    # Its calibrated factors are fitted on the calibration fields.
    mc, sc = train.mean(0, keepdim=True).expand_as(cal), train.std(0, keepdim=True).expand_as(cal)
    f = rep["inpaint_half"]["climatology_calibrated"]["std_scale"]
    assert f["crps"] == pytest.approx(fit_std_scale(mc[:, hidden], sc[:, hidden], cal[:, hidden]), rel=1e-5)
    assert f["coverage_50"] == pytest.approx(fit_std_scale(mc[:, hidden], sc[:, hidden], cal[:, hidden], level=0.5))
    # The model's row is its predictive on the hidden points (same seed, same draws).
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(7)
    parts = [model.predictive(points_batch(GRID, test[s], mask), GRID.pos.float(), num_samples=4, generator=g)
             for s in (slice(0, 2), slice(2, 3))]
    pm, ps = torch.cat([p.mean for p in parts]), torch.cat([p.std for p in parts])
    assert rep["inpaint_half"]["vamoh"]["crps"] == pytest.approx(
        10 * float(crps_gaussian(pm[:, hidden], ps[:, hidden], test[:, hidden]).double().mean()), rel=1e-5)
    for v in rep.values():
        for r in v.values():
            assert 0.0 <= r["coverage_50"] <= r["coverage_90"] <= 1.0 and r["crps"] > 0
    # Calibrated intervals cover their level on the calibration fields: scoring them there gives it back.
    cal = cal + 0.01 * torch.rand(cal.shape, generator=torch.Generator().manual_seed(5))  # no ties
    self_cal = evaluate_uncertainty(model, GRID, train, cal, masks={"half": mask}, calibration=cal, num_samples=4,
                                    fields_per_call=4, seed=3)
    n = int(hidden.sum()) * 4
    row = self_cal["inpaint_half"]["climatology_calibrated"]  # deterministic, unlike the model's draws
    assert 0.5 <= row["coverage_50"] <= 0.5 + 2.0 / n and 0.9 <= row["coverage_90"] <= 0.9 + 2.0 / n
    rep2 = evaluate_vamoh(model, GRID, train, test, masks={"half": mask}, num_prior_samples=2, predictive_samples=3)
    assert set(rep2["uncertainty"]["inpaint_half"]) == {"vamoh", "climatology", "vamoh_mos"}
    assert "cover 90%" in format_report(rep2)
    with pytest.raises(ValueError, match="num_samples"):
        evaluate_uncertainty(model, GRID, train, test, num_samples=1)
    with pytest.raises(ValueError, match="calibration must have shape"):
        evaluate_uncertainty(model, GRID, train, test, calibration=cal[:, :-1])
    with pytest.raises(ValueError, match="fine calibration"):
        evaluate_uncertainty(model, GRID, train, test, fine=(fine_grid, fine_test, fine_train, fine_cal))


def test_evaluate_vamoh_reconstruction_is_the_models():
    torch.manual_seed(0)
    model = tiny_vamoh().eval()
    train, test = grid_fields(6), grid_fields(3, seed=2)
    lines, ended = [], []
    rep = evaluate_vamoh(model, GRID, train, test, num_prior_samples=3, progress=lines.append,
                         on_task=lambda task, rows: ended.append((task, rows)))
    # One line per finished task, with its time; each task's rows handed over as it ends.
    assert [line.split(":")[0] for line in lines] == ["reconstruction (3 fields)", "reconstruction_train (6 fields)",
                                                      "health"]
    assert [t for t, _ in ended] == ["reconstruction", "reconstruction_train", "health"]
    assert ended[0][1] == rep["tasks"]["reconstruction"] and ended[2][1] == rep["health"]
    assert all(line.endswith(" s") and float(line.split(": ")[1][:-2]) >= 0 for line in lines)
    rec = model.reconstruct(GRID.to_batch(GRID.to_array(test.reshape(-1, 1), torch.arange(3).repeat_interleave(
        GRID.num_points)))).view_as(test)
    assert rep["tasks"]["reconstruction"]["vamoh"] == score(rec, test, weights=GRID.point_areas)


def test_evaluate_vamoh_refines_each_task_as_asked():
    torch.manual_seed(0)
    model = tiny_vamoh().eval()
    train, test = grid_fields(6), grid_fields(2, seed=2)
    mask = torch.arange(GRID.num_points) % 3 != 0
    steps = {"reconstruction": 0, "inpainting": 2}
    rep = evaluate_vamoh(model, GRID, train, test, masks={"thirds": mask}, num_prior_samples=3, refine_steps=steps,
                         kriging=False)
    assert rep["refine_steps"] == steps
    rec = model.reconstruct(points_batch(GRID, test), GRID.pos, refine_steps=0)
    inp = model.inpaint(points_batch(GRID, test, mask), GRID.pos, refine_steps=2)
    assert rep["tasks"]["reconstruction"]["vamoh"] == score(rec, test, weights=GRID.point_areas)
    assert rep["tasks"]["inpaint_thirds"]["vamoh"] == score(inp, test, ~mask, weights=GRID.point_areas)
    assert rep["tasks"]["inpaint_thirds"]["vamoh"] != score(
        model.inpaint(points_batch(GRID, test, mask), GRID.pos), test, ~mask, weights=GRID.point_areas)
    with pytest.raises(ValueError, match="refine_steps"):
        evaluate_vamoh(model, GRID, train, test, refine_steps={"inpainting": 2})


def test_evaluate_gasp_reports_the_ideal_sampler_of_the_training_fields():
    class Train:  # samples that are exactly the training fields: the ideal sampler of the training distribution
        def sample(self, num, pos, generator=None):
            return torch.stack([train[i % 4] for i in range(num)])

    grid = ImageGrid(4, 4)
    g = torch.Generator().manual_seed(3)
    train, test = torch.rand(4, 16, 1, generator=g), torch.rand(3, 16, 1, generator=g) + 0.5
    rep = evaluate_gasp(Train(), grid, test, train=train, num_samples=8, scale=2.0)
    h = rep["health"]
    assert h["samples_vs_train"]["mean_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert h["samples_vs_train"]["spread_ratio"] == pytest.approx(
        float(torch.cat([train, train]).std(0).mean() / train.std(0).mean()), rel=1e-5)
    # The training fields against the held-out ones, computed here by hand (in data units: scale 2).
    ideal = h["train_as_samples"]
    assert ideal["mean_rmse"] == pytest.approx(2 * float((train.mean(0) - test.mean(0)).pow(2).mean().sqrt()),
                                               rel=1e-5)
    assert ideal["reference_spread"] == pytest.approx(2 * float(test.std(0).mean()), rel=1e-5)
    assert not ideal["mean_within_spread"]  # the held-out fields are shifted by 0.5
    assert rep["fields"]["train"] == 4
    with pytest.raises(ValueError, match="train"):
        evaluate_gasp(Train(), grid, test, train=train[:, :8])


def test_evaluate_gasp_on_an_image_grid():
    class Fixed:  # a "model" whose samples are known: the reference shifted by 1 (GASP's [-1, 1] range)
        def sample(self, num, pos, generator=None):
            return torch.stack([ref[i % 3] * 2 - 1 for i in range(num)])

    grid = ImageGrid(4, 4)
    ref = torch.rand(3, 16, 1)
    rep = evaluate_gasp(Fixed(), grid, ref, num_samples=6, transform=lambda v: (v + 1) / 2)
    s = rep["health"]["samples"]
    assert s["mean_rmse"] == pytest.approx(0.0, abs=1e-6)
    assert s["spread_ratio"] == pytest.approx(float(torch.cat([ref, ref]).std(0).mean() / ref.std(0).mean()),
                                              rel=1e-5)


def test_missing_values_are_never_scored_or_observed():
    # Sea-surface-temperature-like fields: a continent missing in every field, and a gap in one test field.
    from pcfunc.evaluation import evaluate_uncertainty, valid_points

    torch.manual_seed(0)
    model = tiny_vamoh().eval()
    train, test = grid_fields(8), grid_fields(4, seed=1)
    land = torch.zeros(GRID.num_points, dtype=torch.bool)
    land[30:45] = True
    train[:, land], test[:, land] = float("nan"), float("nan")
    test[2, 60:70] = float("nan")
    valid = valid_points(test)
    # score: per field over its valid points, against a brute-force loop.
    pred = torch.rand_like(test)
    by_hand = [float(psnr(pred[b, valid[b]][None].double(), test[b, valid[b]][None].double())) for b in range(4)]
    assert score(pred, test)["psnr"] == pytest.approx(sum(by_hand) / 4, rel=1e-9)
    hidden = torch.zeros(GRID.num_points, dtype=torch.bool)
    hidden[40:80] = True
    by_hand = [float(psnr(pred[b, valid[b] & hidden][None].double(), test[b, valid[b] & hidden][None].double()))
               for b in range(4)]
    assert score(pred, test, hidden)["psnr"] == pytest.approx(sum(by_hand) / 4, rel=1e-9)
    # The model's input batch holds each field's valid points only.
    b = points_batch(GRID, test)
    assert b.ptr.diff().tolist() == valid.sum(1).tolist() and torch.isfinite(b.x).all()
    # The training mean skips missing values; a point missing everywhere takes the mean of all values.
    mean = training_mean(train)
    ok = ~torch.isnan(train[:, 0, 0])
    torch.testing.assert_close(mean[0], train[ok, 0].double().mean(0).float())
    torch.testing.assert_close(mean[land], train[~torch.isnan(train)].double().mean().float().expand(15, 1))
    # The whole harness runs, every figure finite, scored on valid points only.
    fine_grid = GRID.super_resolution()
    fine_test = torch.rand(4, fine_grid.num_points, 1)
    fine_test[1, :50] = float("nan")
    observed = ~hidden
    rep = evaluate_vamoh(model, GRID, train, test, masks={"band": observed}, fine=(fine_grid, fine_test),
                         num_prior_samples=4, fields_per_call=3)
    for task, rows in rep["tasks"].items():
        for method, r in rows.items():
            assert math.isfinite(r["psnr"]) and math.isfinite(r["rmse"]), (task, method)
    assert rep["tasks"]["inpaint_band"]["vamoh"]["points"] == round(float((valid & hidden).sum(1).double().mean()))
    assert rep["tasks"]["super_resolution"]["vamoh"]["points"] == round((fine_grid.num_points * 3 + (
        fine_grid.num_points - 50)) / 4)
    assert math.isfinite(rep["elbo_per_point"]["elbo"]) and rep["health"]["mixture"]["max_entropy"] > 0
    unc = evaluate_uncertainty(model, GRID, train, test[:2], masks={"band": observed}, calibration=test[2:],
                               num_samples=2)
    assert all(math.isfinite(v) for r in unc["inpaint_band"].values() for k, v in r.items()
               if k in ("coverage_50", "coverage_90", "crps"))


def test_task_predictions_are_the_models_own_calls():
    torch.manual_seed(0)
    model = tiny_vamoh().eval()
    v = grid_fields(1, seed=4)[0].clone()
    v[3] = float("nan")  # a missing point: not observed, NaN in the assignment maps
    fine_grid = GRID.super_resolution()
    mask = torch.zeros(GRID.num_points, dtype=torch.bool)
    mask[::2] = True
    torch.manual_seed(1)
    out = task_predictions(model, GRID, v, fine_grid, {"even": mask}, seed=5, num_samples=3, residual_neighbors=2,
                           refine_steps={"reconstruction": 2, "inpainting": 3})  # in-painting refined longer
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    torch.manual_seed(1)
    one = points_batch(GRID, v[None])
    torch.testing.assert_close(out["reconstruction"], model.reconstruct(one, GRID.pos, refine_steps=2)[0])
    sr = model.predictive(one, fine_grid.pos, num_samples=3, include_noise=False, refine_steps=2, generator=g(),
                          residual_neighbors=2)
    torch.testing.assert_close(out["super_resolution"], sr.mean[0])
    torch.testing.assert_close(out["spread"], sr.std[0])
    pred, m = out["inpainted"]["even"]
    assert m is mask
    torch.testing.assert_close(pred, model.inpaint(points_batch(GRID, v[None], mask), GRID.pos,
                                                   refine_steps=3)[0])
    maps = model.component_maps(one, posterior=True)
    assert torch.isnan(out["entropy"][3]) and torch.isnan(out["segmentation"][3])
    keep = torch.arange(GRID.num_points) != 3
    torch.testing.assert_close(out["entropy"][keep], maps.entropy[0].double())
    torch.testing.assert_close(out["segmentation"][keep], maps.segmentation[0].double())
    assert set(task_predictions(model, GRID, v)) == {"reconstruction", "inpainted", "entropy", "segmentation"}


def test_evaluate_uncertainty_leave_one_out_calibrates_each_field_on_the_others():
    torch.manual_seed(0)
    model = tiny_vamoh().eval()
    train, test = grid_fields(6), grid_fields(4, seed=1)
    test = test + 0.02 * torch.rand(test.shape, generator=torch.Generator().manual_seed(6))
    fine_grid = GRID.super_resolution()
    fine_train, fine_test = (torch.rand(n, fine_grid.num_points, 1, generator=torch.Generator().manual_seed(n))
                             for n in (6, 4))
    mask = torch.zeros(GRID.num_points, dtype=torch.bool)
    mask[: GRID.num_points // 2] = True
    hidden = ~mask
    rep = evaluate_uncertainty(model, GRID, train, test, masks={"half": mask}, fine=(fine_grid, fine_test, fine_train),
                               calibration="leave_one_out", num_samples=3, fields_per_call=4, seed=3,
                               residual_neighbors=2)
    # The climatology's calibrated row by hand: field i scaled by the factors of the other three.
    m, sd = train.mean(0, keepdim=True).expand_as(test), train.std(0, keepdim=True).expand_as(test)
    m, sd, t = m[:, hidden], sd[:, hidden], test[:, hidden]
    row = rep["inpaint_half"]["climatology_calibrated"]
    cover90, crps = [], []
    for i in range(4):
        o = [j for j in range(4) if j != i]
        f90 = fit_std_scale(m[o], sd[o], t[o], level=0.9)
        fc = fit_std_scale(m[o], sd[o], t[o])
        assert row["std_scale"]["coverage_90"][i] == pytest.approx(f90) and row["std_scale"]["crps"][i] == \
            pytest.approx(fc, rel=1e-6)
        cover90.append(interval_coverage(m[i], sd[i] * f90, t[i], 0.9).double().mean())
        crps.append(crps_gaussian(m[i], sd[i] * fc, t[i]).double().mean())
    assert row["coverage_90"] == pytest.approx(float(sum(cover90) / 4))
    assert row["crps"] == pytest.approx(float(sum(crps) / 4), rel=1e-5)
    sr = rep["super_resolution"]
    assert set(sr) == {"vamoh", "vamoh_calibrated", "bilinear_mean_residual", "bilinear_mean_residual_calibrated",
                       "vamoh_mos", "vamoh_mos_calibrated"}
    assert len(sr["vamoh_mos"]["weight"]) == 4 and len(sr["vamoh_calibrated"]["std_scale"]["crps"]) == 4
    with pytest.raises(ValueError, match="leave_one_out"):
        evaluate_uncertainty(model, GRID, train, test, calibration="leave-one-out")
    with pytest.raises(ValueError, match="at least 2 test fields"):
        evaluate_uncertainty(model, GRID, train, test[:1], calibration="leave_one_out")
    with pytest.raises(ValueError, match="pass no fine calibration"):
        evaluate_uncertainty(model, GRID, train, test, fine=(fine_grid, fine_test, fine_train, fine_test),
                             calibration="leave_one_out")


class _FixedPredictive:
    """A stand-in with VaMoH's predictive signature whose prediction of every field is one known function of the
    query points (mean) with a known spread: the harness's model-output-statistics rows can then be computed by
    hand."""

    def eval(self):
        return self

    def predictive(self, batch, pos, num_samples=16, include_noise=True, generator=None, refine_steps=0,
                   residual_neighbors=0, residual_kernel="idw"):
        from pcfunc.models._vamoh_inference import Predictive

        B = int(batch.batch.max()) + 1
        mean = (0.5 + 0.2 * pos[:, 2:3]).expand(B, -1, -1)
        spread = (0.05 + 0.02 * pos[:, :1].abs()).expand(B, -1, -1)
        std = spread * (2.0 if include_noise else 1.0)
        return Predictive(mean.to(pos.dtype), std.to(pos.dtype), spread.to(pos.dtype))

    def reconstruct(self, batch, pos, refine_steps=0, residual_neighbors=0, residual_kernel="idw"):
        """Another known function: the training fields' reconstruction (a single decoding) is not the predictive
        mean."""
        B = int(batch.batch.max()) + 1
        return (0.45 + 0.3 * pos[:, 2:3]).expand(B, -1, -1).to(pos.dtype)


def test_evaluate_uncertainty_mos_rows_by_hand():
    model = _FixedPredictive()
    train, test = grid_fields(6), grid_fields(4, seed=1)
    mask = torch.zeros(GRID.num_points, dtype=torch.bool)
    mask[::3] = True
    hidden = ~mask
    rep = evaluate_uncertainty(model, GRID, train, test, masks={"m": mask}, calibration="leave_one_out",
                               num_samples=3, scale=2.0)
    f = (0.5 + 0.2 * GRID.pos[:, 2:3]).float()[None]
    s = (0.05 + 0.02 * GRID.pos[:, :1].abs()).float()[None]
    sel = lambda t: t[:, hidden]  # noqa: E731
    clim = train.mean(0, keepdim=True)
    r = (0.45 + 0.3 * GRID.pos[:, 2:3]).float()[None]  # MOS learns the reconstruction's errors on training fields
    mos = OutputStatistics(sel(r.expand_as(train)), sel(train), sel(clim.expand_as(train)))
    means, stds, weights = [], [], []
    for i in range(4):
        o = [j for j in range(4) if j != i]
        weights.append(mos.fit_weight(sel(f.expand(3, -1, -1)), sel(test[o]), sel(clim.expand(3, -1, -1))))
        m, sd = mos.predict(sel(f), sel(clim), sel(s))
        means.append(m)
        stds.append(sd)
    m, sd = torch.cat(means), torch.cat(stds)
    row = rep["inpaint_m"]["vamoh_mos"]
    assert row["weight"] == pytest.approx(weights)
    assert row["crps"] == pytest.approx(2.0 * float(crps_gaussian(m, sd, sel(test)).double().mean()), rel=1e-5)
    assert row["coverage_90"] == pytest.approx(float(interval_coverage(m, sd, sel(test), 0.9).double().mean()))
    assert row["rmse"] == pytest.approx(2.0 * float(((m - sel(test)) ** 2).mean((1, 2)).sqrt().mean()), rel=1e-5)
    # The model's own row: its predictive with the noise (here twice the spread).
    assert rep["inpaint_m"]["vamoh"]["crps"] == pytest.approx(
        2.0 * float(crps_gaussian(sel(f.expand_as(test)), sel(2 * s.expand_as(test)), sel(test)).double().mean()),
        rel=1e-5)


def test_scores_of_several_channels_are_in_each_channels_units_against_numpy():
    from pcfunc.evaluation import score, sample_statistics

    g = torch.Generator().manual_seed(0)
    truth, pred = torch.rand(3, 50, 2, generator=g), torch.rand(3, 50, 2, generator=g)
    truth[1, 7, 0] = math.nan  # a missing point (in one channel: the point is left out)
    hidden = torch.zeros(50, dtype=torch.bool)
    hidden[10:40] = True
    scale = (2.0, 300.0)
    out = score(pred, truth, hidden, scale=scale)
    t, p, s = truth.numpy().astype(np.float64), pred.numpy().astype(np.float64), np.array(scale)
    keep = [hidden.numpy() & ~np.isnan(t[b]).any(-1) for b in range(3)]
    err = [(p[b][keep[b]] - t[b][keep[b]]) for b in range(3)]
    # Eq. 19: the squared error summed over channels; RMSE in data units, PSNR on the normalised values.
    assert out["rmse"] == pytest.approx(np.mean([np.sqrt(((e * s) ** 2).sum(-1).mean()) for e in err]))
    assert out["psnr"] == pytest.approx(np.mean([-10 * np.log10((e ** 2).sum(-1).mean()) for e in err]))
    for c in range(2):
        ch = out["channels"][c]
        keep_c = [hidden.numpy() & ~np.isnan(t[b, :, c]) for b in range(3)]
        e_c = [p[b, keep_c[b], c] - t[b, keep_c[b], c] for b in range(3)]
        assert ch["rmse"] == pytest.approx(np.mean([np.sqrt(((e * s[c]) ** 2).mean()) for e in e_c]))
        assert ch["psnr"] == pytest.approx(np.mean([-10 * np.log10((e ** 2).mean()) for e in e_c]))
    assert "channels" not in score(pred[..., :1], truth[..., :1], scale=2.0)
    with pytest.raises(ValueError, match="one per channel"):
        score(pred, truth, scale=(1.0, 2.0, 3.0))
    # Sample statistics: spreads in each channel's units.
    samples, ref = torch.rand(6, 50, 2, generator=g), torch.rand(5, 50, 2, generator=g)
    stats = sample_statistics(samples, ref, scale)
    su = samples.double().numpy() * s
    assert stats["sample_spread"] == pytest.approx(su.std(0, ddof=1).mean())
    assert stats["one_nn_accuracy"] == sample_statistics(samples, ref, 1.0)["one_nn_accuracy"]
