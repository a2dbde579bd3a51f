"""Time and peak memory of calls, measured in-process.

:func:`measure`: a sampling thread reads the resident set size during one call.

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
import gc
import statistics
from pathlib import Path
from typing import Any, Callable, Optional, Tuple

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


def median_seconds(fn: Callable[[], Any], repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def status_mib(key: str) -> Optional[float]:
    """A field of ``/proc/self/status`` in MiB (``"VmRSS"``, ``"VmHWM"``); ``None`` where unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> Optional[float]:
    """Reset the kernel's peak-RSS mark of this process (Linux: ``/proc/self/clear_refs``) and return the
    current RSS in MiB, so that ``VmHWM`` afterwards is the peak of what follows; ``None`` where unsupported."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return status_mib("VmRSS")
