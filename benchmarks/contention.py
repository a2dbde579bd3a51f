"""A VaMoH training step on a CPU that is doing something else: idle, and beside a CPU-bound process this script
starts itself, at 1 and 2 torch threads, with pcfunc's OpenMP setting, GNU OpenMP's own default and
``OMP_WAIT_POLICY=PASSIVE``.

Every cell is a fresh process running ``benchmarks/vamoh.py``'s training step (the paper's ERA5 configuration,
float32, batch ``--batch``; median of ``--repeat`` steps after ``--warmup`` warm ones). The busy process is
either a pure Python loop (``--busy spin``: one core, no threads of its own) or a loop of 800 x 800 matrix
products in torch with its default settings (``--busy torch``). The table gives each step's time and its ratio to
the same thread count on the idle machine, and the last line the idle 1-thread step over the idle 2-thread one.

Rows (``OpenMP waiting``): ``pcfunc`` sets nothing, so pcfunc, imported before torch, sets ``GOMP_SPINCOUNT`` to
``pcfunc.OMP_SPIN_COUNT`` (1,000); ``libgomp`` is GNU OpenMP's own default (300,000 spins before a waiting thread
sleeps: what a script that imports torch before pcfunc gets); ``PASSIVE`` (waiting threads sleep at once) and
``SPINCOUNT=N`` (``--spincount``).

What it is for: waiting threads that spin take the cores the working ones need. First pcfunc's parallel Numba
kernels (FPS and kNN in the encoder) ran on Numba's ``omp`` layer, a second OpenMP runtime beside torch's
(:mod:`pcfunc.ops._numba_kernels` now uses the ``workqueue`` layer with torch's thread count; ``--numba-layer
omp`` measures the old way); then torch's own pool spun at 2 threads. On a 2-core AMD EPYC (``--repeat 7
--spincount 1000 3000``, beside a spinning process): 2 threads 1.662 s against 0.476 s idle with libgomp's
default (3.5x), 0.812 s against 0.406 s with 1,000 spins (2.0x), 0.765 s against 0.599 s with PASSIVE (1.3x, but
the idle step 1.5 times slower); 1 thread 1.0x in every row. Hence pcfunc's 1,000.

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
LIBGOMP_SPIN_COUNT = 300_000  # GNU OpenMP's spin count when neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY is set
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
    print(f"{'numba layer':>12} {'OpenMP waiting':>16} {'threads':>8} {'idle s':>8} {'busy s':>8} {'busy/idle':>10}")
    for layer in args.numba_layer:
        for policy in ["pcfunc", "libgomp", "PASSIVE"] + [f"SPINCOUNT={n}" for n in args.spincount]:
            env = dict(base)
            if policy.startswith("SPINCOUNT="):
                env["GOMP_SPINCOUNT"] = policy.split("=")[1]
            elif policy == "libgomp":  # GNU OpenMP's own default (what a script that imports torch first gets)
                env["GOMP_SPINCOUNT"] = str(LIBGOMP_SPIN_COUNT)
            elif policy != "pcfunc":  # pcfunc: nothing set, pcfunc sets its spin count (imported before torch)
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
