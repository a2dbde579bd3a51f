"""A VaMoH training step on a CPU that is doing something else: idle, and beside a CPU-bound process this script
starts itself, at 1 and 2 torch threads, with the default OpenMP settings and with ``OMP_WAIT_POLICY=PASSIVE``.

Every cell is a fresh process running ``benchmarks/vamoh.py``'s training step (the paper's ERA5 configuration,
float32, batch ``--batch``; median of ``--repeat`` steps after ``--warmup`` warm ones). The busy process is
either a pure Python loop (``--busy spin``: one core, no threads of its own) or a loop of 800 x 800 matrix
products in torch with its default settings (``--busy torch``). The table gives each step's time and its ratio to
the same thread count on the idle machine, and the last line the idle 1-thread step over the idle 2-thread one.

What it is for: pcfunc's parallel Numba kernels (FPS and kNN in the encoder) used Numba's default ``omp``
threading layer, a second OpenMP runtime beside torch's whose threads busy-wait (:mod:`pcfunc.ops._numba_kernels`
now uses the ``workqueue`` layer with torch's thread count). ``--numba-layer omp`` measures the old way in the same
run. On a 2-core AMD EPYC (``--repeat 3 --numba-layer default omp``), beside a spinning process, with the default
OpenMP settings: 1 thread 0.745 s against 0.703 s idle (1.1x; Numba's ``omp`` layer 1.683 s against 0.671 s,
2.5x); 2 threads 1.215 s against 0.454 s (2.7x; ``omp``: 3.8x), where torch's own OpenMP pool still spins.

Examples::

    python benchmarks/contention.py
    python benchmarks/contention.py --busy torch --numba-layer default omp
    python benchmarks/contention.py --spincount 10000 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

HERE = Path(__file__).resolve().parent
BUSY = {
    "spin": "while True:\n    pass\n",
    "torch": "import torch\na = torch.randn(800, 800)\nwhile True:\n    a = (a @ a).tanh()\n",
}


def step_seconds(threads: int, env: Dict[str, str], batch: int, repeat: int, warmup: int) -> float:
    """The median training step of a fresh process with these threads and environment."""
    cmd = [sys.executable, str(HERE / "vamoh.py"), "--case", f"pcfunc:train:{batch}", "--threads", str(threads),
           "--repeat", str(repeat), "--warmup", str(warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])


def measure(threads: int, env: Dict[str, str], busy: Optional[str], args: argparse.Namespace) -> float:
    if busy is None:
        return step_seconds(threads, env, args.batch, args.repeat, args.warmup)
    load = subprocess.Popen([sys.executable, "-c", BUSY[busy]], stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # the busy process is running before the step's process starts
        return step_seconds(threads, env, args.batch, args.repeat, args.warmup)
    finally:
        load.kill()
        load.wait()


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16, help="fields per training step (default: 16)")
    p.add_argument("--repeat", type=int, default=5, help="timed steps per cell (default: 5)")
    p.add_argument("--warmup", type=int, default=2, help="warm steps per cell (default: 2)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads (default: 1 2)")
    p.add_argument("--busy", choices=sorted(BUSY), default="spin", help="the other process (default: spin)")
    p.add_argument("--numba-layer", nargs="+", default=["default"], choices=["default", "workqueue", "omp", "tbb"],
                   help="Numba threading layers to compare (default: pcfunc's choice, workqueue)")
    p.add_argument("--spincount", type=int, nargs="*", default=[],
                   help="also GNU OpenMP's GOMP_SPINCOUNT at these values (spins before a waiting thread sleeps)")
    args = p.parse_args(argv)
    for name in ("batch", "repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be positive, got {getattr(args, name)}")
    if args.warmup < 0 or any(t < 1 for t in args.threads):
        p.error("--warmup must be non-negative and --threads positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    args = parse_args(argv)
    base = {k: v for k, v in os.environ.items()
            if k not in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER", "GOMP_SPINCOUNT")}
    rows: List[Dict[str, object]] = []
    print(f"VaMoH training step (paper's ERA5 configuration, float32, batch {args.batch}); median of {args.repeat} "
          f"steps; beside: {args.busy}; {os.cpu_count()} CPUs")
    print(f"{'numba layer':>12} {'OMP_WAIT_POLICY':>16} {'threads':>8} {'idle s':>8} {'busy s':>8} {'busy/idle':>10}")
    for layer in args.numba_layer:
        for policy in ["default", "PASSIVE"] + [f"SPINCOUNT={n}" for n in args.spincount]:
            env = dict(base)
            if policy.startswith("SPINCOUNT="):
                env["GOMP_SPINCOUNT"] = policy.split("=")[1]
            elif policy != "default":
                env["OMP_WAIT_POLICY"] = policy
            if layer != "default":
                env["NUMBA_THREADING_LAYER"] = layer
            for threads in args.threads:
                idle = measure(threads, env, None, args)
                busy = measure(threads, env, args.busy, args)
                rows.append(dict(layer=layer, policy=policy, threads=threads, idle=idle, busy=busy))
                print(f"{layer:>12} {policy:>16} {threads:>8} {idle:>8.3f} {busy:>8.3f} {busy / idle:>9.1f}x",
                      flush=True)
            one = [r["idle"] for r in rows[-len(args.threads):] if r["threads"] == 1]
            two = [r["idle"] for r in rows[-len(args.threads):] if r["threads"] == 2]
            if one and two:
                print(f"{'':>12} {'':>16} idle 1 thread / 2 threads: {one[0] / two[0]:.2f}x")
    return rows


if __name__ == "__main__":
    main()
