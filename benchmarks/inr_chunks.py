"""How the INR block size (``pcfunc.nn._function_representation.INR_CHUNK_ELEMENTS``) trades speed and memory, VaMoH ERA5 (Table 3).

Each cell is a fresh process at 2 threads: the VaMoH paper model on the 46 x 90 grid (``benchmarks/vamoh.py``'s
setup), ``INR_CHUNK_ELEMENTS`` set to ``2**k``, one warm call, then the median of ``--repeat`` calls of a
training step (ELBO forward, backward, Adam), a reconstruction, or a super-resolution reconstruction at
91 x 180, and the workload's own peak memory above the process after setup (Linux ``VmHWM`` after
``/proc/self/clear_refs``). Use it to choose a block size for your hardware; the default 2**21 (8 MiB of
float32) came from this sweep on a 2-core AVX2 CPU.

Run: ``bash scripts/run python benchmarks/inr_chunks.py [--batch 16 64] [--powers 19 21 23 25]
[--only train rec sr] [--repeat 5]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import median_seconds, reset_peak_rss, status_mib  # noqa: E402
from vamoh import setup  # noqa: E402

import pcfunc.nn._function_representation as fr  # noqa: E402

WORKLOADS = ("train", "rec", "sr")


def run_cell(workload: str, B: int, power: int, repeat: int) -> dict:
    fr.INR_CHUNK_ELEMENTS = 1 << power
    torch.manual_seed(0)
    grid, batch, model = setup(B)
    if workload == "train":
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)

        def fn() -> None:
            opt.zero_grad(set_to_none=True)
            model.elbo(batch).loss.backward()
            opt.step()
    else:
        model.eval()
        out = None if workload == "rec" else grid.super_resolution(2).pos

        def fn() -> None:
            model.reconstruct(batch, out)
    base = reset_peak_rss()
    seconds = median_seconds(fn, repeat)
    peak = status_mib("VmHWM")
    extra = float("nan") if base is None or peak is None else peak - base
    return {"seconds": seconds, "extra_mib": extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    p.add_argument("--powers", type=int, nargs="+", default=[19, 21, 23, 25], help="block sizes 2**k elements")
    p.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cell", help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.cell:
        w, B, k = a.cell.split(":")
        print(json.dumps(run_cell(w, int(B), int(k), a.repeat)))
        return
    print(f"VaMoH ERA5 (Table 3), 46 x 90 grid, {a.threads} threads, CPU {torch.backends.cpu.get_cpu_capability()}; "
          f"median of {a.repeat} after one warm call; each cell a fresh process\n")
    print("| workload | B | " + " | ".join(f"2**{k}" for k in a.powers) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in a.powers) + " |")
    for B in a.batch:
        for w in a.only:
            cells = []
            for k in a.powers:
                cmd = [sys.executable, __file__, "--cell", f"{w}:{B}:{k}", "--repeat", str(a.repeat),
                       "--threads", str(a.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    raise RuntimeError(out.stderr[-2000:])
                r = json.loads(out.stdout.strip().splitlines()[-1])
                cells.append(f"{r['seconds']:.3f} s (+{r['extra_mib']:.0f} MiB)")
            print(f"| {w} | {B} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
