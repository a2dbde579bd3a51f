"""Peak memory of a call, measured in-process: a sampling thread reads the resident set size.

Large tensors are mmap-backed and returned to the OS when freed, so the peak increase over the
baseline taken just before the call is a fair per-call figure even when calls run one after another
in the same process (which is why this is used instead of ru_maxrss, a process-lifetime maximum).
On CUDA the allocator's own peak counter is used instead.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from typing import Any, Callable, Tuple

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def max_rss_bytes() -> int:
    """Peak RSS of the whole process so far (ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(fn: Callable[[], Any], device: str = "cpu", interval: float = 5e-4) -> Tuple[Any, float, int]:
    """Run ``fn`` once; return (result, seconds, peak extra bytes)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        return out, dt, torch.cuda.max_memory_allocated() - base
    base = rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(interval)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t = time.perf_counter()
    try:
        out = fn()
    finally:
        dt = time.perf_counter() - t
        stop.set()
        th.join()
    peak[0] = max(peak[0], rss_bytes())
    return out, dt, peak[0] - base
