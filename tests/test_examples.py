"""The runnable examples run end to end and write what they promise."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"pcfunc_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fps_globe_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("pytorch3d")
    Image = pytest.importorskip("PIL.Image")
    fps_globe = load_example("fps_globe")
    out = tmp_path / "g.png"
    assert fps_globe.main(["--out", str(out), "--image-size", "128", "--device", "cpu"]) == out
    assert out.is_file()
    with Image.open(out) as im:
        assert im.format == "PNG"
        width, height = im.size
        rgb = np.asarray(im.convert("RGB"))
    assert width == 3 * 128 and height > 128  # three 128-pixel views side by side, title and colorbar around them
    colours = np.unique(rgb.reshape(-1, 3), axis=0)
    assert len(colours) > 100, f"only {len(colours)} distinct colours: the render looks empty"
    # the globes are coloured (the temperature colormap), not a white or grey page
    saturation = rgb.max(-1).astype(int) - rgb.min(-1)
    assert (saturation > 60).mean() > 0.1


@pytest.mark.slow
def test_era5_sphere_main_tiny(tmp_path: Path) -> None:
    pytest.importorskip("pytorch3d")
    Image = pytest.importorskip("PIL.Image")
    import json

    era5 = load_example("era5_sphere")
    out = tmp_path / "run"
    summary = era5.main(["--config", "tiny", "--epochs", "2", "--batch-size", "6", "--warmup-steps", "2",
                         "--out", str(out), "--globe-size", "96", "--no-progress", "--fine-points", "256",
                         "--predictive-samples", "3"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["metrics"] == summary["metrics"]
    assert saved["steps"] == 6 and saved["train_fields"] == 18 and saved["test_fields"] == 6
    # No --refine-steps: 0 or 10 iterations for reconstruction and for in-painting, each whichever predicted the
    # validation fields better, used by the harness.
    choice = saved["refine_choice"]
    assert set(choice["validation_psnr"]) == {"reconstruction", "inpainting"}
    for task, task_scores in choice["validation_psnr"].items():
        scores = {int(c): v for c, v in task_scores.items()}
        assert set(scores) == {0, 10} and choice["chosen"][task] == max(sorted(scores), key=lambda c: (scores[c], -c))
    assert saved["refine_steps"] == choice["chosen"] == saved["quality"]["refine_steps"]
    # Validated at the start (the PCA start) and every step of the 6 asked for (a 30th of the budget), never
    # stopped early (the budget was the user's), and the report says whether validation was still improving.
    conv = saved["convergence"]
    assert conv["validations"] == 7 and [s for s, _ in conv["history"]] == [0, 1, 2, 3, 4, 5, 6]
    assert not conv["stopped_early"] and conv["still_improving"] in (True, False) and conv["verdict"]
    # Validation is the end of the training period (15%: 3 of 18 fields), and the model kept is its best.
    assert saved["validation_fields"] == 3 and conv["restored_step"] == conv["best_step"]
    assert conv["best"] == max(v for _, v in conv["history"])
    assert saved["train_grid"] == [46, 90] and saved["truth_grid"] == [181, 360]
    # The wall time of every phase, in order, and the machine's threads.
    assert list(saved["phases"]) == ["read", "prepare", "start", "train", "evaluate", "render"]
    assert all(v >= 0 for v in saved["phases"].values()) and saved["threads"] >= 1
    assert sum(saved["phases"].values()) <= saved["total_seconds"] + 0.5
    m = saved["metrics"]
    for task in ("reconstruction_4deg", "super_resolution_1deg", "baseline_bilinear_1deg", "inpaint_patch",
                 "baseline_zonal_mean_patch", "inpaint_half", "baseline_zonal_mean_half"):
        assert np.isfinite(m[task]["psnr_db"]) and m[task]["rmse_k"] > 0, task
    assert m["super_resolution_1deg"]["points"] == 64442
    # The quality harness's report: VaMoH next to the training mean and PCA on the same points, and its health.
    q = saved["quality"]["tasks"]
    assert set(q["reconstruction"]) == {"vamoh", "training_mean", "pca_8"}
    assert q["reconstruction"]["vamoh"]["psnr"] == m["reconstruction_4deg"]["psnr_db"]
    assert set(q["inpaint_half"]) == {"vamoh", "vamoh_kriged", "training_mean", "pca_8", "pca_8_kriged",
                                      "zonal_mean"}
    assert saved["quality"]["health"]["latent_dim"] == 8
    assert m["inpaint_half"]["points"] == m["baseline_zonal_mean_half"]["points"] > 1000
    # The bilinear baseline is an honest one: t2m at 1 degree from 4 degrees within a few kelvin; adding the
    # training fields' mean sub-grid residual (orography, coastlines) does better on the held-out fields.
    assert m["baseline_bilinear_1deg"]["rmse_k"] < 4.0
    assert m["baseline_bilinear_mean_residual_1deg"]["rmse_k"] < m["baseline_bilinear_1deg"]["rmse_k"]
    assert np.isfinite(m["super_resolution_residuals_1deg"]["psnr_db"])
    assert saved["fine_points"] == 256 and era5.parse_args([]).fine_points is None  # None: 4096 on finer data
    # Predictive intervals on the 6 held-out fields, each calibrated on the other 5, next to Gaussian baselines
    # and the model output statistics.
    unc = saved["quality"]["uncertainty"]
    assert set(unc["super_resolution"]) == {"vamoh", "vamoh_calibrated", "bilinear_mean_residual",
                                            "bilinear_mean_residual_calibrated", "vamoh_mos", "vamoh_mos_calibrated"}
    assert len(unc["inpaint_patch"]["vamoh_calibrated"]["std_scale"]["coverage_90"]) == 6
    assert len(m["uncertainty_super_resolution_vamoh_mos_calibrated"]["weight"]) == 6
    for task in ("inpaint_patch", "inpaint_half"):
        assert set(unc[task]) == {"vamoh", "vamoh_calibrated", "climatology", "climatology_calibrated", "vamoh_mos",
                                  "vamoh_mos_calibrated"}
    for key in ("uncertainty_super_resolution_vamoh_calibrated", "uncertainty_inpaint_patch_vamoh_calibrated"):
        assert 0 <= m[key]["coverage_50"] <= m[key]["coverage_90"] <= 1 and m[key]["crps_k"] > 0
    for name in ("globe_super_resolution_error.png", "globe_super_resolution_std.png"):
        assert name in saved["figures"]
    for name in saved["figures"]:
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert (out / "checkpoints" / "last.ckpt").is_file()
    # model.ckpt is the model evaluated: the best validation's weights (its factors refitted when that is the start).
    from pcfunc.training import VaMoHModule

    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["callbacks"]
    best = next(v for k, v in state.items() if k.startswith("Convergence"))
    kept = VaMoHModule.load_model(out / "model.ckpt").state_dict()
    assert best["best_state_step"] == conv["restored_step"] and saved["model_checkpoint"] == str(out / "model.ckpt")
    for key, value in best["best_state"].items():
        if not key.startswith("model.factors."):
            torch.testing.assert_close(kept[key.removeprefix("model.")], value, msg=key)
    # --resume continues the same run (already finished: no new steps) and still evaluates.
    again = era5.main(["--config", "tiny", "--epochs", "2", "--batch-size", "6", "--out", str(out), "--resume",
                       "--globe-size", "96", "--no-progress", "--fine-points", "256"])
    assert again["resumed_from"].endswith("last.ckpt") and again["steps"] == 6


@pytest.mark.parametrize("flag, value", [("--refine-steps", "-1"), ("--resolution", "0"), ("--fine-points", "-5"),
                                         ("--steps", "0"), ("--batch-size", "0"), ("--lr", "nan"),
                                         ("--predictive-samples", "-2"), ("--minutes", "-1")])
def test_era5_sphere_checks_every_number_before_any_work(flag: str, value: str, capsys) -> None:
    era5 = load_example("era5_sphere")
    with pytest.raises(SystemExit) as err:
        era5.parse_args([flag, value])
    assert err.value.code == 2 and f"{flag} must be" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["era5_sphere", "era5_gasp", "images", "shapes3d"])
def test_help_is_plain_text(name: str, capsys) -> None:
    import re

    with pytest.raises(SystemExit) as err:
        load_example(name).parse_args(["--help"])
    text = capsys.readouterr().out
    assert err.value.code == 0 and "usage:" in text
    assert not re.search(r"``|:(func|class|meth|attr|mod|data|math):`|::$", text, re.MULTILINE), text


def test_era5_sphere_variable_without_data_is_an_error(capsys) -> None:
    with pytest.raises(SystemExit):
        load_example("era5_sphere").parse_args(["--variable", "u10"])
    assert "--variable needs --data" in capsys.readouterr().err


def test_era5_sphere_select_and_time_dim_reach_the_reader(tmp_path: Path, capsys) -> None:
    xr = pytest.importorskip("xarray")
    era5 = load_example("era5_sphere")
    args = era5.parse_args(["--data", "f.nc", "--select", "pressure_level=500", "--select", "number=0",
                            "--select", "expver=0001"])
    assert args.selection == {"pressure_level": 500, "number": 0, "expver": 1}
    assert era5.parse_args(["--data", "f.nc", "--select", "level=850.5"]).selection == {"level": 850.5}
    assert era5.parse_args(["--data", "f.nc", "--select", "model=ukesm"]).selection == {"model": "ukesm"}
    for argv, message in ((["--select", "level=500"], "--select needs --data"),
                          (["--time-dim", "month"], "--time-dim needs --data"),
                          (["--data", "f.nc", "--select", "level"], "--select takes DIM=LABEL")):
        with pytest.raises(SystemExit):
            era5.parse_args(argv)
        assert message in capsys.readouterr().err
    # Two levels, four months numbered 1..4: the chosen level is read along the month axis (two months are too
    # few to train and test: the run stops there, after reading).
    lat, lon = np.linspace(60.0, -60.0, 5), np.arange(0.0, 360.0, 60.0)
    ds = xr.Dataset({"t": (("month", "pressure_level", "lat", "lon"), np.random.rand(2, 2, 5, 6).astype("float32"))},
                    coords={"month": [1, 2], "pressure_level": [850, 500], "lat": lat, "lon": lon})
    ds.to_netcdf(tmp_path / "levels.nc")
    base = ["--data", str(tmp_path / "levels.nc"), "--out", str(tmp_path / "out"), "--config", "tiny"]
    capsys.readouterr()
    with pytest.raises(SystemExit, match="need at least 3 time steps"):
        era5.main(base + ["--time-dim", "month", "--select", "pressure_level=500"])
    assert f"[read] {tmp_path / 'levels.nc'}" in capsys.readouterr().out  # each phase announced...
    with pytest.raises(SystemExit, match="need at least 3 time steps"):
        era5.main(base + ["--time-dim", "month", "--select", "pressure_level=500", "--quiet"])
    assert "[read]" not in capsys.readouterr().out  # ...unless --quiet
    with pytest.raises(ValueError, match=r"pressure_level \(2: 850, 500\).*--select pressure_level=850"):
        era5.main(base + ["--time-dim", "month"])
    with pytest.raises(ValueError, match="time_dim='month'"):
        era5.main(base + ["--select", "pressure_level=500"])


@pytest.mark.slow
def test_era5_sphere_runs_end_to_end_on_a_grib_file(tmp_path: Path) -> None:
    pytest.importorskip("cfgrib")
    pytest.importorskip("eccodes")
    import json

    from ._fields import write_grib

    # A CDS-like GRIB download: 2 m temperature, global 5-degree grid (south first), 12 days out of order.
    lat, lon = np.linspace(-90.0, 90.0, 37), np.arange(0.0, 360.0, 5.0)
    days = np.random.default_rng(0).permutation(12)
    la, lo = np.deg2rad(lat)[None, :, None], np.deg2rad(lon)[None, None, :]
    values = (260 + 30 * np.cos(la) + 5 * np.sin(lo + days[:, None, None] / 2) * np.cos(la))[:, None]
    path = write_grib(tmp_path / "t2m.grib", values, lat, lon, [20240101 + int(d) for d in days])
    out = tmp_path / "run"
    summary = load_example("era5_sphere").main([
        "--data", str(path), "--config", "tiny", "--resolution", "10", "--steps", "2", "--batch-size", "4",
        "--warmup-steps", "1", "--refine-steps", "0", "--predictive-samples", "0", "--globe-size", "32",
        "--no-progress", "--out", str(out)])
    saved = json.loads((out / "metrics.json").read_text())
    xr_open = pytest.importorskip("xarray").open_dataset
    saved_test_day = str(np.datetime64("2024-01-01") + np.timedelta64(12 - saved["test_fields"], "D"))
    assert saved["status"] == "finished" and saved["variable"] == "t2m" and saved["units"] == "K"
    assert saved["refine_steps"] == 0 and saved["refine_choice"] is None  # the user's --refine-steps, not chosen
    assert saved["train_grid"] == [19, 36] and saved["truth_grid"] == [37, 72] and saved == json.loads(
        json.dumps(summary))
    assert saved["train_fields"] + saved["test_fields"] == 12
    assert np.isfinite(saved["metrics"]["reconstruction_10deg"]["psnr_db"])
    # predictions.nc: the first test field's predictions in kelvin on both grids, readable by xarray.
    with xr_open(out / saved["predictions"]) as ds:
        assert ds["super_resolution"].dims == ("time", "latitude", "longitude") and ds["truth"].shape == (1, 37, 72)
        assert ds["reconstruction"].dims == ("time", "latitude_train", "longitude_train")
        assert ds["super_resolution"].attrs["units"] == "K" and ds.attrs["attribution"].startswith("Contains")
        assert ds["latitude"].attrs["units"] == "degrees_north" and bool(ds["inpainted_patch_observed"].any())
        assert str(ds["time"].values[0])[:10] == saved_test_day
        truth = values[np.argsort(days)][-saved["test_fields"], 0, ::-1]  # the first test day, north first
        np.testing.assert_allclose(ds["truth"].values[0, 1:-1], truth[1:-1], rtol=1e-5)  # poles: row means
        assert abs(float(ds["super_resolution"].mean()) - float(truth.mean())) < 10


def test_era5_sphere_trains_on_two_variables_as_one_function(tmp_path: Path) -> None:
    import json

    xr = pytest.importorskip("xarray")
    # Winds: u10 and v10 of a global 5-degree grid, 12 days; the two channels of one function.
    lat, lon = np.linspace(90.0, -90.0, 37), np.arange(0.0, 360.0, 5.0)
    la, lo, t = np.deg2rad(lat)[None, :, None], np.deg2rad(lon)[None, None, :], np.arange(12)[:, None, None]
    u = (8 * np.cos(la) ** 2 + 3 * np.sin(lo + t / 3) * np.cos(la)).astype("f4")
    v = (1e3 * (4 * np.sin(2 * la) * np.cos(lo - t / 4))).astype("f4")  # another scale: normalised on its own
    time = np.datetime64("2024-01-01") + np.arange(12).astype("timedelta64[D]")
    xr.Dataset({"u10": (("time", "latitude", "longitude"), u, {"units": "m s**-1"}),
                "v10": (("time", "latitude", "longitude"), v, {"units": "mm s**-1"})},
               coords={"time": time, "latitude": lat, "longitude": lon}).to_netcdf(tmp_path / "winds.nc")
    out = tmp_path / "run"
    summary = load_example("era5_sphere").main([
        "--data", str(tmp_path / "winds.nc"), "--variable", "u10", "v10", "--config", "tiny", "--resolution", "10",
        "--steps", "2", "--batch-size", "4", "--warmup-steps", "1", "--refine-steps", "1",
        "--predictive-samples", "2", "--globe-size", "32", "--no-progress", "--attribution", "synthetic winds",
        "--out", str(out)])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["status"] == "finished" and saved["variable"] == ["u10", "v10"]
    assert saved["attribution"] == "synthetic winds"
    assert saved["units"] == ["m s**-1", "mm s**-1"] and saved == json.loads(json.dumps(summary))
    assert len(saved["normalisation_k"]["low"]) == 2
    low, high = (np.array(saved["normalisation_k"][k]) for k in ("low", "high"))
    assert 3000 < high[1] <= 4000 and 500 < (high - low)[1] / (high - low)[0] < 2000  # each channel its own range
    rec = saved["metrics"]["reconstruction_10deg"]
    assert len(rec["channels"]) == 2 and all(np.isfinite(c["psnr_db"]) for c in rec["channels"])
    # The channels' RMSE are each in their own units: v's range is 1,000 times u's.
    assert rec["channels"][1]["rmse_k"] > 50 * rec["channels"][0]["rmse_k"]
    assert {"tasks_u10.png", "tasks_v10.png", "samples_v10.png"} <= set(saved["figures"])
    assert all((out / f).exists() for f in saved["figures"])
    with xr.open_dataset(out / saved["predictions"]) as ds:
        assert ds["super_resolution_v10"].attrs["units"] == "mm s**-1" and ds["truth_u10"].shape == (1, 37, 72)
        first = 12 - saved["test_fields"]
        np.testing.assert_allclose(ds["truth_u10"].values[0, 1:-1], u[first, 1:-1], rtol=1e-5)
        np.testing.assert_allclose(ds["truth_v10"].values[0, 1:-1], v[first, 1:-1], rtol=1e-5)
        assert "reconstruction_v10" in ds and "entropy" in ds and ds.attrs["attribution"] == "synthetic winds"


@pytest.mark.slow
def test_era5_sphere_keeps_its_results_when_rendering_or_evaluation_fails(tmp_path: Path, monkeypatch) -> None:
    import json

    era5 = load_example("era5_sphere")
    argv = ["--config", "tiny", "--steps", "2", "--batch-size", "6", "--warmup-steps", "1", "--no-progress",
            "--fine-points", "0", "--refine-steps", "0", "--predictive-samples", "0"]

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(era5, "render", boom)
    summary = era5.main(argv + ["--out", str(tmp_path / "r")])
    saved = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert saved["status"] == "finished" and saved["render_error"] == "RuntimeError: boom" and saved["figures"] == []
    assert saved["quality"]["tasks"]["reconstruction"]["vamoh"]["psnr"] == summary["quality"]["tasks"][
        "reconstruction"]["vamoh"]["psnr"]
    # A task that fails after others ended: their rows stay in metrics.json, beside the error.
    monkeypatch.setattr(era5.VaMoH, "inpaint", boom)
    with pytest.raises(RuntimeError, match="boom"):
        era5.main(argv + ["--out", str(tmp_path / "e")])
    saved = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert saved["status"] == "evaluation_failed" and saved["error"] == "RuntimeError: boom" and saved["steps"] == 2
    assert (tmp_path / "e" / "checkpoints" / "last.ckpt").is_file() and "train" in saved["phases"]
    assert set(saved["tasks_done"]) == {"reconstruction", "reconstruction_train"}
    assert np.isfinite(saved["tasks_done"]["reconstruction"]["vamoh"]["psnr"])


def test_era5_sphere_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    era5 = load_example("era5_sphere")
    with pytest.raises(SystemExit, match="--resume: no checkpoint"):
        era5.main(["--config", "tiny", "--resume", "--out", str(tmp_path / "nothing")])
    assert not (tmp_path / "nothing" / "logs").exists()  # refused before any work


@pytest.mark.slow
def test_era5_sphere_sigterm_mid_training_then_resume(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys
    import time

    from pcfunc.training import RESUMABLE_EXIT_CODE

    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "examples" / "era5_sphere.py"), "--config", "tiny", "--steps", "400",
           "--batch-size", "6", "--warmup-steps", "2", "--out", str(out), "--no-progress", "--fine-points", "0",
           "--refine-steps", "0", "--predictive-samples", "0", "--globe-size", "64"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = out / "checkpoints" / "step=50.ckpt"
    deadline = time.time() + 600
    while not first.is_file() and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.is_file(), "no checkpoint at step 50"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    assert p.returncode == RESUMABLE_EXIT_CODE, err[-3000:]
    saved = json.loads((out / "metrics.json").read_text())
    step = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["global_step"]
    assert saved["status"] == "preempted" and saved["steps"] == step and 50 <= step < 400
    assert "--resume" in err
    done = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    final = json.loads((out / "metrics.json").read_text())
    assert final["status"] == "finished" and final["steps"] == 400 and final["resumed_from"].endswith("last.ckpt")


def test_era5_sphere_train_fields_is_checked_before_training(tmp_path: Path, capsys) -> None:
    era5 = load_example("era5_sphere")
    with pytest.raises(SystemExit, match="--train-fields must be in 2..18"):  # more than the data's training steps
        era5.main(["--config", "tiny", "--train-fields", "19", "--out", str(tmp_path / "19")])
    with pytest.raises(SystemExit):  # not positive: refused by the argument parser
        era5.main(["--config", "tiny", "--train-fields", "0", "--out", str(tmp_path / "0")])
    assert "--train-fields must be positive, got 0" in capsys.readouterr().err
    assert not list(tmp_path.glob("*/checkpoints"))


@pytest.mark.slow
def test_era5_gasp_tiny(tmp_path: Path) -> None:
    pytest.importorskip("pytorch3d")
    import json

    era5 = load_example("era5_gasp")
    out = tmp_path / "gasp"
    summary = era5.main(["--config", "tiny", "--epochs", "1", "--batch-size", "6",
                         "--out", str(out), "--globe-size", "96", "--no-progress"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["model"] == "gasp" and saved["steps"] == 6  # 3 batches, two optimiser steps each
    assert saved["metrics"] == summary["metrics"] and saved["metrics"]["samples"] == 32
    assert np.isfinite(saved["metrics"]["sample_mean_vs_test_mean_rmse_k"])
    for name in ("gasp_samples.png", "globe_gasp_sample.png"):
        assert (out / name).is_file()


@pytest.mark.slow
def test_images_main_tiny(tmp_path: Path) -> None:
    import json

    Image = pytest.importorskip("PIL.Image")
    images = load_example("images")
    out = tmp_path / "img"
    summary = images.main(["--tiny", "--epochs", "1", "--limit", "200", "--batch-size", "32", "--out", str(out),
                           "--no-progress", "--refine-steps", "10"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["train"] == 180 and saved["test"] == 20 and saved["shape"] == [8, 8, 1] and saved["levels"] == 17
    v = saved["vamoh"]
    assert v["steps"] == 6 and v["validation_images"] == 18  # 162 fitted images / 32 per batch; 18 validate
    assert v["convergence"]["verdict"] and v["convergence"]["restored_step"] in (0, 6)  # the start or the end
    assert (out / "vamoh" / "model.ckpt").is_file()
    for task, pixels in (("reconstruction", 64), ("inpainting", 16), ("outpainting", 48)):
        assert v[task]["pixels"] == pixels and np.isfinite(v[task]["psnr_db"])
    assert saved["gasp"]["batches"] == 6
    for name in v["figures"] + saved["gasp"]["figures"]:
        with Image.open(out / name) as im:
            assert im.format == "PNG"
    # 29 x 29 samples drawn at 2 screen pixels per pixel: 8 columns of 2 x (29 + 1) pixels.
    with Image.open(out / "vamoh_samples_x4.png") as im:
        assert im.size[0] >= 8 * 2 * 30
    assert summary["vamoh"]["reconstruction"] == v["reconstruction"]


@pytest.mark.slow
def test_shapes3d_main_tiny(tmp_path: Path) -> None:
    pytest.importorskip("pytorch3d")
    import json

    Image = pytest.importorskip("PIL.Image")
    shapes = load_example("shapes3d")
    out = tmp_path / "s"
    shapes.main(["--tiny", "--epochs", "1", "--num-shapes", "10", "--resolution", "16", "--points", "512",
                 "--render-resolution", "32", "--image-size", "96", "--batch-size", "4", "--out", str(out),
                 "--no-progress"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["train"] == 9 and saved["test"] == 1 and saved["grid"] == [16, 16, 16]
    assert 0.0 <= saved["vamoh"]["reconstruction_iou"]["mean"] <= 1.0
    assert 0.0 <= saved["vamoh"]["reconstruction_iou"]["baseline_training_mean_iou"] <= 1.0
    assert saved["vamoh"]["steps"] == 3 and saved["gasp"]["batches"] == 3
    for name in saved["figures"] + saved["vamoh"]["figures"] + saved["gasp"]["figures"]:
        with Image.open(out / name) as im:
            assert im.format == "PNG"
    with Image.open(out / "training_shapes.png") as im:  # the training shapes are drawn (not a blank page)
        rgb = np.asarray(im.convert("RGB"))
    assert (rgb.min(-1) < 200).mean() > 0.02


@pytest.mark.slow
def test_era5_sphere_with_a_cds_netcdf_file_at_another_resolution(tmp_path: Path) -> None:
    pytest.importorskip("pytorch3d")
    xr = pytest.importorskip("xarray")
    import json

    import pandas as pd

    # A CDS-layout file at 2.5 degrees, latitudes south-first, longitudes -180..180: regridded to 4 degrees.
    lat = np.linspace(-90, 90, 73)
    lon = np.arange(-180, 180, 2.5)
    la, lo = np.meshgrid(np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    vals = np.stack([250 + 40 * np.cos(la) + 5 * np.sin(lo + i) for i in range(8)]).astype(np.float32)
    ds = xr.Dataset({"t2m": (("valid_time", "latitude", "longitude"), vals, {"units": "K"})},
                    coords={"valid_time": pd.date_range("2020-01-01", periods=8, freq="6h"), "latitude": lat,
                            "longitude": lon})
    ds.to_netcdf(tmp_path / "era5.nc")
    era5 = load_example("era5_sphere")
    out = tmp_path / "run"
    era5.main(["--data", str(tmp_path / "era5.nc"), "--config", "tiny", "--epochs", "1", "--batch-size", "4",
               "--out", str(out), "--globe-size", "64", "--no-progress"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["train_grid"] == [46, 90] and saved["truth_grid"] == [73, 144]
    assert saved["train_fields"] == 6 and saved["test_fields"] == 2
    m = saved["metrics"]
    assert m["super_resolution_2.5deg"]["points"] == 71 * 144 + 2
    # The field is smooth: bilinear interpolation from 4 degrees is accurate to a fraction of a kelvin.
    assert m["baseline_bilinear_2.5deg"]["rmse_k"] < 0.5


def test_era5_sphere_with_a_regional_cf_file_and_a_region_of_the_sample(tmp_path: Path) -> None:
    # A regional climate-model file (North America 15-60N, 225-315E, 360-day calendar, variable `tas` found by
    # its standard name, latitudes south-first): it used to stop at "new_lon has points outside the grid".
    pytest.importorskip("pytorch3d")
    xr = pytest.importorskip("xarray")
    cftime = pytest.importorskip("cftime")
    import json

    from pcfunc.data import load_era5_sample

    f = load_era5_sample().region((15, 60), (225, 315)).select_time(slice(0, 8))
    times = [cftime.Datetime360Day(2000, 1 + i, 30) for i in range(8)]  # day 30 exists in every 360-day month
    ds = xr.Dataset({"tas": (("time", "lat", "lon"), f.values[:, ::-1],
                             {"standard_name": "air_temperature", "units": "K"})},
                    coords={"time": times, "lat": ("lat", f.lat[::-1], {"units": "degrees_north"}),
                            "lon": ("lon", f.lon, {"units": "degrees_east"}), "height": 2.0})
    ds.to_netcdf(tmp_path / "cordex.nc")
    era5 = load_example("era5_sphere")
    out = tmp_path / "run"
    era5.main(["--data", str(tmp_path / "cordex.nc"), "--variable", "air_temperature", "--config", "tiny",
               "--epochs", "1", "--batch-size", "4", "--out", str(out), "--globe-size", "48", "--no-progress",
               "--predictive-samples", "2"])
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["train_grid"] == [12, 23] and saved["truth_grid"] == [46, 91] and saved["variable"] == "tas"
    m = saved["metrics"]
    assert m["super_resolution_1deg"]["points"] == 46 * 91
    assert m["inpaint_patch"]["points"] > 0 and m["inpaint_half"]["points"] > 0
    for task in ("reconstruction_4.09deg", "baseline_bilinear_1deg", "inpaint_patch", "inpaint_half"):
        assert np.isfinite(m[task]["psnr_db"]), task
    assert (out / "tasks.png").exists() and (out / "globe_super_resolution.png").exists()
    # A polar cap cut from the embedded sample with --region: periodic in longitude, one pole.
    out2 = tmp_path / "cap"
    era5.main(["--region", "60", "90", "0", "360", "--config", "tiny", "--epochs", "1", "--batch-size", "6",
               "--out", str(out2), "--globe-size", "48", "--no-progress", "--predictive-samples", "0"])
    cap = json.loads((out2 / "metrics.json").read_text())
    assert cap["train_grid"] == [9, 90] and cap["truth_grid"] == [31, 360]
    assert cap["metrics"]["super_resolution_1deg"]["points"] == 30 * 360 + 1


def test_era5_sphere_with_missing_values(tmp_path: Path) -> None:
    # Sea-surface-temperature-like data: a "continent" of _FillValue in every field and a gap in one; the
    # missing points are left out of training, of the model's inputs and of every score (never filled).
    pytest.importorskip("pytorch3d")
    xr = pytest.importorskip("xarray")
    import json

    from pcfunc.data import load_era5_sample

    f = load_era5_sample().select_time(slice(0, 8))
    v = f.values.copy()
    la, lo = np.meshgrid(f.lat, f.lon, indexing="ij")
    v[:, (la > 20) & (la < 60) & (lo > 230) & (lo < 290)] = np.nan
    v[7, 120:, :] = np.nan  # the last (test) field misses its southern part
    ds = xr.Dataset({"sst": (("time", "latitude", "longitude"), v, {"units": "K"})},
                    coords={"time": f.time, "latitude": f.lat, "longitude": f.lon})
    ds.to_netcdf(tmp_path / "sst.nc", encoding={"sst": {"_FillValue": -32767.0}})
    era5 = load_example("era5_sphere")
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="values are missing"):
        era5.main(["--data", str(tmp_path / "sst.nc"), "--config", "tiny", "--epochs", "1", "--batch-size", "3",
                   "--out", str(out), "--globe-size", "48", "--no-progress", "--predictive-samples", "0"])
    saved = json.loads((out / "metrics.json").read_text())
    m = saved["metrics"]
    assert saved["test_fields"] == 2 and saved["variable"] == "sst"
    sr = m["super_resolution_1deg"]
    assert sr["points"] < 64442 and np.isfinite(sr["psnr_db"])  # the valid 1-degree points only
    for task in ("reconstruction_4deg", "inpaint_patch", "inpaint_half", "baseline_bilinear_mean_residual_1deg"):
        assert np.isfinite(m[task]["psnr_db"]), task
    assert (out / "tasks.png").exists()
