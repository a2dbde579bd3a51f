"""Training VaMoH from a Zarr store larger than memory: :class:`pcfunc.data.LazyERA5Dataset` (streaming) next to
the same training from fields held in memory (:class:`pcfunc.data.ERA5Dataset`).

1. Writes a Zarr store of ``--size-gb`` of float32 fields under ``--dir``: smooth random fields (a zonal
   climatology plus 24 large-scale modes with AR(1) coefficients in time), hourly steps, on a global
   ``--grid``-degree grid (2 degrees: 91 x 180, 65.5 kB per step, about 153,000 steps for 10 GB), ``--chunk``
   steps per chunk, uncompressed (its size on disk is the size of its values). It is written chunk by chunk, so
   the writer holds one chunk at a time. A store left by ``--keep`` with the same layout is reused. Chunking:
   an item reads its whole chunk, so chunks are small along time; 16 steps at 2 degrees is 1 MB, a quarter of
   one 0.25-degree step, and 9,540 chunk files for 10 GB (one step per chunk would mean 153,000 files).
2. ``fit_normalizer()``: one streaming pass over every step of the store (time, read rate, peak memory).
3. Streaming alone, for its memory: VaMoH (``--config small``, ``examples/era5_sphere.py``'s small
   configuration) trained for ``--alone-steps`` Adam steps at batch ``--batch`` on items of the whole store drawn
   at random (``torch_geometric.loader.DataLoader(shuffle=True, num_workers=--workers)``): every item is one time
   step read from disk (its chunk) by a worker. Also the loader's own rate, without training.
4. Speed: the streaming run next to the same training (same seed, model, batch; a loader without workers) on the
   first ``--in-memory`` steps held in memory (``LazyERA5Dataset.load`` into an :class:`~pcfunc.data.ERA5Dataset`),
   one step of each in turn (the order flipping every step), so that a machine whose load changes slows both
   alike; ``--steps`` timed steps of each after ``--warmup``.

Steps per second: timed steps over their total time; "waiting for data": the part of that time spent in
``next(loader)``. Memory: peak RSS of the main process in each phase (Linux ``VmHWM`` after
``/proc/self/clear_refs``), the largest DataLoader worker's peak RSS (``RUSAGE_CHILDREN``; a forked worker
starts with the main process's pages, shared, so its RSS counts them again), and the peak proportional set
size (PSS, shared pages split between processes) of the main process and its workers together, sampled every
0.25 s with psutil. The store is deleted at the end unless ``--keep``.

Run: ``bash scripts/run python benchmarks/data_stream.py [--dir DIR] [--size-gb 10] [--steps 200] [--batch 8]
[--workers 2] [--grid 2] [--chunk 16] [--in-memory 2000] [--alone-steps 20] [--config small|tiny] [--keep]
[--quick]``.
``--quick`` (for the test suite): 0.05 GB at 4 degrees, 20 steps, the tiny model.
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _memory import reset_peak_rss, status_mib  # noqa: E402
from quality import era5_small  # noqa: E402

from pcfunc.data import ERA5Dataset, LazyERA5Dataset  # noqa: E402
from pcfunc.models import VaMoH  # noqa: E402

# The examples' "small" configuration (benchmarks/quality.py's era5_small, with examples/era5_sphere.py's
# likelihood and base function); "tiny" is for tests.
CONFIGS: Dict[str, Dict[str, Any]] = {
    "small": dict(era5_small(), likelihood="gaussian", max_dropout=0.0, base_hidden=[128, 128, 128]),
    "tiny": dict(encoder=[dict(out_channels=8, num_neighbors=9, num_centroids=256),
                          dict(out_channels=8, num_neighbors=9, num_centroids=16)],
                 weight_hidden=[8], latent_dim=8, hypernet_hidden=[16], generator_hidden=[16],
                 num_frequencies=16, categorical_hidden=[8], flow_layers=2, likelihood="gaussian"),
}
GB = 1e9


# ----------------------------------------------------------------------------- the store
def grid_axes(degrees: float) -> Tuple[np.ndarray, np.ndarray]:
    """Global axes: latitudes 90..-90 (both poles), longitudes 0..360 - step."""
    n_lat, n_lon = int(round(180 / degrees)) + 1, int(round(360 / degrees))
    return np.linspace(90.0, -90.0, n_lat), np.arange(n_lon) * (360.0 / n_lon)


class SmoothFields:
    """Smooth random fields, step after step: a zonal climatology plus 24 large-scale modes whose coefficients
    follow an AR(1) process in time (correlation 0.95 per step), in kelvin."""

    def __init__(self, lat: np.ndarray, lon: np.ndarray, seed: int = 0, modes: int = 24) -> None:
        rng = np.random.default_rng(seed)
        phi, lam = np.deg2rad(lat)[:, None], np.deg2rad(lon)[None, :]
        basis = []
        for _ in range(modes):
            k, m = rng.integers(1, 5), rng.integers(0, 5)
            p, q = rng.uniform(0, 2 * np.pi, 2)
            # cos(lat)^m makes every mode single-valued at the poles
            basis.append((np.cos(k * phi + p) * np.cos(phi) ** m * np.cos(m * lam + q)).reshape(-1))
        self.basis = np.stack(basis).astype(np.float32)  # [modes, n_lat * n_lon]
        self.mean = (288.0 - 50.0 * np.sin(phi) ** 2 + 0.0 * lam).reshape(-1).astype(np.float32)
        self.shape = (lat.size, lon.size)
        self.rng, self.rho = rng, 0.95
        self.state = rng.standard_normal(modes)

    def next(self, n: int) -> np.ndarray:
        """The next ``n`` steps, ``(n, n_lat, n_lon)`` float32."""
        coeffs = np.empty((n, self.state.size))
        for i in range(n):
            noise = self.rng.standard_normal(self.state.size)
            self.state = self.rho * self.state + math.sqrt(1 - self.rho ** 2) * noise
            coeffs[i] = self.state
        return (self.mean + 4.0 * coeffs.astype(np.float32) @ self.basis).reshape(n, *self.shape)


def write_store(path: Path, size_gb: float, degrees: float, chunk: int) -> Tuple[int, float]:
    """Write (or reuse) the store; returns its number of steps and the seconds writing took (0 when reused)."""
    import xarray as xr
    import zarr

    lat, lon = grid_axes(degrees)
    step_bytes = lat.size * lon.size * 4
    steps = int(math.ceil(size_gb * GB / step_bytes / chunk)) * chunk
    done = path / ".complete"
    if done.exists() and done.read_text().strip() == str(steps):
        return steps, 0.0
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    times = np.datetime64("2000-01-01T00", "ns") + np.arange(steps).astype("timedelta64[h]")
    coords = xr.Dataset(coords={
        "time": ("time", times, {"standard_name": "time"}),
        "latitude": ("latitude", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "longitude": ("longitude", lon, {"standard_name": "longitude", "units": "degrees_east"})})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr: consolidated metadata is not in the v3 specification (yet)
        coords.to_zarr(path, mode="w", consolidated=False,
                       encoding={"time": {"units": "hours since 2000-01-01", "dtype": "int64"}})
        group = zarr.open_group(path, mode="a")
        arr = group.create_array("t2m", shape=(steps, lat.size, lon.size), chunks=(chunk, lat.size, lon.size),
                                 dtype="float32", compressors=None, fill_value=float("nan"),
                                 dimension_names=("time", "latitude", "longitude"),
                                 attributes={"units": "K", "standard_name": "air_temperature",
                                             "long_name": "2 metre temperature"})
        fields = SmoothFields(lat, lon)
        for start in range(0, steps, chunk):
            arr[start:start + chunk] = fields.next(chunk)
        zarr.consolidate_metadata(str(path))
    done.write_text(str(steps))
    return steps, time.perf_counter() - t0


def store_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ----------------------------------------------------------------------------- memory of the process tree
class TreeMemory:
    """Peak PSS of this process and its children together (shared pages split between them), sampled."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak_pss = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            import psutil
        except ImportError:
            self.peak_pss = -1
            return
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for p in [me] + me.children(recursive=True):
                try:
                    total += p.memory_full_info().pss
                except (psutil.Error, AttributeError):
                    pass
            self.peak_pss = max(self.peak_pss, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def phase_peak(base: Optional[float]) -> float:
    """Peak RSS (GB) of this process since ``reset_peak_rss``, or its lifetime peak where that is unsupported."""
    hwm = status_mib("VmHWM") if base is not None else None
    mib = hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return mib * 2**20 / GB


# ----------------------------------------------------------------------------- training
class Run:
    """One training run: VaMoH (seeded), Adam, and a shuffling loader over ``dataset``; :meth:`step` times one step."""

    def __init__(self, dataset: Any, config: Dict[str, Any], batch: int, workers: int, seed: int = 0) -> None:
        from torch_geometric.loader import DataLoader

        torch.manual_seed(seed)
        self.model = VaMoH.from_config("era5", **config)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                 generator=torch.Generator().manual_seed(seed))
        self.it = iter(self.loader)
        self.seconds: List[float] = []
        self.waiting: List[float] = []
        self.loss = float("nan")

    def step(self, timed: bool) -> None:
        t0 = time.perf_counter()
        try:
            data = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            data = next(self.it)
        t1 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        loss = self.model.elbo(data).loss
        loss.backward()
        self.opt.step()
        self.loss = float(loss.detach())
        if not math.isfinite(self.loss):
            raise RuntimeError(f"non-finite loss {self.loss}")
        if timed:
            self.seconds.append(time.perf_counter() - t0)
            self.waiting.append(t1 - t0)

    def close(self) -> None:
        del self.it, self.loader  # shuts the workers down (their peak RSS then counts in RUSAGE_CHILDREN)

    def summary(self) -> Dict[str, float]:
        total = sum(self.seconds)
        return {"steps_per_s": len(self.seconds) / total, "median_s": statistics.median(self.seconds),
                "waiting": sum(self.waiting) / total, "loss": self.loss}


def alternate(runs: Dict[str, Run], steps: int, warmup: int) -> None:
    """``warmup + steps`` steps of every run, one step of each in turn (the order flipping every step), so that
    a machine whose load changes slows them alike; the last ``steps`` are timed."""
    names = list(runs)
    for k in range(warmup + steps):
        for name in (names if k % 2 == 0 else names[::-1]):
            runs[name].step(timed=k >= warmup)


def read_rate(dataset: Any, batch: int, workers: int, batches: int) -> float:
    """Items per second the loader delivers alone (no training), after one warm batch."""
    from torch_geometric.loader import DataLoader

    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(1))
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch / (time.perf_counter() - t)
    del it, loader
    return rate


# ----------------------------------------------------------------------------- main
def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=None, help="where to write the store (default: a temporary folder)")
    p.add_argument("--size-gb", type=float, default=10.0, help="size of the store's values, in GB (default: 10)")
    p.add_argument("--steps", type=int, default=200, help="timed training steps of each run (default: 200)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them (default: 3)")
    p.add_argument("--alone-steps", type=int, default=20,
                   help="steps of the streaming run alone, for its memory (default: 20)")
    p.add_argument("--batch", type=int, default=8, help="fields per batch (default: 8)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streaming run (default: 2)")
    p.add_argument("--grid", type=float, default=2.0, help="grid spacing of the store in degrees (default: 2)")
    p.add_argument("--chunk", type=int, default=16, help="time steps per Zarr chunk (default: 16)")
    p.add_argument("--in-memory", type=int, default=2000, help="steps of the in-memory run (default: 2000)")
    p.add_argument("--config", choices=sorted(CONFIGS), default="small", help="VaMoH size (default: small)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the training process (default: 2)")
    p.add_argument("--keep", action="store_true", help="keep the store (a later run with the same layout reuses it)")
    p.add_argument("--quick", action="store_true", help="0.05 GB at 4 degrees, 20 steps, the tiny model (tests)")
    a = p.parse_args(argv)
    if a.quick:
        a.size_gb, a.steps, a.warmup, a.grid, a.config, a.in_memory, a.alone_steps = 0.05, 20, 2, 4.0, "tiny", 500, 10
    for name in ("steps", "batch", "chunk", "in_memory", "threads", "alone_steps"):
        if getattr(a, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1, got {getattr(a, name)}")
    if a.size_gb <= 0 or a.workers < 0 or a.warmup < 0:
        raise SystemExit("--size-gb must be positive, --workers and --warmup non-negative")
    torch.set_num_threads(a.threads)
    root = a.dir if a.dir is not None else Path(tempfile.mkdtemp(prefix="pcfunc_stream_"))
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"fields_{a.grid:g}deg_{a.size_gb:g}gb_c{a.chunk}.zarr"
    free = shutil.disk_usage(root).free / GB
    if not (path / ".complete").exists() and free < a.size_gb * 1.05 + 1:
        raise SystemExit(f"{root} has {free:.1f} GB free; the store needs {a.size_gb:g} GB: pass --dir elsewhere or a "
                         "smaller --size-gb")
    out: Dict[str, Any] = {}
    try:
        base = reset_peak_rss()
        steps, write_s = write_store(path, a.size_gb, a.grid, a.chunk)
        size = store_bytes(path)
        out["write"] = {"seconds": write_s, "peak_rss_gb": phase_peak(base)}
        print(f"Store {path}: {steps:,} steps of {a.grid:g}-degree fields, {size / GB:.2f} GB on disk, "
              f"{a.chunk} steps ({a.chunk * size / steps / 1e6:.2f} MB) per chunk; "
              + (f"written in {write_s:.0f} s, writer peak RSS {out['write']['peak_rss_gb']:.2f} GB"
                 if write_s else "reused"), flush=True)

        # 2. One streaming pass: the normaliser.
        base = reset_peak_rss()
        t = time.perf_counter()
        stream = LazyERA5Dataset(path, "t2m")
        construct_s = time.perf_counter() - t
        t = time.perf_counter()
        norm = stream.fit_normalizer()
        fit_s = time.perf_counter() - t
        stream.close()
        out["fit"] = {"seconds": fit_s, "peak_rss_gb": phase_peak(base), "construct_s": construct_s}
        print(f"LazyERA5Dataset: opened in {construct_s:.2f} s ({len(stream):,} items of {stream.grid.num_points:,} "
              f"points); fit_normalizer: one pass in {fit_s:.0f} s ({size / GB / fit_s:.2f} GB/s), {norm}",
              flush=True)

        # 3. Streaming training alone: its memory (and a first, noisy, speed).
        config = CONFIGS[a.config]
        base = reset_peak_rss()
        with TreeMemory() as tree:
            rate = read_rate(stream, a.batch, a.workers, batches=max(5, min(50, a.steps)))
            alone = Run(stream, config, a.batch, a.workers)
            alternate({"stream": alone}, a.alone_steps, a.warmup)
            alone.close()
        out["alone"] = dict(alone.summary(), peak_rss_gb=phase_peak(base), peak_pss_gb=tree.peak_pss / GB,
                            read_items_s=rate, worker_rss_gb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                            * 1024 / GB if a.workers else float("nan"))
        print(f"streaming alone: {out['alone']['steps_per_s']:.3f} steps/s over {a.alone_steps} steps, main peak RSS "
              f"{out['alone']['peak_rss_gb']:.2f} GB", flush=True)

        # 4. Streaming and in memory, one step of each in turn.
        n_mem = min(a.in_memory, len(stream))
        base = reset_peak_rss()
        with TreeMemory() as tree:
            t = time.perf_counter()
            field = stream.subset(slice(0, n_mem)).load()
            load_s = time.perf_counter() - t
            memory = ERA5Dataset(field, norm)
            for i in (0, n_mem // 2, n_mem - 1):  # the same items either way
                x, y = stream[i], memory[i]
                if not all(torch.equal(x[k], y[k]) for k in ("pos", "x", "time_index")):
                    raise RuntimeError(f"item {i} differs between LazyERA5Dataset and ERA5Dataset")
            stream.close()
            runs = {"stream": Run(stream, config, a.batch, a.workers), "memory": Run(memory, config, a.batch, 0)}
            alternate(runs, a.steps, a.warmup)
            for r in runs.values():
                r.close()
        out["stream"], out["memory"] = runs["stream"].summary(), runs["memory"].summary()
        out["both"] = {"peak_rss_gb": phase_peak(base), "peak_pss_gb": tree.peak_pss / GB, "load_s": load_s,
                       "bytes": field.values.nbytes}
    finally:
        if not a.keep:
            shutil.rmtree(path, ignore_errors=True)
            if a.dir is None:
                shutil.rmtree(root, ignore_errors=True)

    s, m, alone, both = out["stream"], out["memory"], out["alone"], out["both"]
    gb = lambda v: f"{v:.2f} GB" if math.isfinite(v) and v >= 0 else "n/a"  # noqa: E731
    print(f"\nVaMoH {a.config}, batch {a.batch}, {a.threads} torch threads, {a.grid:g}-degree fields "
          f"({stream.grid.num_points:,} points). Store: {size / GB:.2f} GB on disk, {len(stream):,} steps, {a.chunk} "
          f"per chunk, uncompressed. Speed: {a.steps} timed steps of each run after {a.warmup}, one step of each in "
          f"turn. Memory: main process peak RSS; largest worker's peak RSS; peak PSS of main + workers.\n")
    print("| run | fields | steps/s | median step | waiting for data | peak RSS main | peak RSS worker | "
          "peak PSS all |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| streaming alone: LazyERA5Dataset, {a.workers} workers ({a.alone_steps} steps) | {len(stream):,} "
          f"({size / GB:.2f} GB on disk) | {alone['steps_per_s']:.3f} | {alone['median_s']:.3f} s | "
          f"{100 * alone['waiting']:.1f}% | {gb(alone['peak_rss_gb'])} | {gb(alone['worker_rss_gb'])} | "
          f"{gb(alone['peak_pss_gb'])} |")
    print(f"| streaming, in turn with in-memory | {len(stream):,} | {s['steps_per_s']:.3f} | {s['median_s']:.3f} s | "
          f"{100 * s['waiting']:.1f}% | {gb(both['peak_rss_gb'])} (both runs) | - | {gb(both['peak_pss_gb'])} (both) |")
    print(f"| in memory: ERA5Dataset, no workers | {n_mem:,} ({both['bytes'] / GB:.2f} GB in RAM) | "
          f"{m['steps_per_s']:.3f} | {m['median_s']:.3f} s | {100 * m['waiting']:.1f}% | (above) | - | (above) |")
    print(f"\nstreaming / in memory: {s['steps_per_s'] / m['steps_per_s']:.2f}x steps per second "
          f"({m['median_s'] / s['median_s']:.2f}x by median step). Loader alone (no training, {a.workers} workers): "
          f"{alone['read_items_s']:.0f} items/s, training uses {s['steps_per_s'] * a.batch:.1f}. One streaming pass "
          f"(fit_normalizer) over {size / GB:.2f} GB: {out['fit']['seconds']:.0f} s, peak RSS "
          f"{out['fit']['peak_rss_gb']:.2f} GB. Loading the {n_mem:,} in-memory fields: {both['load_s']:.1f} s.")
    out["table"] = {"stream_steps_per_s": s["steps_per_s"], "memory_steps_per_s": m["steps_per_s"],
                    "ratio": s["steps_per_s"] / m["steps_per_s"], "store_gb": size / GB, "steps": len(stream)}
    return out


if __name__ == "__main__":
    main()
