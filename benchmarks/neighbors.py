"""FPS and kNN: pcfunc (each backend, cold and cached) vs raw torch_cluster vs PyTorch3D vs a naive reference.

One process, one table. Workloads:

* ``era5-4deg``: the ERA5 4 degree grid (46 x 90, poles as single points: 3,962 points) as a batch of
  16 clouds; the PointConv hierarchy FPS + kNN at levels (1024, 256, 64, 32, 16) with k = 9.
* ``sphere-16k``: 16,384 random points on the sphere; FPS to 1024 centroids, then their 9 nearest points.
* ``era5-0.25deg``: the raw ERA5 0.25 degree grid (721 x 1440 = 1,038,240 points); FPS to 1024
  centroids, then their 9 nearest points.
* ``table-1deg``: kNN alone, the 4 points of the 1 degree grid (65,160) nearest to 8 x 4,096 random points
  (VaMoH's base-table lookup under fine supervision); the pure-PyTorch reference with its matrix products
  next to its exact ``cdist`` blocks (what it did before; on CUDA ``torch.cdist``'s exact kernel is slow).

The naive reference is written in the style of the GASP/VaMoH code: a Python loop for FPS over a
padded batch and a full ``torch.cdist`` + ``topk`` for kNN; on a fixed grid it computes on the first
cloud once and reuses the result (as the original code does), so its one computation is its cost.

pcfunc rows: "auto" (on the CPU: the Numba FPS kernel and torch_cluster's kNN), each backend forced
("fps=numba" leaves kNN on auto), all on a cold cache, and "auto, cached" (the grid seen before).

Run: ``bash scripts/run python benchmarks/neighbors.py`` (``--help`` for options; ``--cases`` and
``--methods`` pick rows). Times are medians over ``--repeat`` runs (one run, after no warm-up, for
the 0.25 degree grid); "peak MiB" is the largest resident-memory increase during one more call,
measured by a sampling thread (CUDA: the allocator's peak).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import max_rss_bytes, measure  # noqa: E402

from pcfunc import _compat  # noqa: E402
from pcfunc.data import LatLonGrid  # noqa: E402
from pcfunc.manifolds import Sphere  # noqa: E402
from pcfunc.ops import NeighborCache, build_hierarchy  # noqa: E402

LEVELS = [(1024, 9), (256, 9), (64, 9), (32, 9), (16, 9)]


# ----------------------------------------------------------------------------- naive reference
def naive_fps(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    """Padded-batch FPS with a Python loop over the samples, squared ambient distances, start at point 0."""
    B, N, _ = xyz.shape
    out = torch.zeros(B, npoint, dtype=torch.long, device=xyz.device)
    dist = torch.full((B, N), 1e10, device=xyz.device, dtype=xyz.dtype)
    far = torch.zeros(B, dtype=torch.long, device=xyz.device)
    rows = torch.arange(B, device=xyz.device)
    for i in range(npoint):
        out[:, i] = far
        c = xyz[rows, far].unsqueeze(1)
        d = ((xyz - c) ** 2).sum(-1)
        dist = torch.minimum(dist, d)
        far = dist.argmax(-1)
    return out


def naive_knn(x: torch.Tensor, q: torch.Tensor, k: int) -> torch.Tensor:
    """Full [B, M, N] distance matrix, then topk."""
    return torch.cdist(q, x).topk(k, dim=-1, largest=False).indices


def naive_hierarchy(pos: torch.Tensor, levels: List[Tuple[int, int]]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for num, k in levels:
        idx = naive_fps(pos, num)
        cent = torch.gather(pos, 1, idx[..., None].expand(-1, -1, pos.size(-1)))
        out.append((idx, naive_knn(pos, cent, k)))
        pos = cent
    return out


# ----------------------------------------------------------------------------- peers
def cluster_hierarchy(pos: torch.Tensor, batch: torch.Tensor, levels) -> list:
    import torch_cluster

    out = []
    for num, k in levels:
        n = torch.bincount(batch)
        ratio = ((num - 0.5) / n.double()).to(pos.dtype)
        idx = torch_cluster.fps(pos, batch, ratio, False)
        cpos, cbatch = pos[idx], batch[idx]
        out.append((idx, torch_cluster.knn(pos, cpos, k, batch, cbatch, num_workers=torch.get_num_threads())))
        pos, batch = cpos, cbatch
    return out


def p3d_hierarchy(pos: torch.Tensor, levels) -> list:
    from pytorch3d.ops import knn_points, sample_farthest_points

    out = []
    for num, k in levels:
        cent, idx = sample_farthest_points(pos, K=num, random_start_point=False)
        out.append((idx, knn_points(cent, pos, K=k, return_nn=False).idx))
        pos = cent
    return out


# ----------------------------------------------------------------------------- cases
def era5_4deg(device: str) -> Dict[str, Callable[[], object]]:
    grid = LatLonGrid.regular(46, 90)
    B = 16
    pos = grid.pos.to(device).repeat(B, 1)
    batch = torch.arange(B, device=device).repeat_interleave(grid.num_points)
    padded = pos.view(B, grid.num_points, 3)
    sphere = Sphere()
    return {**_pcfunc_rows(lambda backend, cache: build_hierarchy(pos, batch, LEVELS, manifold=sphere, cache=cache,
                                                                  backend=backend)),
            **_peer_rows(pos, batch, padded, LEVELS, naive_name="naive (once, on cloud 0)",
                         naive=lambda: naive_hierarchy(padded[:1], LEVELS),
                         naive_all=lambda: naive_hierarchy(padded, LEVELS))}


def _pcfunc_rows(run: Callable[[str, Optional[NeighborCache]], object]) -> Dict[str, Callable[[], object]]:
    """pcfunc with each backend on a cold cache, and on a warm one."""
    cache = NeighborCache()

    def cold(backend: str) -> Callable[[], object]:
        return lambda: run(backend, None)

    def cached() -> object:
        return run("auto", cache)

    rows = {"pcfunc auto, cold": cold("auto"), "pcfunc auto, cached": cached}
    if _compat.WITH_NUMBA:
        rows["pcfunc fps=numba, cold"] = cold("numba")
    if _compat.WITH_TORCH_CLUSTER:
        rows["pcfunc torch_cluster, cold"] = cold("torch_cluster")
    rows["pcfunc torch (reference), cold"] = cold("torch")
    return rows


def _peer_rows(pos, batch, padded, levels, naive_name, naive, naive_all=None) -> Dict[str, Callable[[], object]]:
    rows = {naive_name: naive}
    if naive_all is not None:
        rows["naive (every cloud)"] = naive_all
    if _compat.WITH_TORCH_CLUSTER:
        rows["raw torch_cluster"] = lambda: cluster_hierarchy(pos, batch, levels)
    if _compat.WITH_PYTORCH3D:
        rows["raw pytorch3d.ops"] = lambda: p3d_hierarchy(padded, levels)
    return rows


def one_level(pos: torch.Tensor, num: int, k: int) -> Dict[str, Callable[[], object]]:
    sphere = Sphere()
    lv = [(num, k)]
    batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    return {**_pcfunc_rows(lambda backend, cache: build_hierarchy(pos, None, lv, manifold=sphere, cache=cache,
                                                                  backend=backend)),
            **_peer_rows(pos, batch, pos[None], lv, naive_name="naive", naive=lambda: naive_hierarchy(pos[None], lv))}


def sphere_16k(device: str):
    return one_level(Sphere().random(16_384, generator=torch.Generator().manual_seed(0)).to(device), 1024, 9)


def era5_025(device: str):
    return one_level(LatLonGrid.regular(721, 1440, collapse_poles=False).pos.to(device), 1024, 9)


class _SphereByCdist(Sphere):
    """The sphere with the reference kNN's exact blocks (``manifold.cdist``) instead of its matrix products: the
    reference as it was before the products (same neighbours)."""

    ambient_euclidean_order = False


def table_1deg(device: str):
    """kNN only: the 4 grid points of the 1-degree table (181 x 360, 65,160 points) nearest to each of 8 x 4,096
    random points, VaMoH's base table under fine supervision (one lookup per training step)."""
    from pcfunc.ops import knn

    grid = LatLonGrid.regular(181, 360).pos.to(device)
    q = Sphere().random(8 * 4096, generator=torch.Generator().manual_seed(0)).to(device)
    rows = {"pcfunc auto": lambda: knn(grid, q, 4, manifold=Sphere())}
    if _compat.WITH_NUMBA and device == "cpu":
        rows["pcfunc numba"] = lambda: knn(grid, q, 4, manifold=Sphere(), backend="numba")
    if _compat.WITH_TORCH_CLUSTER:
        rows["pcfunc torch_cluster"] = lambda: knn(grid, q, 4, manifold=Sphere(), backend="torch_cluster")
    rows["pcfunc torch (products)"] = lambda: knn(grid, q, 4, manifold=Sphere(), backend="torch")
    rows["pcfunc torch (exact cdist, before)"] = lambda: knn(grid, q, 4, manifold=_SphereByCdist(), backend="torch")
    rows["naive (cdist + topk, 16 blocks)"] = lambda: [naive_knn(grid[None], c[None], 4) for c in q.chunk(16)]
    return rows


CASES = {"era5-4deg": era5_4deg, "sphere-16k": sphere_16k, "era5-0.25deg": era5_025, "table-1deg": table_1deg}


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--methods", nargs="*", default=None, help="substrings of the row names to keep")
    ap.add_argument("--repeat", type=int, default=5, help="runs per row (1 for the 0.25 degree grid)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}, "
          f"torch_cluster={_compat.WITH_TORCH_CLUSTER}, pytorch3d={_compat.WITH_PYTORCH3D}")
    header = f"{'case':<14} {'method':<36} {'median s':>10} {'min s':>9} {'peak MiB':>9} {'vs naive':>9}"
    print(header)
    print("-" * len(header))
    for case in args.cases:
        rows = CASES[case](args.device)
        if args.methods:
            rows = {k: v for k, v in rows.items() if any(m in k for m in args.methods) or k.startswith("naive")}
        repeat = 1 if case == "era5-0.25deg" else args.repeat
        results = {}
        for name, fn in rows.items():
            if repeat > 1 or "cached" in name:
                fn()  # warm-up (and fills the cache of the "cached" row)
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                fn()
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            _, _, peak = measure(fn, args.device)  # memory in a separate run: the sampler thread perturbs timing
            results[name] = (statistics.median(times), min(times), peak)
        naive = next(v[0] for k, v in results.items() if k.startswith("naive"))
        for name, (med, mn, peak) in results.items():
            print(f"{case:<14} {name:<36} {med:>10.4f} {mn:>9.4f} {peak / 2**20:>9.1f} {naive / med:>8.1f}x")
        print()
    print(f"process peak RSS: {max_rss_bytes() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
