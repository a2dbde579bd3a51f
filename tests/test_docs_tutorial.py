"""The tutorial "Add your own manifold" is real code: run it."""

import importlib.util
from pathlib import Path

import torch

from pcfunc.manifolds import resolve_manifold
from pcfunc.testing import check_manifold

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorials" / "custom_manifold.py"


def _load():
    spec = importlib.util.spec_from_file_location("custom_manifold", TUTORIAL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tutorial_runs(capsys):
    mod = _load()
    mod.main()
    out = capsys.readouterr().out
    # Both models train and sample on the user's manifold (issue "One consolidation pass", item 10).
    assert "VaMoH: ELBO loss" in out and "sample (1, 288, 1)" in out
    assert "GASP: 2-D discriminator neighbourhoods of 9; sample (2, 288, 1)" in out
    cyl = resolve_manifold("cylinder")
    check_manifold(cyl, grid_resolution=(8, 5))
    # The cylinder's geodesic distance, independently: wrapped angle difference and height difference.
    a = cyl.embed(torch.tensor([[0.1, 0.5]], dtype=torch.float64))
    b = cyl.embed(torch.tensor([[6.2, -0.5]], dtype=torch.float64))
    expected = ((2 * torch.pi - (6.2 - 0.1)) ** 2 + 1.0) ** 0.5
    assert abs(float(cyl.cdist(a, b)) - float(expected)) < 1e-9
