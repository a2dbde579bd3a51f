"""The in-painting masks of a lat/lon grid and the flat view of a report."""

import math

import numpy as np
import pytest
import torch

from pcfunc.data import LatLonGrid, pooled_points
from pcfunc.evaluation import NORTH_AMERICA, flat_report, inpainting_masks
from pcfunc.render import DEFAULT_VIEWS, globe_views, grid_spacing


def _great_circle_deg(lat1, lon1, lat2, lon2):
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    return np.degrees(np.arccos(np.clip(np.sin(p1) * np.sin(p2) + np.cos(p1) * np.cos(p2) * np.cos(dl), -1, 1)))


def test_inpainting_masks_on_a_global_and_a_regional_grid_against_brute_force():
    g = LatLonGrid.regular(46, 90)
    assert g.is_global
    lat, lon = np.meshgrid(g.lat.numpy(), g.lon.numpy(), indexing="ij")
    m = inpainting_masks(g)
    pts_lat, pts_lon = (g.to_points(torch.as_tensor(a)[None, ..., None]).reshape(-1).numpy() for a in (lat, lon))
    d = _great_circle_deg(pts_lat, pts_lon, NORTH_AMERICA[0], NORTH_AMERICA[1])
    assert np.array_equal(m["patch"].numpy(), d >= NORTH_AMERICA[2] - 1e-9)
    inner = np.abs(pts_lat) < 90  # a pole is one point, of no longitude
    assert np.array_equal(m["half"].numpy()[inner], np.mod(pts_lon, 360)[inner] < 180)
    # A regional box 20-50N, 250-290E: a disc of a quarter of its smaller side at its centre, the east half kept.
    r = LatLonGrid(torch.linspace(20, 50, 16, dtype=torch.float64), torch.linspace(250, 290, 21, dtype=torch.float64))
    assert not r.is_global
    m = inpainting_masks(r)
    lat, lon = (r.to_points(torch.as_tensor(a)[None, ..., None]).reshape(-1).numpy()
                for a in np.meshgrid(r.lat.numpy(), r.lon.numpy(), indexing="ij"))
    radius = 0.25 * min(30.0, 40.0 * math.cos(math.radians(35.0)))
    d = _great_circle_deg(lat, lon, 35.0, 270.0)
    assert np.array_equal(m["patch"].numpy(), d >= radius - 1e-9)
    assert np.array_equal(m["half"].numpy(), lon >= 270.0 - 1e-9)
    assert 0 < (~m["patch"]).sum() < r.num_points


def test_flat_report_names_the_grids_and_keeps_the_figures():
    row = lambda p: {"psnr": p, "rmse": 1.0 / p, "points": 10}  # noqa: E731
    report = {"tasks": {"reconstruction": {"vamoh": row(30.0), "training_mean": row(20.0)},
                        "super_resolution": {"vamoh": row(31.0), "vamoh_residuals": row(39.0),
                                             "bilinear": row(35.0), "bilinear_mean_residual": row(39.7)},
                        "inpaint_patch": {"vamoh": row(29.0), "vamoh_kriged": row(29.5), "zonal_mean": row(19.0),
                                          "training_mean": row(27.0), "pca_17": row(29.2),
                                          "pca_17_kriged": row(29.4)}},
              "uncertainty": {"super_resolution": {
                  "vamoh_calibrated": {"coverage_50": 0.5, "coverage_90": 0.9, "crps": 0.6, "psnr": 39.5,
                                       "rmse": 1.2},
                  "vamoh_mos": {"weight": 0.6},
                  "vamoh_mos_calibrated": {"coverage_50": 0.5, "coverage_90": 0.9, "crps": 0.5, "psnr": 39.9,
                                           "rmse": 1.1}}}}
    flat = flat_report(report, "4deg", "1deg")
    assert flat["reconstruction_4deg"] == {"psnr_db": 30.0, "rmse_k": 1 / 30.0, "points": 10}
    assert flat["baseline_bilinear_mean_residual_1deg"]["psnr_db"] == 39.7
    assert flat["super_resolution_residuals_1deg"]["psnr_db"] == 39.0
    assert flat["baseline_zonal_mean_patch"]["psnr_db"] == 19.0 and flat["inpaint_patch"]["psnr_db"] == 29.0
    assert flat["inpaint_patch_kriged"]["psnr_db"] == 29.5 and flat["baseline_pca_patch"]["psnr_db"] == 29.2
    assert flat["baseline_pca_kriged_patch"]["psnr_db"] == 29.4
    assert flat["uncertainty_super_resolution_vamoh_calibrated"] == {"coverage_50": 0.5, "coverage_90": 0.9,
                                                                      "crps_k": 0.6, "psnr_db": 39.5, "rmse_k": 1.2}
    assert flat["uncertainty_super_resolution_vamoh_mos_calibrated"]["weight"] == 0.6
    assert flat["uncertainty_super_resolution_vamoh_mos_calibrated"]["psnr_db"] == 39.9


def test_globe_views_spacing_and_pooled_points():
    assert globe_views(LatLonGrid.regular(46, 90)) == DEFAULT_VIEWS
    box = globe_views(LatLonGrid(torch.linspace(20, 50, 7, dtype=torch.float64),
                                 torch.linspace(250, 290, 9, dtype=torch.float64)))
    assert box[0][0] == "box centre" and abs(box[0][1] - 35.0) < 2.0 and abs((box[0][2] - 270.0) % 360) < 1e-6
    cap = globe_views(LatLonGrid(torch.linspace(60, 90, 7, dtype=torch.float64),
                                 torch.arange(0, 360, 4, dtype=torch.float64)))
    assert cap[0][1] == 90.0
    assert grid_spacing(np.array([90.0, 86.0])) == "4" and grid_spacing([0.0, 0.25]) == "0.25"
    from torch_geometric.data import Data

    items = [Data(x=torch.full((n, 1), float(n)), pos=torch.randn(n, 3)) for n in (3, 5)]
    pos, x = pooled_points(items)
    assert pos.shape == (8, 3) and x.reshape(-1).tolist() == [3.0] * 3 + [5.0] * 5
    try:
        pooled_points(items, target=True)
    except ValueError as e:
        assert "target_pos" in str(e)
    else:
        raise AssertionError("no error for items without target points")


def test_pooled_target_points_are_every_fine_point_not_a_training_subset():
    from pcfunc.data import ERA5Dataset

    from .._fields import fine_and_coarse

    fine, coarse, norm = fine_and_coarse(3)
    lat, lon, vals = fine.lat, fine.lon, fine.values
    ds = ERA5Dataset(coarse, norm, target=fine, target_points=20, generator=torch.Generator().manual_seed(0))
    state = ds.generator.get_state()
    pos, x = pooled_points(ds, target=True)
    n = LatLonGrid(lat, lon).num_points
    assert pos.shape == (3 * n, 3) and x.shape == (3 * n, 1)  # every fine point of every field
    full = LatLonGrid(lat, lon).to_batch(norm.transform(vals, clip=False)[..., None])
    torch.testing.assert_close(x, full.x.to(x.dtype))
    assert torch.equal(ds.generator.get_state(), state)  # the training draws are untouched ...
    assert ds[0].target_pos.shape == (20, 3)  # ... and items still draw their subset
    state = ds.generator.get_state()
    item = ds.get(1, all_targets=True)
    assert item.target_pos.shape == (n, 3) and torch.equal(ds.generator.get_state(), state)
    torch.testing.assert_close(item.x, ds[1].x)
    other = [ds[i] for i in range(3)]  # a plain list of items: their own (subset) targets
    assert pooled_points(other, target=True)[0].shape == (60, 3)


class _RefineStandIn:
    """In-paints the true fields plus an error whose size depends on the refinement, to check the choice."""

    def __init__(self, truth, error):
        self.truth, self.error, self.calls = truth, error, []

    def eval(self):
        return self

    def inpaint(self, batch, pos, refine_steps=0):
        self.calls.append((refine_steps, batch.num_graphs))
        start = sum(n for _, n in self.calls[:-1]) % self.truth.size(0)
        truth = self.truth[start:start + batch.num_graphs]
        return truth + self.error[refine_steps] * torch.linspace(-1, 1, truth.size(1)).view(1, -1, 1)


def test_choose_refine_steps_picks_the_best_validation_in_painting_and_the_fewest_on_a_tie():
    from pcfunc.data import LatLonGrid
    from pcfunc.evaluation import choose_refine_steps, score

    grid = LatLonGrid.regular(9, 16)
    truth = torch.rand(5, grid.num_points, 1, generator=torch.Generator().manual_seed(0))
    masks = inpainting_masks(grid)
    for error, expect in (({0: 0.1, 10: 0.05}, 10), ({0: 0.05, 10: 0.1}, 0), ({0: 0.05, 10: 0.05}, 0)):
        model = _RefineStandIn(truth, error)
        best, scores = choose_refine_steps(model, grid, truth, masks, candidates=(0, 10), fields_per_call=2)
        assert best == expect
        for c in (0, 10):  # each candidate's mean PSNR over the masks, scored on the hidden points
            pred = truth + error[c] * torch.linspace(-1, 1, grid.num_points).view(1, -1, 1)
            by_hand = sum(score(pred, truth, ~m)["psnr"] for m in masks.values()) / len(masks)
            assert scores[c] == pytest.approx(by_hand, rel=1e-9)
        assert {n for _, n in model.calls} == {2, 1}  # 5 fields in calls of at most 2
    # A mask that hides nothing is a reconstruction: scored on every point.
    full = {"all": torch.ones(grid.num_points, dtype=torch.bool)}
    model = _RefineStandIn(truth, {0: 0.05, 10: 0.1})
    best, scores = choose_refine_steps(model, grid, truth, full, candidates=(0, 10))
    pred = truth + 0.1 * torch.linspace(-1, 1, grid.num_points).view(1, -1, 1)
    assert best == 0 and scores[10] == pytest.approx(score(pred, truth)["psnr"], rel=1e-9)
    with pytest.raises(ValueError, match="masks"):
        choose_refine_steps(model, grid, truth, {})
    with pytest.raises(ValueError, match="candidates"):
        choose_refine_steps(model, grid, truth, masks, candidates=(-1, 10))


def test_refine_steps_for_fields_observed_everywhere_and_in_part():
    from pcfunc.evaluation import refine_steps_for

    assert refine_steps_for(7, partial=False) == refine_steps_for(7, partial=True) == 7
    both = {"reconstruction": 0, "inpainting": 10}
    assert refine_steps_for(both, partial=False) == 0 and refine_steps_for(both, partial=True) == 10
    for bad in (-1, 2.5, True, {"reconstruction": 0}, {"reconstruction": 0, "inpainting": -3},
                {"reconstruction": 0, "inpainting": 1, "other": 2}):
        with pytest.raises(ValueError, match="refine_steps"):
            refine_steps_for(bad, partial=True)
