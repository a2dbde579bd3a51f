"""The farthest-point-sampling hierarchy of the ERA5 4-degree grid, rendered on a globe with PyTorch3D.

What it shows: the real ERA5 2 m temperature of one time step (1-degree sample,
subsampled to 4 degrees: 46 x 90 cells, each pole one point, 3962 points) painted
on a sphere, and on top the centroids that pcfunc.ops.build_hierarchy
picks at the levels 1024, 256, 64 and 16 (each level is a farthest point sample
of the previous one, so the markers nest). It runs the stack end to end: a
pcfunc.data.LatLonGrid batch of 4 time steps sharing coordinates, the
cached neighbour hierarchy on pcfunc.manifolds.Sphere (second call
served from the cache), kNN colouring of the globe and a PyTorch3D render of
three views (lat 30 lon 0, lat 30 lon 120, north pole) composed into one PNG.

Run it with bash scripts/run demo (the main job until the ERA5 example
exists) or python examples/fps_globe.py --out outputs/fps_globe.png.
By default it uses the real ERA5 sample embedded in pcfunc; --data (or the
env var PCFUNC_ERA5_SAMPLE) takes an .npz or a CDS NetCDF/Zarr file.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from pytorch3d.renderer import TexturesVertex  # noqa: E402
from pytorch3d.structures import Meshes, join_meshes_as_scene  # noqa: E402
from pytorch3d.utils import ico_sphere  # noqa: E402

from pcfunc.data import LatLonGrid, load_era5, load_era5_sample  # noqa: E402
from pcfunc.manifolds import Sphere  # noqa: E402
from pcfunc.ops import build_hierarchy, knn  # noqa: E402
from pcfunc.render import globe_colors, render_globe  # noqa: E402

LEVELS = [(1024, 9), (256, 9), (64, 9), (32, 9), (16, 9)]
# level size -> (colour, radius, icosphere level) of its markers; coarser levels get bigger markers over the finer ones
MARKERS = {1024: ("black", 0.008, 0), 256: ("white", 0.019, 0), 64: ("magenta", 0.030, 1), 16: ("blue", 0.044, 1)}
VIEWS = [("lat 30, lon 0", 30.0, 0.0), ("lat 30, lon 120", 30.0, 120.0), ("north pole, lon 0 down", 90.0, 0.0)]
CMAP = "turbo"


def default_data() -> Optional[Path]:
    env = os.environ.get("PCFUNC_ERA5_SAMPLE")
    return Path(env) if env else None


def load_t2m(path: Optional[Path]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """``t2m`` (T, n_lat, n_lon) in kelvin with its latitude (north first) and longitude axes.

    ``path``: an ``.npz`` with ``t2m``, ``latitude``, ``longitude``, or a CDS NetCDF/Zarr file; by default
    the ERA5 sample embedded in pcfunc.
    """
    attribution = "contains modified Copernicus C3S information (CC-BY 4.0)"
    if path is None:
        f = load_era5_sample()
        return f.values, f.lat, f.lon, f"ERA5 sample embedded in pcfunc\n{attribution}"
    if path.suffix == ".npz":
        with np.load(path) as z:
            return z["t2m"].astype(np.float32), z["latitude"], z["longitude"], f"ERA5 {path.name}\n{attribution}"
    f = load_era5(path, "t2m")
    return f.values, f.lat, f.lon, f"ERA5 {path.name}\n{attribution}"


def marker_mesh(centres: torch.Tensor, radius: float, subdiv: int, colour: Sequence[float],
                height: float = 1.012) -> Meshes:
    """One mesh of small spheres at ``centres`` (unit vectors), lifted to ``height``; no loop over points."""
    tmpl = ico_sphere(subdiv, centres.device)
    v, f = tmpl.verts_packed() * radius, tmpl.faces_packed()
    verts = (centres[:, None, :] * height + v[None]).reshape(-1, 3)
    faces = (f[None] + v.size(0) * torch.arange(centres.size(0), device=centres.device)[:, None, None]).reshape(-1, 3)
    rgb = torch.tensor(colour, dtype=verts.dtype, device=verts.device).expand(verts.size(0), 3)
    return Meshes([verts], [faces], TexturesVertex([rgb]))


def main(argv: Optional[Sequence[str]] = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=default_data(), help="ERA5 sample .npz (t2m, latitude, longitude)")
    p.add_argument("--out", type=Path, default=Path("outputs/fps_globe.png"), help="PNG to write")
    p.add_argument("--image-size", type=int, default=512, help="pixels per rendered view")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device, start = torch.device(args.device), time.perf_counter()

    t2m, lat, lon, source = load_t2m(args.data)
    t2m4, lat4, lon4 = t2m[:, ::4, ::4], lat[::4], lon[::4]  # 181 x 360 -> 46 x 90, both poles kept
    grid = LatLonGrid(lat4, lon4)
    data = grid.to_batch(t2m4[:4]).to(device)
    B = data.num_graphs
    print(f"{source.splitlines()[0]}: 1-degree {t2m.shape[1:]} -> 4-degree {t2m4.shape[1:]} -> {grid.num_points} points, "
          f"batch of {B} clouds ({data.pos.size(0)} points)")

    sphere = Sphere()
    # The first call of the process also loads pcfunc's compiled (Numba) kernels; the second finds the grid cached.
    for call in ("first", "second (cached)"):
        t0 = time.perf_counter()
        levels = build_hierarchy(data.pos, data.batch, LEVELS, manifold=sphere)
        print(f"build_hierarchy {call} call: {1e3 * (time.perf_counter() - t0):8.1f} ms")
    print("levels (centroids per cloud / total, k):",
          ", ".join(f"{lv.num_centroids // B}/{lv.num_centroids} k={lv.k}" for lv in levels))

    # Globe: t2m of the first step at the icosphere vertices (nearest 4-degree grid point, great-circle kNN).
    globe = ico_sphere(5, device)  # 10242 vertices, about 2 degrees apart
    verts = globe.verts_packed()
    values = grid.to_data(t2m4[0]).x[:, 0].to(device)
    nearest = knn(grid.pos.to(device), verts, k=1, manifold=sphere)[1]
    vmin, vmax = float(values.min()), float(values.max())
    globe.textures = TexturesVertex([globe_colors(values[nearest], vmin, vmax, CMAP)])

    # Markers: centroids of the first cloud at each drawn level.
    by_size = {lv.num_centroids // B: lv for lv in levels}
    parts = [globe] + [marker_mesh(by_size[n].pos[by_size[n].batch == 0], r, d, matplotlib.colors.to_rgb(c))
                       for n, (c, r, d) in MARKERS.items()]
    t0 = time.perf_counter()
    images = render_globe(join_meshes_as_scene(parts), VIEWS, args.image_size)
    print(f"rendered {len(images)} views at {args.image_size}x{args.image_size} in {time.perf_counter() - t0:.1f} s")

    # Compose: title on top, the views side by side, colorbar and legend below.
    S, n = args.image_size, len(images)
    top, bottom = round(0.17 * S), round(0.22 * S)
    fig = plt.figure(figsize=(n * S / 100, (S + top + bottom) / 100), dpi=100)
    H, fs = S + top + bottom, max(5.0, 13.0 * S / 512)
    for i, (img, (name, _, _)) in enumerate(zip(images, VIEWS)):
        ax = fig.add_axes((i / n, bottom / H, 1 / n, S / H))
        ax.imshow(img, interpolation="antialiased")
        ax.set_axis_off()
        ax.text(0.5, 0.02, name, transform=ax.transAxes, ha="center", va="bottom", fontsize=fs, color="0.2")
    fig.suptitle(f"FPS hierarchy of the ERA5 4° grid ({grid.num_points} points) on the sphere\n"
                 f"2 m temperature, time step 0, {source}", fontsize=fs, y=1 - 0.08 * top / H)
    cax = fig.add_axes((0.05, 0.55 * bottom / H, 0.4, 0.18 * bottom / H))
    sm = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(vmin, vmax), cmap=CMAP)
    cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
    cb.set_label("t2m [K]", fontsize=fs * 0.85, labelpad=1)
    cb.ax.tick_params(labelsize=fs * 0.75, length=2, pad=1)
    handles = [Line2D([], [], ls="", marker="o", mfc=c, mec="0.3", ms=fs * 0.6, label=f"{k} centroids")
               for k, (c, _, _) in MARKERS.items()]
    fig.legend(handles=handles, loc="center", bbox_to_anchor=(0.74, 0.5 * bottom / H), ncol=2, fontsize=fs * 0.8,
               frameon=False, handletextpad=0.2, columnspacing=0.8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    plt.close(fig)
    print(f"wrote {args.out} ({n * S}x{H} px) in {time.perf_counter() - start:.1f} s")
    return args.out


if __name__ == "__main__":
    main()
