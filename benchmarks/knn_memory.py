"""Peak resident memory of kNN on the ERA5 0.25 degree grid (721 x 1440 = 1,038,240 points).

1024 FPS centroids of the grid query their k = 9 nearest grid points. Peak RSS is a property of the
whole process, so each backend runs in a fresh subprocess; the table shows the process peak, and
the RSS before the kNN call (torch, the grid and the queries already in memory).

Run: ``bash scripts/run python benchmarks/knn_memory.py [--backends auto numba torch_cluster torch]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch
from pcfunc.data import LatLonGrid
from pcfunc.ops import fps, knn
sys.path.insert(0, {bench!r})
from _memory import rss_bytes
pos = LatLonGrid.regular(721, 1440, collapse_poles=False).pos
queries = pos[fps(pos, num=1024, manifold="sphere", backend="numba" if {backend!r} != "torch" else "torch")]
import gc; gc.collect()
before = rss_bytes()
resource_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.perf_counter()
edge_index = knn(pos, queries, 9, manifold="sphere", backend={backend!r})
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(dict(seconds=dt, before=before, peak=peak, peak_before_knn=resource_before,
                      pairs=int(edge_index.size(1)))))
"""


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", nargs="+", default=["auto", "numba", "torch_cluster", "torch"])
    args = ap.parse_args(argv)
    print(f"{'backend':<15} {'kNN s':>8} {'RSS before MiB':>15} {'peak RSS MiB':>13}")
    for backend in args.backends:
        code = CHILD.format(root=str(ROOT), bench=str(ROOT / "benchmarks"), backend=backend)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode:
            print(f"{backend:<15} failed: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{backend:<15} {r['seconds']:>8.3f} {r['before'] / 2**20:>15.0f} {r['peak'] / 2**20:>13.0f}")


if __name__ == "__main__":
    main()
