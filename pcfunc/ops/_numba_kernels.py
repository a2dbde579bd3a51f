"""Exact farthest point sampling and kNN on the CPU, compiled with Numba, over spatial buckets.

FPS: bucketed updates with a bounding-box bound.

Points are sorted into spatial buckets (cells of a regular grid over the cloud's bounding box, about
:data:`POINTS_PER_BUCKET` points each). When a centroid ``c`` is added, a bucket whose bounding box
is at least as far from ``c`` as the bucket's largest current distance cannot change, and is skipped.
After the first few steps only the buckets around ``c`` are touched, so the cost per step falls from
:math:`O(N)` to roughly :math:`O(N / \\text{step} + \\text{buckets})`. The result is the exact FPS
sequence, with the same tie rule as the reference (lowest index among equal distances).

kNN: each query scans its nearest bucket first, then every bucket whose bounding box is closer than
its current k-th distance, keeping a sorted top-k (ties by index).

Distances are compared in a monotone form of the metric: :math:`\\sum_i |\\Delta_i|^p` for finite
``p`` (the square for ``p = 2``) and :math:`\\max_i |\\Delta_i|` for ``p = inf``, in float64.

Threads: the parallel kernels (one cloud per thread) run on Numba's ``workqueue`` threading layer, whose idle
threads sleep, with as many threads as torch uses (:func:`torch.get_num_threads`). Numba's default layer on
Linux, ``omp``, starts a second OpenMP runtime (the system's ``libgomp``, beside the one bundled with torch) whose
threads busy-wait after every parallel loop: beside another busy process, or with torch at one thread, the two
pools then spin against each other (``benchmarks/contention.py``: a 1-thread training step beside a busy process
took 2.5 times its idle time on a 2-core AMD EPYC, 22 times on a 2-core Intel Xeon; on ``workqueue``, 1.1 times).
A threading layer chosen by the user (``NUMBA_THREADING_LAYER`` or ``numba.config.THREADING_LAYER``) is kept.
"""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import torch

from .. import _compat

__all__ = ["fps_buckets", "knn_buckets", "POINTS_PER_BUCKET"]

#: Target bucket size of the spatial partition for FPS.
POINTS_PER_BUCKET = 48
#: Target bucket size for kNN (smaller: a query touches few points beyond its k nearest).
KNN_POINTS_PER_BUCKET = 24

#: One parallel kernel at a time: the workqueue layer is not re-entrant from several Python threads.
_PARALLEL_LOCK = threading.Lock()

if _compat.WITH_NUMBA:
    import numba

    # Before the first parallel kernel launches a layer (a layer already running in this process stays).
    if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"

    @numba.njit(cache=True, nogil=True, inline="always")
    def _acc(s: float, g: float, mode: int, p: float) -> float:  # pragma: no cover - compiled
        # Accumulate one coordinate gap into the monotone form of the lp distance.
        if mode == 0:
            return s + g * g
        if mode == 1:
            return s + g
        if mode == 2:
            return g if g > s else s
        return s + g ** p

    @numba.njit(cache=True, nogil=True)
    def _bucket_boxes(pts, bs):  # pragma: no cover - compiled
        # Axis-aligned bounding box [lo, hi] of every bucket's points.
        nb, d = bs.shape[0] - 1, pts.shape[1]
        lo = np.full((nb, d), np.inf)
        hi = np.full((nb, d), -np.inf)
        for b in range(nb):
            for j in range(bs[b], bs[b + 1]):
                for k in range(d):
                    v = pts[j, k]
                    if v < lo[b, k]:
                        lo[b, k] = v
                    if v > hi[b, k]:
                        hi[b, k] = v
        return lo, hi

    @numba.njit(cache=True, nogil=True)
    def _fps_one(pts, order, bstart, start, num, mode, p, out):  # pragma: no cover - compiled
        # pts: [n, d] in bucket order; order[j] = original index of pts[j]; bucket b = rows bstart[b]:bstart[b+1].
        n, d = pts.shape
        nb = bstart.shape[0] - 1
        mind = np.full(n, np.inf)
        lo, hi = _bucket_boxes(pts, bstart)
        bmax = np.full(nb, np.inf)
        barg = np.empty(nb, np.int64)  # original index of the bucket's farthest point (lowest on ties)
        for b in range(nb):
            barg[b] = order[bstart[b]]
            for j in range(bstart[b], bstart[b + 1]):
                if order[j] < barg[b]:
                    barg[b] = order[j]
        pos_of = np.empty(n, np.int64)  # original index -> row in pts
        for j in range(n):
            pos_of[order[j]] = j
        c = np.empty(d)
        cur = start
        for t in range(num):
            out[t] = cur
            jc = pos_of[cur]
            for k in range(d):
                c[k] = pts[jc, k]
            mind[jc] = -1.0
            for b in range(nb):
                if bmax[b] < 0.0:
                    continue  # every point of the bucket is already chosen
                if not (bstart[b] <= jc < bstart[b + 1]):
                    bound = 0.0
                    for k in range(d):
                        g = 0.0
                        if c[k] < lo[b, k]:
                            g = lo[b, k] - c[k]
                        elif c[k] > hi[b, k]:
                            g = c[k] - hi[b, k]
                        bound = _acc(bound, g, mode, p)
                    if bound >= bmax[b]:
                        continue  # no distance in this bucket can shrink
                best = -1.0
                arg = -1
                for j in range(bstart[b], bstart[b + 1]):
                    m = mind[j]
                    if m >= 0.0:
                        dist = 0.0
                        for k in range(d):
                            dist = _acc(dist, abs(pts[j, k] - c[k]), mode, p)
                        if dist < m:
                            m = dist
                            mind[j] = dist
                    if m > best or (m == best and order[j] < arg):
                        best = m
                        arg = order[j]
                bmax[b] = best
                barg[b] = arg
            best = -2.0
            arg = -1
            for b in range(nb):
                if bmax[b] > best or (bmax[b] == best and barg[b] < arg):
                    best = bmax[b]
                    arg = barg[b]
            cur = arg

    @numba.njit(cache=True, nogil=True)
    def _bucketize(pts, target):  # pragma: no cover - compiled
        # Stable counting sort of the points by grid cell; returns (row order, bucket starts + [n]).
        n, d = pts.shape
        cells = 1
        if d <= 6 and n > 4 * target:
            cells = max(1, int(math.ceil((n / target) ** (1.0 / d))))
        if cells == 1:
            bs = np.empty(2, np.int64)
            bs[0] = 0
            bs[1] = n
            return np.arange(n), bs
        lo = pts[0].copy()
        hi = pts[0].copy()
        for i in range(n):
            for k in range(d):
                v = pts[i, k]
                if v < lo[k]:
                    lo[k] = v
                if v > hi[k]:
                    hi[k] = v
        key = np.zeros(n, np.int64)
        for i in range(n):
            kk = 0
            for k in range(d):
                span = hi[k] - lo[k]
                c = int((pts[i, k] - lo[k]) / span * cells) if span > 0 else 0
                kk = kk * cells + min(c, cells - 1)
            key[i] = kk
        ncell = cells ** d
        start = np.zeros(ncell + 1, np.int64)
        for i in range(n):
            start[key[i] + 1] += 1
        nb = 0
        for c in range(ncell):
            if start[c + 1] > 0:
                nb += 1
            start[c + 1] += start[c]
        bs = np.empty(nb + 1, np.int64)
        j = 0
        for c in range(ncell):
            if start[c + 1] > start[c]:
                bs[j] = start[c]
                j += 1
        bs[nb] = n
        order = np.empty(n, np.int64)
        fill = start[:-1].copy()
        for i in range(n):
            order[fill[key[i]]] = i
            fill[key[i]] += 1
        return order, bs

    # Clouds are independent and write disjoint slices of ``out``: they run in parallel threads.
    @numba.njit(cache=True, nogil=True, parallel=True)
    def _fps_batch(pos, ptr, starts, nums, optr, mode, p, target, out):  # pragma: no cover - compiled
        for c in numba.prange(nums.shape[0]):
            cloud = pos[ptr[c]:ptr[c + 1]]
            order, bs = _bucketize(cloud, target)
            pts = np.empty_like(cloud)
            for j in range(order.shape[0]):
                pts[j] = cloud[order[j]]
            _fps_one(pts, order, bs, starts[c], nums[c], mode, p, out[optr[c]:optr[c + 1]])


    @numba.njit(cache=True, nogil=True)
    def _knn_one(pts, order, bs, queries, k, mode, p, out_i):  # pragma: no cover - compiled
        # Exact kNN of each query among pts (bucket order), visiting only buckets that can still contribute.
        n, d = pts.shape
        nb = bs.shape[0] - 1
        lo, hi = _bucket_boxes(pts, bs)
        bound = np.empty(nb)
        bd = np.empty(k)
        bi = np.empty(k, np.int64)
        for q in range(queries.shape[0]):
            for b in range(nb):
                s = 0.0
                for kk in range(d):
                    g = 0.0
                    if queries[q, kk] < lo[b, kk]:
                        g = lo[b, kk] - queries[q, kk]
                    elif queries[q, kk] > hi[b, kk]:
                        g = queries[q, kk] - hi[b, kk]
                    s = _acc(s, g, mode, p)
                bound[b] = s
            # The nearest bucket first, so the k-th distance is small before the scan skips the rest.
            first = 0
            for b in range(nb):
                if bound[b] < bound[first]:
                    first = b
            for t in range(k):
                bd[t] = np.inf
                bi[t] = -1
            for t in range(-1, nb):
                b = first if t < 0 else t
                if (t >= 0 and b == first) or bound[b] > bd[k - 1]:
                    continue
                for j in range(bs[b], bs[b + 1]):
                    dist = 0.0
                    for kk in range(d):
                        dist = _acc(dist, abs(pts[j, kk] - queries[q, kk]), mode, p)
                    idx = order[j]
                    if dist < bd[k - 1] or (dist == bd[k - 1] and idx < bi[k - 1]):
                        u = k - 1
                        while u > 0 and (bd[u - 1] > dist or (bd[u - 1] == dist and bi[u - 1] > idx)):
                            bd[u] = bd[u - 1]
                            bi[u] = bi[u - 1]
                            u -= 1
                        bd[u] = dist
                        bi[u] = idx
            for t in range(k):
                out_i[q, t] = bi[t]

    @numba.njit(cache=True, nogil=True, parallel=True)
    def _knn_batch(x, xptr, y, yptr, k, mode, p, target, out):  # pragma: no cover - compiled
        for c in numba.prange(xptr.shape[0] - 1):
            if yptr[c + 1] > yptr[c]:
                cloud = x[xptr[c]:xptr[c + 1]]
                order, bs = _bucketize(cloud, target)
                pts = np.empty_like(cloud)
                for j in range(order.shape[0]):
                    pts[j] = cloud[order[j]]
                _knn_one(pts, order, bs, y[yptr[c]:yptr[c + 1]], k, mode, p, out[yptr[c]:yptr[c + 1]])


def _set_threads() -> None:
    """Numba's parallel loops use as many threads as torch (at most Numba's pool size)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _mode(p: float) -> tuple[int, float]:
    if p == 2.0:
        return 0, 2.0
    if p == 1.0:
        return 1, 1.0
    if math.isinf(p):
        return 2, math.inf
    return 3, float(p)


def fps_buckets(pos: np.ndarray, counts: np.ndarray, nums: np.ndarray, starts: np.ndarray, p: float) -> np.ndarray:
    """FPS of every cloud of a packed float array; returns packed original indices (cloud by cloud)."""
    _compat.require("numba", "fps(backend='numba')")
    pos = np.ascontiguousarray(pos, dtype=np.float64)
    ptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    optr = np.zeros(len(nums) + 1, np.int64)
    np.cumsum(nums, out=optr[1:])
    out = np.empty(int(optr[-1]), np.int64)
    mode, pp = _mode(p)
    with _PARALLEL_LOCK:
        _set_threads()
        _fps_batch(pos, ptr, starts.astype(np.int64), nums.astype(np.int64), optr, mode, pp, POINTS_PER_BUCKET,
                   out)
    return out + np.repeat(ptr[:-1], nums)


def knn_buckets(x: np.ndarray, cx: np.ndarray, y: np.ndarray, cy: np.ndarray, k: int, p: float) -> np.ndarray:
    """kNN within clouds (packed, counts ``cx``/``cy`` per cloud); returns ``[M, k]`` packed indices into ``x``,
    each row by increasing distance, ties by index."""
    _compat.require("numba", "knn(backend='numba')")
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    xptr = np.zeros(len(cx) + 1, np.int64)
    np.cumsum(cx, out=xptr[1:])
    yptr = np.zeros(len(cy) + 1, np.int64)
    np.cumsum(cy, out=yptr[1:])
    out = np.empty((y.shape[0], k), np.int64)
    mode, pp = _mode(p)
    with _PARALLEL_LOCK:
        _set_threads()
        _knn_batch(x, xptr, y, yptr, k, mode, pp, KNN_POINTS_PER_BUCKET, out)
    return out + np.repeat(xptr[:-1], cy)[:, None]
