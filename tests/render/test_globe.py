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


def test_a_regional_grid_shows_only_its_region():
    from pcfunc.render._globe import _far_from

    from pytorch3d.utils import ico_sphere

    verts = ico_sphere(4).verts_packed()
    # A global 4-degree grid covers every vertex; a 15-60N box covers only the vertices within a spacing of it.
    assert not bool(_far_from(verts, LatLonGrid.regular(46, 90).pos).any())
    box = LatLonGrid(np.arange(60.0, 14.5, -1.0), np.arange(225.0, 315.5))
    far = _far_from(verts, box.pos)
    lat = torch.rad2deg(torch.asin(verts[:, 2]))
    lon = torch.remainder(torch.rad2deg(torch.atan2(verts[:, 1], verts[:, 0])), 360.0)
    inside = (lat > 16) & (lat < 59) & (lon > 226) & (lon < 314)
    outside = (lat < 13) | (lat > 62) | (lon < 222) | (lon > 318)
    assert not bool(far[inside].any()) and bool(far[outside].all())
    # Rendered: grey away from the box (also with a callable and pos), coloured inside.
    views = [("box", 37.5, 270.0), ("opposite", -37.5, 90.0)]
    img = render_sphere(box.pos[:, 2], box.pos, views=views, image_size=64, vmin=0, vmax=1)
    fn = render_sphere(lambda xyz: xyz[:, 2], box.pos, views=views, image_size=64, vmin=0, vmax=1)
    for a in (img, fn):
        assert a[1][32, 32].std() < 0.02 and a[1][32, 32].mean() < 0.9  # the far side: grey, not white
        assert a[0][32, 32].std() > 0.05  # the box: coloured
    plain = render_sphere(box.pos[:, 2], box.pos, views=views, image_size=64, vmin=0, vmax=1, outside=None)
    assert plain[1][32, 32].std() > 0.05  # nearest-point colours everywhere, as before
