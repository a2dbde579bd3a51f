"""Brute-force references, written in NumPy independently of pcfunc's kernels."""

import math

import numpy as np
import torch

from pcfunc.manifolds import Euclidean, Sphere, Torus


def distance_matrix(manifold, x, y):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if isinstance(manifold, Sphere):
        return np.arccos(np.clip(x @ y.T, -1.0, 1.0))
    if isinstance(manifold, Torus):
        ax = np.arctan2(x[:, 1::2], x[:, 0::2])
        ay = np.arctan2(y[:, 1::2], y[:, 0::2])
        d = np.abs(ax[:, None, :] - ay[None, :, :]) % (2 * math.pi)
        d = np.minimum(d, 2 * math.pi - d)
        return np.sqrt((d ** 2).sum(-1))
    if isinstance(manifold, Euclidean):
        diff = np.abs(x[:, None, :] - y[None, :, :])
        return diff.max(-1) if math.isinf(manifold.p) else (diff ** manifold.p).sum(-1) ** (1 / manifold.p)
    raise TypeError(manifold)


def fps(manifold, pos, num, start=0):
    D = distance_matrix(manifold, pos, pos)
    chosen = [start]
    mind = D[start].copy()
    for _ in range(num - 1):
        mind[chosen] = -1.0
        j = int(np.argmax(mind))
        chosen.append(j)
        mind = np.minimum(mind, D[j])
    return chosen


def knn(manifold, x, y, k):
    D = distance_matrix(manifold, y, x)
    return np.argsort(D, axis=1, kind="stable")[:, :k], np.sort(D, axis=1)[:, :k]


def clouds(manifold, sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    pos = torch.cat([manifold.random(n, generator=g, dtype=torch.float64) for n in sizes])
    batch = torch.arange(len(sizes)).repeat_interleave(torch.tensor(sizes))
    return pos, batch
