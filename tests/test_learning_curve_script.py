import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_learning_curve_keeps_pca_and_kriged_pca_apart_and_prints_them():
    lc = load("learning_curve")
    r = lambda p: {"psnr": p, "rmse": 1.0, "points": 3}  # noqa: E731
    tasks = {"reconstruction": {"vamoh": r(33.69), "training_mean": r(30.15), "pca_17": r(33.71)},
             "reconstruction_train": {"vamoh": r(40.0), "training_mean": r(30.0), "pca_17": r(50.0)},
             "inpaint_patch": {"vamoh": r(29.81), "training_mean": r(27.77), "pca_17": r(30.19),
                               "vamoh_kriged": r(29.90), "pca_17_kriged": r(30.28), "zonal_mean": r(20.0)},
             "inpaint_half": {"vamoh": r(33.34), "training_mean": r(31.18), "pca_17": r(33.56),
                              "vamoh_kriged": r(33.47), "pca_17_kriged": r(33.71)}}
    cells = lc.psnr_cells(tasks)
    assert cells["inpaint_patch/pca"] == 30.19 and cells["inpaint_patch/pca_kriged"] == 30.28
    assert cells["inpaint_half/vamoh_kriged"] == 33.47 and cells["reconstruction_train/vamoh"] == 40.0
    text = lc.table([{"train_fields": 18, "steps": 400, **cells}])
    line = text.splitlines()[1].split()
    assert line[:2] == ["18", "400"]
    assert [float(v) for v in line[2:]] == [33.69, 33.71, 30.15, 29.81, 29.90, 30.19, 30.28, 27.77,
                                            33.34, 33.47, 33.56, 33.71, 31.18]
