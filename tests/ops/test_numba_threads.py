"""pcfunc's parallel Numba kernels: a threading layer whose idle threads sleep, torch's thread count, results that
do not depend on either, and a layer the user chose kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

PROBE = r"""
import json, sys, threading
import torch
from pcfunc.ops import fps, knn
import numba

torch.set_num_threads(int(sys.argv[1]))
g = torch.Generator().manual_seed(0)
x = torch.randn(3000, 3, generator=g, dtype=torch.float64)
batch = torch.arange(4).repeat_interleave(750)
idx = knn(x, x, 9, batch_x=batch, batch_y=batch, backend="numba")[1]
order = fps(x, batch, ratio=0.1, backend="numba")
# The same search from four Python threads at once (the kernels release the GIL): no crash, the same answer.
out = [None] * 4
def run(i):
    out[i] = knn(x, x, 9, batch_x=batch, batch_y=batch, backend="numba")[1]
threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
# OpenMP runtimes loaded besides torch's own (Linux).
try:
    maps = sum("libgomp" in line and "/torch/" not in line for line in open("/proc/self/maps"))
except OSError:
    maps = 0
# Brute force on the first cloud.
d = torch.cdist(x[:750], x[:750])
ref = d.topk(9, largest=False).indices
print(json.dumps({"layer": numba.threading_layer(), "numba_threads": numba.get_num_threads(),
                  "knn_ok": bool(torch.equal(idx.view(-1, 9)[:750], ref)),
                  "threads_ok": all(torch.equal(o, idx) for o in out),
                  "fps": order.tolist(), "maps": maps}))
"""


def _probe(threads: int, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    environ.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE, str(threads)], capture_output=True, text=True, env=environ,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_parallel_kernels_sleep_when_idle_and_follow_torchs_threads():
    one, two = _probe(1), _probe(2)
    assert one["layer"] == two["layer"] == "workqueue"
    assert one["numba_threads"] == 1 and two["numba_threads"] == min(2, os.cpu_count() or 1)
    assert one["knn_ok"] and two["knn_ok"] and one["threads_ok"] and two["threads_ok"]
    assert one["fps"] == two["fps"]  # the result does not depend on the threads
    if sys.platform.startswith("linux"):
        assert one["maps"] == 0  # no second OpenMP runtime loaded


def test_a_threading_layer_the_user_chose_is_kept():
    got = _probe(1, NUMBA_THREADING_LAYER="omp")
    assert got["layer"] == "omp" and got["knn_ok"]
