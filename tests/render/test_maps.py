import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("PIL")

from matplotlib.text import Text  # noqa: E402

from pcfunc.render import Panel, plot_map, plot_panels  # noqa: E402

GREY = 0.85 * 0.6  # the mask layer (grey 0.6, opacity 0.85) over black


def _image(fig):
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(float) / 255


def _pixel(img, ax, lon, lat):
    """RGB of the rendered pixel at (lon, lat) in the axes' data coordinates."""
    x, y = ax.transData.transform((lon, lat))
    return img[int(img.shape[0] - y), int(x)]


def _centres(mesh):
    c = mesh.get_coordinates()  # (rows + 1, cols + 1, 2)
    return (c[0, 1:, 0] + c[0, :-1, 0]) / 2, (c[1:, 0, 1] + c[:-1, 0, 1]) / 2


def test_north_up_from_south_first_latitudes():
    lat = np.linspace(-90, 90, 19)  # south-first, poles included
    lon = np.arange(0, 360, 10.0)
    values = torch.as_tensor(np.repeat((lat > 0).astype(float)[:, None], 36, 1))
    mesh = plot_map(values, torch.as_tensor(lat), lon, cmap="gray", vmin=0, vmax=1, colorbar=False)
    coords = mesh.get_coordinates()
    y = coords[:, 0, 1]
    np.testing.assert_allclose(y, np.concatenate([[-90], np.arange(-85, 90, 10), [90]]))
    _, yc = _centres(mesh)
    arr = np.asarray(mesh.get_array())
    assert (arr[yc > 0] == 1).all() and (arr[yc <= 0] == 0).all()
    ax = mesh.axes
    assert ax.get_ylim() == (-90, 90) and ax.get_xlim() == (-180, 180)
    img = _image(ax.figure)
    np.testing.assert_allclose(_pixel(img, ax, 0, 45), 1.0)  # north: white, at the top
    np.testing.assert_allclose(_pixel(img, ax, 0, -45), 0.0)
    top, bottom = ax.transData.transform((0, 45))[1], ax.transData.transform((0, -45))[1]
    assert top > bottom
    # The same field given north-first draws the same mesh.
    again = plot_map(values.flip(0), lat[::-1].copy(), lon, cmap="gray", colorbar=False)
    np.testing.assert_array_equal(np.asarray(again.get_array()), arr)
    np.testing.assert_allclose(again.get_coordinates(), coords)
    # Axis ticks every 60 degrees of longitude and 30 of latitude, with degree labels.
    xt, yt = ax.get_xticks(), ax.get_yticks()
    np.testing.assert_allclose(xt[(xt >= -180) & (xt <= 180)], np.arange(-180, 181, 60))
    np.testing.assert_allclose(yt[(yt >= -90) & (yt <= 90)], np.arange(-90, 91, 30))
    fmt = ax.xaxis.get_major_formatter()
    assert [fmt(t) for t in (-120, 0, 60, 180)] == ["120°W", "0°", "60°E", "180°"]
    assert ax.yaxis.get_major_formatter()(-30) == "30°S"


def test_longitudes_recentred_and_sorted():
    lat = np.array([30.0, -30.0])
    lon = np.arange(0, 360, 10.0)
    values = np.repeat(lon[None], 2, 0)  # each cell holds its longitude
    mesh = plot_map(values, lat, lon, cmap="gray", vmin=0, vmax=350, colorbar=False)
    xc, _ = _centres(mesh)
    row = np.asarray(mesh.get_array())[0]
    assert np.all(np.diff(xc) > 0)
    x350, x10 = xc[row == 350], xc[row == 10]
    np.testing.assert_allclose(x350, [-10.0])
    np.testing.assert_allclose(x10, [10.0])
    assert x350[0] < x10[0]
    img = _image(mesh.axes.figure)
    assert _pixel(img, mesh.axes, -10, 0).mean() > 0.9 > 0.1 > _pixel(img, mesh.axes, 10, 0).mean()
    # -180..180 in shuffled order gives the same map.
    perm = np.random.default_rng(0).permutation(36)
    lon2 = (np.mod(lon + 180, 360) - 180)[perm]
    again = plot_map(values[:, perm], lat, lon2, colorbar=False)
    np.testing.assert_array_equal(np.asarray(again.get_array()), np.asarray(mesh.get_array()))
    np.testing.assert_allclose(again.get_coordinates(), mesh.get_coordinates())


@pytest.mark.parametrize("lon, edges, columns", [
    # Cells centred on -180 and 0, -90, 90: the seam cell (-225..-135) is cut at -180 and its part east of 180
    # drawn again at the right.
    ([0, 90, 180, 270], [-225, -135, -45, 45, 135, 225], [2, 3, 0, 1, 2]),
    # Centres -100, -10, 80, 170: the seam cell (125..215) is drawn again at the left.
    ([-100, -10, 80, 170], [-235, -145, -55, 35, 125, 215], [3, 0, 1, 2, 3]),
])
def test_cell_edges_periodic(lon, edges, columns):
    lat = [90.0, 45.0, 0.0, -45.0, -90.0]
    values = np.tile(np.arange(4.0), (5, 1))  # column index
    mesh = plot_map(values, lat, lon, colorbar=False)
    c = mesh.get_coordinates()
    np.testing.assert_allclose(c[0, :, 0], edges)
    np.testing.assert_allclose(c[:, 0, 1], [-90, -67.5, -22.5, 22.5, 67.5, 90])
    np.testing.assert_array_equal(np.asarray(mesh.get_array())[0], columns)
    assert mesh.axes.get_xlim() == (-180, 180)


def test_regional_longitudes():
    lat = np.array([50.0, 40.0])
    mesh = plot_map(np.ones((2, 7)), lat, np.arange(0, 61, 10.0), colorbar=False)
    np.testing.assert_allclose(mesh.get_coordinates()[0, :, 0], np.arange(-5, 66, 10))
    assert mesh.axes.get_xlim() == (-5, 65) and mesh.axes.get_ylim() == (35, 55)
    # A region across the antimeridian stays in one piece, in any longitude convention.
    for lon in ([170, 180, 190], [-170, 170, 180]):
        mesh = plot_map(np.array([lon, lon], dtype=float), lat, lon, colorbar=False)
        xc, _ = _centres(mesh)
        np.testing.assert_allclose(xc, [170, 180, 190])
        assert mesh.axes.xaxis.get_major_formatter()(190) == "170°W"


def test_mask_greys_out_exactly_the_unobserved_cells():
    lat = np.array([80.0, 40.0, 0.0, -40.0, -80.0])
    lon = np.arange(0, 360, 45.0)
    mask = torch.rand(5, 8, generator=torch.Generator().manual_seed(1)) > 0.5
    values = np.ones((5, 8))
    values[~mask.numpy()] = -1000.0  # hidden cells of an in-painting input: not part of the default range
    mesh = plot_map(values, lat, lon, mask=mask, cmap="gray", colorbar=False)
    assert mesh.get_clim() == (1.0, 1.0)
    mesh.set_clim(0.0, 1.0)  # observed cells white, hidden ones black under the grey layer
    ax = mesh.axes
    (overlay,) = [c for c in ax.collections if c.get_gid() == "mask"]
    # Rows south to north, columns -180 (lon 180) to 135 (lon 135), then lon 180 again east of the seam.
    expected = (~mask.numpy())[::-1][:, [4, 5, 6, 7, 0, 1, 2, 3, 4]]
    np.testing.assert_array_equal(~np.ma.getmaskarray(overlay.get_array()), expected)
    img = _image(ax.figure)
    for i, la in enumerate(lat):
        for j, lo in enumerate(lon):
            x = float(np.mod(lo + 180, 360) - 180)
            rgb = _pixel(img, ax, max(x, -170.0), la)  # the cell of lon 180 (-202.5..-157.5) inside the spines
            if mask[i, j]:
                np.testing.assert_allclose(rgb, 1.0, atol=1 / 255)
            else:
                np.testing.assert_allclose(rgb, GREY, atol=2 / 255)
    # All observed: no layer at all.
    mesh = plot_map(values, lat, lon, mask=torch.ones(5, 8, dtype=torch.bool), colorbar=False)
    assert [c.get_gid() for c in mesh.axes.collections] == [None]


def test_categorical_colormap():
    lat, lon = np.array([45.0, -45.0]), np.arange(0, 360, 72.0)
    values = np.array([[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]])
    mesh = plot_map(values, lat, lon, categorical=True, title="classes")
    assert mesh.cmap.N == 5 and mesh.get_clim() == (-0.5, 4.5)
    assert len({tuple(c) for c in mesh.to_rgba(np.arange(5))}) == 5
    np.testing.assert_array_equal(mesh.colorbar.get_ticks(), np.arange(5))
    assert mesh.axes.get_title() == "classes"
    # A qualitative colormap gives its first colours; the class count may exceed the largest index.
    import matplotlib

    mesh = plot_map(values, lat, lon, categorical=True, num_categories=7, cmap="tab10")
    assert mesh.cmap.N == 7
    np.testing.assert_allclose(mesh.to_rgba(np.arange(7)), matplotlib.colormaps["tab10"](np.arange(7)))
    np.testing.assert_array_equal(mesh.colorbar.get_ticks(), np.arange(7))
    # The rendered cell of class 3 (lon 216, drawn at -144) has class 3's colour.
    img = _image(mesh.axes.figure)
    np.testing.assert_allclose(_pixel(img, mesh.axes, -144, 45), mesh.to_rgba(3)[:3], atol=1 / 255)


def test_plot_into_given_axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    values = torch.zeros(3, 4, dtype=torch.bfloat16, requires_grad=True)  # e.g. a model's output
    mesh = plot_map(values, [60, 0, -60], [0, 90, 180, 270], ax=axes[1], label="t2m [K]")
    assert mesh.axes is axes[1] and mesh.colorbar.ax.get_xlabel() == "t2m [K]"
    assert not axes[0].collections


def _panel_data():
    lat1, lon1 = np.linspace(90, -90, 46), np.arange(0, 360, 4.0)  # 4 degrees: the truth
    lat2, lon2 = np.linspace(90, -90, 16), np.arange(0, 360, 12.0)  # 12 degrees: the input
    field = lambda la, lo: 250 + 40 * np.cos(np.radians(la))[:, None] + 5 * np.sin(np.radians(lo))[None]  # noqa: E731
    truth, coarse = field(lat1, lon1), field(lat2, lon2)
    mask = np.random.default_rng(0).random(coarse.shape) > 0.3
    coarse[~mask] = 0.0  # hidden: must not widen the shared range
    return lat1, lon1, lat2, lon2, truth, coarse, mask


def test_panels_shared_scales_layout_and_png(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    lat1, lon1, lat2, lon2, truth, coarse, mask = _panel_data()
    recon = truth + 3.0
    std = np.abs(recon - truth) + np.linspace(0, 1, truth.size).reshape(truth.shape)
    seg = (truth > 270).astype(int) + (truth > 285).astype(int)
    panels = [
        dict(values=torch.as_tensor(coarse), mask=torch.as_tensor(mask), lat=lat2, lon=lon2, title="input"),
        dict(values=truth, title="truth", label="t2m [K]"),
        Panel(values=recon, title="reconstruction", label="t2m [K]"),
        Panel(values=std, title="std", scale_group="std", cmap="magma"),
        dict(values=seg, title="segmentation", categorical=True, num_categories=3),
    ]
    out = tmp_path / "a" / "b" / "panels.png"
    fig = plot_panels(panels, lat1, lon1, out, dpi=50, suptitle="ERA5", attribution="ERA5 CC-BY 4.0 line")
    maps = fig.axes[:5]
    assert [ax.get_title() for ax in maps] == ["input", "truth", "reconstruction", "std", "segmentation"]
    meshes = [ax.collections[0] for ax in maps]
    lo, hi = min(truth.min(), coarse[mask].min()), max(recon.max(), coarse[mask].max())
    for m in meshes[:3]:
        np.testing.assert_allclose(m.get_clim(), (lo, hi))
    np.testing.assert_allclose(meshes[3].get_clim(), (std.min(), std.max()))
    assert meshes[3].get_clim() != meshes[1].get_clim() and meshes[3].cmap.name == "magma"
    assert meshes[4].get_clim() == (-0.5, 2.5) and meshes[4].cmap.N == 3
    assert np.asarray(meshes[0].get_array()).shape == (16, 31)  # its own 12-degree axes (+ the seam column)
    assert np.asarray(meshes[1].get_array()).shape == (46, 91)
    assert [c.get_gid() for c in maps[0].collections] == [None, "mask"]
    # 5 panels: 3 per row by default.
    assert [ax.get_subplotspec().rowspan.start for ax in maps] == [0, 0, 0, 1, 1]
    texts = [t.get_text() for t in fig.findobj(Text)]
    assert "ERA5 CC-BY 4.0 line" in texts and "ERA5" in texts
    # The PNG: written (parent folders created), readable, of the figure's size; the figure is not kept open.
    with Image.open(out) as im:
        assert im.format == "PNG"
        assert im.size == tuple(np.round(fig.get_size_inches() * 50).astype(int))
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.std() > 0.1 and (rgb == 255).all(-1).mean() < 0.9  # drawn, not blank
    assert plt.get_fignums() == []
    # Without sharing each panel has its range; a panel's own vmin/vmax win over the shared range.
    fig = plot_panels(panels[1:3], lat1, lon1, shared_scale=False, ncols=1)
    a, b = (ax.collections[0].get_clim() for ax in fig.axes[:2])
    np.testing.assert_allclose(b, np.add(a, 3.0))
    assert [ax.get_subplotspec().rowspan.start for ax in fig.axes[:2]] == [0, 1]
    fig = plot_panels([dict(values=truth), dict(values=recon, vmin=0.0, vmax=1.0)], lat1, lon1)
    assert fig.axes[1].collections[0].get_clim() == (0.0, 1.0)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_clim(), (truth.min(), recon.max()))


def test_errors(tmp_path):
    lat, lon = [45.0, -45.0], [0.0, 120.0, 240.0]
    ok = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"values must be a 2-D array \[n_lat, n_lon\], got shape \(6,\)"):
        plot_map(np.zeros(6), lat, lon)
    with pytest.raises(ValueError, match=r"values must be a 2-D.*values\[\.\.\., 0\]"):
        plot_map(np.zeros((2, 3, 1)), lat, lon)
    with pytest.raises(ValueError, match=r"values must have shape \(len\(lat\), len\(lon\)\) = \(2, 3\), got \(3, 2\)"):
        plot_map(np.zeros((3, 2)), lat, lon)
    with pytest.raises(ValueError, match=r"mask must have the shape of values \(2, 3\), got \(3, 2\)"):
        plot_map(ok, lat, lon, mask=np.ones((3, 2), bool))
    with pytest.raises(TypeError, match="mask must be a boolean"):
        plot_map(ok, lat, lon, mask=np.ones((2, 3)))
    with pytest.raises(ValueError, match="lat must be strictly monotone"):
        plot_map(np.zeros((3, 3)), [0.0, 45.0, -45.0], lon)
    with pytest.raises(ValueError, match=r"lat must lie in \[-90, 90\]"):
        plot_map(ok, [95.0, 0.0], lon)
    with pytest.raises(ValueError, match="lon has values equal modulo 360"):
        plot_map(ok, lat, [0.0, 180.0, 360.0])
    with pytest.raises(ValueError, match="num_categories must be a positive integer"):
        plot_map(ok, lat, lon, categorical=True, num_categories=0)
    with pytest.raises(ValueError, match="panels must contain at least one panel"):
        plot_panels([], lat, lon)
    with pytest.raises(TypeError, match=r"panels must be a sequence"):
        plot_panels({"values": ok}, lat, lon)
    with pytest.raises(TypeError, match=r"panels\[1\] has unknown keys \['colour'\]"):
        plot_panels([dict(values=ok), dict(values=ok, colour="red")], lat, lon)
    with pytest.raises(TypeError, match=r"panels\[0\] has no 'values'"):
        plot_panels([dict(title="x")], lat, lon)
    with pytest.raises(TypeError, match=r"panels\[0\] must be a Panel or a dict"):
        plot_panels([ok], lat, lon)
    out = tmp_path / "never.png"
    with pytest.raises(ValueError, match=r"panels\[1\]: values must have shape \(len\(lat\), len\(lon\)\)"):
        plot_panels([dict(values=ok), dict(values=np.zeros((3, 3)))], lat, lon, out)
    with pytest.raises(ValueError, match=r"panels\[0\]: mask must have the shape"):
        plot_panels([Panel(values=ok, mask=np.ones((2, 2), bool))], lat, lon, out)
    with pytest.raises(ValueError, match=r"panels\[0\] has no lat/lon"):
        plot_panels([dict(values=ok)], None, None, out)
    with pytest.raises(ValueError, match="ncols must be a positive integer"):
        plot_panels([dict(values=ok)], lat, lon, out, ncols=0)
    assert not out.exists()


def test_save_image_grid_layout_and_masks(tmp_path):
    from PIL import Image

    from pcfunc.render import save_image_grid

    imgs = np.zeros((6, 4, 5), np.float32)
    imgs[0] = 1.0  # first image white
    masks = np.ones((6, 4, 5), bool)
    masks[1, :2] = False
    out = save_image_grid(imgs, tmp_path / "g" / "grid.png", ncols=3, scale=2, masks=masks)
    with Image.open(out) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    # 2 rows x 3 columns of 4 x 5 pixels with 1-pixel gaps, scaled by 2.
    assert rgb.shape[0] >= 2 * (2 * 5 + 1) and rgb.shape[1] >= 2 * (3 * 6 + 1)
    red = (rgb[..., 0] > 90) & (rgb[..., 1] < 40) & (rgb[..., 2] < 40)
    assert red.sum() == 2 * 5 * 2 * 2  # the hidden rows of image 1, tinted
    white = (rgb.min(-1) > 250)
    assert white.sum() >= 4 * 5 * 4  # image 0 (plus the white gaps)
    with pytest.raises(ValueError, match="images must have shape"):
        save_image_grid(np.zeros((2, 3, 3, 2)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="masks must have shape"):
        save_image_grid(imgs, tmp_path / "x.png", masks=masks[:2])


def test_occupancy_mesh_places_the_surface_where_the_voxels_are(tmp_path):
    pytest.importorskip("pytorch3d")
    from pcfunc.render import occupancy_mesh, render_occupancy

    box = np.zeros((16, 16, 16), np.float32)
    box[10:14, 4:12, 4:12] = 1  # x in cells 10..13: coordinates 0.33..0.73
    v = occupancy_mesh(box).verts_packed()
    # The 0.5 level lies half a cell (1/15) outside the occupied cell centres.
    torch.testing.assert_close(v.min(0).values, torch.tensor([1 / 3 - 1 / 15, -7 / 15 - 1 / 15, -7 / 15 - 1 / 15]),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(v.max(0).values, torch.tensor([11 / 15 + 1 / 15, 7 / 15 + 1 / 15, 7 / 15 + 1 / 15]),
                               atol=1e-5, rtol=0)
    # A callable (an INR) on a finer grid: a ball of radius 0.5.
    ball = occupancy_mesh(lambda p: (p.norm(dim=-1) < 0.5).float(), resolution=33).verts_packed()
    r = ball.norm(dim=-1)
    assert abs(float(r.mean()) - 0.5) < 0.05
    imgs = render_occupancy(box, tmp_path / "box.png", image_size=64)
    assert len(imgs) == 3 and all(float(i.min()) < 0.9 for i in imgs)  # something drawn in every view
    assert (tmp_path / "box.png").is_file()
    empty = render_occupancy(np.zeros((4, 4, 4), np.float32), image_size=16)
    assert all(float(i.min()) == 1.0 for i in empty)


def test_plot_task_maps_writes_every_task(tmp_path):
    pytest.importorskip("matplotlib")
    from pcfunc.data import LatLonGrid
    from pcfunc.render import plot_task_maps

    coarse, fine = LatLonGrid.regular(10, 20), LatLonGrid.regular(19, 40)
    g = torch.Generator().manual_seed(0)
    f = lambda grid: 280 + torch.randn(grid.num_points, generator=g)  # noqa: E731
    obs = torch.rand(coarse.num_points, generator=g) > 0.3
    truth = f(fine)
    truth[:5] = float("nan")  # missing values are drawn grey, not an error
    plot_task_maps(tmp_path / "tasks.png", coarse, fine, truth=truth, observed=f(coarse), reconstruction=f(coarse),
                   super_resolution=f(fine), baseline=f(fine), spread=torch.rand(fine.num_points, generator=g),
                   inpainted={"patch": (f(coarse), obs)}, entropy=torch.rand(coarse.num_points, generator=g),
                   segmentation=torch.randint(0, 3, (coarse.num_points,), generator=g).double(), num_components=3,
                   label="t2m [K]", units="K", title="test")
    from PIL import Image

    with Image.open(tmp_path / "tasks.png") as im:
        assert im.format == "PNG" and im.size[0] > 800  # four panels a row
