import numpy as np
import pytest
import torch

pytest.importorskip("pytorch3d")

from pcfunc.data import LatLonGrid  # noqa: E402
from pcfunc.render import render_sphere  # noqa: E402


def test_grid_values_and_callable_give_the_same_picture(tmp_path):
    # A field that depends on latitude only: the north-pole view is rotationally symmetric, and the grid and
    # the analytic function render alike.
    grid = LatLonGrid.regular(91, 180)
    values = grid.pos[:, 2]  # sin(latitude)
    views = [("north", 90.0, 0.0), ("equator", 0.0, 0.0)]
    a = render_sphere(values, grid.pos, out=tmp_path / "g.png", views=views, image_size=64, vmin=-1, vmax=1,
                      label="sin(lat)", title="test")
    b = render_sphere(lambda xyz: xyz[:, 2], views=views, image_size=64, vmin=-1, vmax=1)
    assert len(a) == 2 and a[0].shape == (64, 64, 3)
    assert np.abs(a[0] - b[0]).mean() < 0.02 and np.abs(a[1] - b[1]).mean() < 0.02
    # The equator view has the high values (red in turbo) on top and the low (blue) at the bottom.
    top, bottom = a[1][18:24, 28:36].mean((0, 1)), a[1][40:46, 28:36].mean((0, 1))
    assert top[0] > top[2] and bottom[2] > bottom[0]
    # Background stays white, the globe is coloured.
    assert np.allclose(a[1][0, 0], 1.0) and a[1][32, 32].std() > 0.05
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size[0] == 2 * 64


def test_errors():
    with pytest.raises(ValueError, match="pos is required"):
        render_sphere(torch.zeros(10))
    with pytest.raises(ValueError, match="values has 5 entries but pos has 10"):
        render_sphere(torch.zeros(5), LatLonGrid.regular(4, 4).pos[:10])
    with pytest.raises(ValueError, match="image_size"):
        render_sphere(lambda xyz: xyz[:, 0], image_size=2)
