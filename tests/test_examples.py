"""The runnable examples run end to end and write what they promise."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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
