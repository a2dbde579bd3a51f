"""Fields on the sphere drawn as orthographic globes, with views chosen from the grid."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from .. import _compat
from ..manifolds import Sphere, latlon_to_xyz

__all__ = ["View", "DEFAULT_VIEWS", "globe_colors", "globe_views", "render_globe", "render_sphere"]

#: A viewpoint: (label, latitude, longitude) of the camera direction, in degrees.
View = Tuple[str, float, float]
DEFAULT_VIEWS: Tuple[View, ...] = (("lat 30, lon 0", 30.0, 0.0), ("lat 30, lon 120", 30.0, 120.0),
                                   ("north pole", 90.0, 0.0))
_TILE = 32
_FOV = 45.0


def globe_colors(values: Tensor, vmin: float, vmax: float, cmap: str = "turbo") -> Tensor:
    """Vertex colours ``(V, 3)`` in [0, 1] from values through a matplotlib colormap."""
    import matplotlib

    t = ((values.detach().double() - vmin) / max(vmax - vmin, 1e-12)).clamp(0, 1).cpu().numpy()
    rgb = matplotlib.colormaps[cmap](t)[:, :3]
    return torch.as_tensor(rgb, dtype=torch.float32, device=values.device)


def render_globe(meshes, views: Sequence[View] = DEFAULT_VIEWS, image_size: int = 512) -> List[np.ndarray]:
    """Render a PyTorch3D mesh scene (vertex colours) from each view; returns ``(S, S, 3)`` arrays in [0, 1].

    PyTorch3D's CPU rasteriser tests every pixel against every face (its coarse-to-fine path is CUDA
    only), so each view is cut into tiles of about 32 pixels, rendered as one batch with a camera per
    tile and only the front faces that overlap that tile; on a GPU this costs little and the result is
    the same picture. Cameras look at the origin from 3.2 units away; looking down a pole, longitude
    180 is up in the image.
    """
    _compat.require("pytorch3d", "pcfunc.render")
    from pytorch3d.renderer import (HardPhongShader, MeshRasterizer, MeshRenderer, PerspectiveCameras, PointLights,
                                    RasterizationSettings, TexturesVertex, look_at_view_transform)
    from pytorch3d.structures import Meshes

    if not views:
        raise ValueError("views must contain at least one (label, lat, lon) entry")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}")
    device = meshes.device
    n = max(1, math.ceil(image_size / _TILE))
    s = math.ceil(image_size / n)
    s += (n * s) % 2  # even canvas: no pixel centre on the centre line, where icosphere edges run
    V = len(views)
    eye = torch.stack([3.2 * latlon_to_xyz(torch.tensor(float(lat)), torch.tensor(float(lon)))
                       for _, lat, lon in views]).float().to(device)
    up = torch.tensor([[-1.0, 0.0, 0.0] if abs(lat) > 89 else [0.0, 0.0, 1.0] for _, lat, _ in views], device=device)
    R, T = look_at_view_transform(eye=eye, at=torch.zeros_like(eye), up=up, device=device)
    focal = 1.0 / math.tan(math.radians(_FOV / 2))
    full = PerspectiveCameras(focal_length=focal, R=R, T=T, device=device)
    verts, faces = meshes.verts_packed(), meshes.faces_packed()
    colours = meshes.textures.verts_features_packed()
    corner = full.transform_points(verts.expand(V, -1, -1))[..., :2][:, faces]  # (V, F, 3, 2)
    lo, hi = corner.amin(2), corner.amax(2)
    tri = verts[faces]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    front = ((eye[:, None] - tri.mean(1)[None]) * normal[None]).sum(-1) > 0  # (V, F)
    c = 1.0 - (2.0 * torch.arange(n, device=device) + 1.0) / n  # NDC centre of tile row / column
    h = (1.0 + 2.0 / s) / n  # half a tile plus a pixel
    over = [(hi[:, None, :, a] >= (c - h)[:, None]) & (lo[:, None, :, a] <= (c + h)[:, None]) for a in (0, 1)]
    mask = (over[1][:, :, None] & over[0][:, None] & front[:, None, None]).reshape(V * n * n, -1)
    tid = mask.any(1).nonzero().squeeze(1)
    out = torch.ones(V * n * n, s, s, 3, device=device)
    if tid.numel():
        vl, fl, cl = [], [], []
        for b in tid.tolist():  # per tile (a few dozen), not per point
            used, local = torch.unique(faces[mask[b]], return_inverse=True)
            vl.append(verts[used]), fl.append(local.view(-1, 3)), cl.append(colours[used])
        view, i, j = tid // (n * n), tid % (n * n) // n, tid % n
        cams = PerspectiveCameras(focal_length=focal * n, principal_point=torch.stack((-c[j] * n, -c[i] * n), 1),
                                  R=R[view], T=T[view], device=device)
        lights = PointLights(location=(eye + 2.0 * up)[view], ambient_color=((0.6,) * 3,),
                             diffuse_color=((0.45,) * 3,), specular_color=((0.05,) * 3,), device=device)
        settings = RasterizationSettings(image_size=s, blur_radius=0.0, faces_per_pixel=1, bin_size=0)
        renderer = MeshRenderer(MeshRasterizer(cameras=cams, raster_settings=settings),
                                HardPhongShader(device=device, cameras=cams, lights=lights))
        with torch.no_grad():
            out[tid] = renderer(Meshes(vl, fl, TexturesVertex(cl)))[..., :3].clamp(0, 1)
    out = out.view(V, n, n, s, s, 3).permute(0, 1, 3, 2, 4, 5).reshape(V, n * s, n * s, 3)
    o = (n * s - image_size) // 2
    return list(out[:, o:o + image_size, o:o + image_size].cpu().numpy())


def render_sphere(
    values: Union[Tensor, Callable[[Tensor], Tensor]],
    pos: Optional[Tensor] = None,
    out: Optional[Union[str, Path]] = None,
    views: Sequence[View] = DEFAULT_VIEWS,
    image_size: int = 512,
    cmap: str = "turbo",
    vmin: Optional[float] = None,
    vmax: Optional[float] = None,
    label: str = "",
    title: str = "",
    subdivisions: int = 5,
    outside: Optional[Tuple[float, float, float]] = (0.6, 0.6, 0.6),
) -> List[np.ndarray]:
    r"""Render a function on the sphere as shaded globes, with a colour bar, optionally to a PNG.

    The function is given either as a callable evaluated directly at the icosphere's vertices (an INR:
    ``values(xyz) -> (V,)`` or ``(V, 1)``), or as values at points ``pos`` of a grid, carried to each
    vertex from its nearest grid point (great-circle kNN).

    Where ``pos`` covers only part of the sphere (a regional grid, a polar cap), the vertices farther from every
    point than the points' own spacing (the median distance from a point to its nearest neighbour) are drawn in
    the ``outside`` colour, also with a callable: the globe shows the region and nothing invented around it. On a
    global grid every vertex is within that distance, and nothing changes.

    Args:
        values (Tensor or callable): Values ``(N,)``/``(N, 1)`` at ``pos``, or a function of unit vectors.
        pos (Tensor, optional): Points ``(N, 3)`` of ``values`` (required with a tensor).
        out (str or Path, optional): PNG to write (views side by side, colour bar below).
        views (sequence of (label, lat, lon)): Camera directions. (default: :data:`DEFAULT_VIEWS`)
        image_size (int): Pixels per view. (default: ``512``)
        cmap (str): Matplotlib colormap. (default: ``"turbo"``)
        vmin, vmax (float, optional): Colour range in the values' (physical) units; default: their range.
        label (str): Colour-bar label, e.g. ``"t2m [K]"``.
        title (str): Figure title.
        subdivisions (int): Icosphere level (5: 10,242 vertices, about 2° apart).
        outside (RGB in [0, 1], optional): Colour of the sphere away from ``pos`` (see above) and of missing
            values (NaN); ``None``: colour every vertex from its nearest point (missing values still grey).
            (default: grey)

    Returns:
        list of numpy.ndarray: One ``(S, S, 3)`` image per view.
    """
    _compat.require("pytorch3d", "pcfunc.render.render_sphere")
    from pytorch3d.renderer import TexturesVertex
    from pytorch3d.utils import ico_sphere

    device = pos.device if isinstance(pos, Tensor) else torch.device("cpu")
    globe = ico_sphere(subdivisions, device)
    verts = globe.verts_packed()
    if callable(values) and not isinstance(values, Tensor):
        with torch.no_grad():
            v = values(verts).reshape(-1)
    else:
        if pos is None:
            raise ValueError("pos is required when values is a tensor")
        if values.reshape(-1).numel() != pos.size(0):
            raise ValueError(f"values has {values.numel()} entries but pos has {pos.size(0)} points")
        from ..ops import knn

        nearest = knn(pos.float(), verts, k=1, manifold=Sphere())[1]
        v = values.reshape(-1)[nearest]
    if v.numel() != verts.size(0):
        raise ValueError(f"the function returned {v.numel()} values for {verts.size(0)} vertices")
    far = _far_from(verts, pos) if outside is not None and isinstance(pos, Tensor) else None
    missing = torch.isnan(v)  # a missing value (NaN) is drawn like the outside
    far = missing if far is None else far | missing
    shown = v if bool(far.all()) else v[~far]
    lo = float(shown.min()) if vmin is None else float(vmin)
    hi = float(shown.max()) if vmax is None else float(vmax)
    colors = globe_colors(torch.nan_to_num(v, nan=lo), lo, hi, cmap)
    colors[far] = torch.tensor(outside if outside is not None else (0.6, 0.6, 0.6), dtype=colors.dtype,
                               device=colors.device)
    globe.textures = TexturesVertex([colors])
    images = render_globe(globe, views, image_size)
    if out is not None:
        _save_panels(images, [name for name, _, _ in views], out, cmap, lo, hi, label, title)
    return images


def _far_from(verts: Tensor, pos: Tensor) -> Tensor:
    """Which vertices are farther from every point of ``pos`` than the points' median nearest-neighbour spacing."""
    from ..ops import knn

    p = pos.detach().float().to(verts.device)
    p = p / p.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if p.size(0) < 2:
        return torch.zeros(verts.size(0), dtype=torch.bool, device=verts.device)
    nn2 = knn(p, p, k=2, manifold=Sphere())[1].view(-1, 2)[:, 1]
    spacing = float(torch.acos((p * p[nn2]).sum(-1).clamp(-1, 1)).median())
    nearest = knn(p, verts, k=1, manifold=Sphere())[1]
    return torch.acos((verts * p[nearest]).sum(-1).clamp(-1, 1)) > max(spacing, 1e-6) * 1.05


def _save_panels(images: List[np.ndarray], names: List[str], out: Union[str, Path], cmap: str, vmin: float,
                 vmax: float, label: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    S, n = images[0].shape[0], len(images)
    fs = max(5.0, 13.0 * S / 512)
    # Below the panels, bottom up: the colour-bar label and tick labels (y0), the bar (hb), a gap.
    y0, hb = 5.0 * fs + 4, 0.06 * S  # ticks, tick labels and the label take about 5 font sizes
    top, bottom = round(0.12 * S), round(y0 + hb + 0.08 * S)
    H = S + top + bottom
    fig = plt.figure(figsize=(n * S / 100, H / 100), dpi=100)
    for i, (img, name) in enumerate(zip(images, names)):
        ax = fig.add_axes((i / n, bottom / H, 1 / n, S / H))
        ax.imshow(img)
        ax.set_axis_off()
        ax.text(0.5, 0.02, name, transform=ax.transAxes, ha="center", va="bottom", fontsize=fs, color="0.2")
    if title:
        fig.suptitle(title, fontsize=fs, y=1 - 0.2 * top / H)
    cax = fig.add_axes((0.25, y0 / H, 0.5, hb / H))
    sm = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(vmin, vmax), cmap=cmap)
    cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
    cb.set_label(label, fontsize=fs * 0.85)
    cb.ax.tick_params(labelsize=fs * 0.75)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def globe_views(grid) -> Tuple[View, ...]:
    """Camera directions that show a lat/lon grid's data: :data:`DEFAULT_VIEWS` for a global grid; for a regional
    box, its centre and 40 degrees to either side; for a polar cap or a latitude band, from the pole (or the
    equator) and two sides. (:func:`render_sphere` draws the sphere away from the data grey.)

    Args:
        grid (LatLonGrid): The data's grid (``is_global``, ``is_global_lon`` and ``pos`` are read).
    """
    if grid.is_global:
        return DEFAULT_VIEWS
    from ..manifolds import xyz_to_latlon

    centre = grid.pos.double().mean(0, keepdim=True)
    lat, lon = xyz_to_latlon(centre / centre.norm(dim=-1, keepdim=True))
    c_lat, c_lon = float(lat[0]), float(lon[0])
    if grid.is_global_lon:
        pole = math.copysign(90.0, c_lat) if abs(c_lat) > 45.0 else 0.0
        side = math.copysign(45.0, c_lat) if pole else 0.0
        return (("centre", pole, 0.0), ("lon 0", side, 0.0), ("lon 180", side, 180.0))
    return (("box centre", c_lat, c_lon), ("from the west", c_lat, c_lon - 40.0),
            ("from the east", c_lat, c_lon + 40.0))
