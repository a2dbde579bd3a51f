"""check_manifold: the properties every Manifold must have, for tests of a user's own manifold."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..manifolds import Manifold
from ..manifolds._base import Resolution

__all__ = ["check_manifold"]


def _fail(manifold: Manifold, what: str) -> AssertionError:
    return AssertionError(f"{manifold!r}: {what}")


def _check_on(manifold: Manifold, x: Tensor, what: str, atol: float) -> None:
    ok, reason = manifold.check_point(x, atol=atol)
    if not ok:
        raise _fail(manifold, f"{what} fail check_point: {reason}")


def check_manifold(
    manifold: Manifold,
    n: int = 64,
    seed: int = 0,
    grid_resolution: Optional[Resolution] = None,
    atol: Optional[float] = None,
) -> None:
    r"""Check that a :class:`~pcfunc.manifolds.Manifold` behaves like a metric space pcfunc can use.

    Runs in float64 on ``n`` random points and on a grid, and checks:

    * :meth:`~pcfunc.manifolds.Manifold.random` and
      :meth:`~pcfunc.manifolds.Manifold.grid` return ``[*, ambient_dim]``
      points that pass :meth:`~pcfunc.manifolds.Manifold.check_point`, and
      ``random`` is reproducible from a seeded generator;
    * :meth:`~pcfunc.manifolds.Manifold.cdist` is finite, non-negative,
      symmetric, zero on the diagonal, satisfies the triangle inequality
      :math:`d(a, c) \le d(a, b) + d(b, c)` on all triples, broadcasts over a
      leading batch dimension, and agrees with
      :meth:`~pcfunc.manifolds.Manifold.dist`;
    * :meth:`~pcfunc.manifolds.Manifold.embed` undoes
      :meth:`~pcfunc.manifolds.Manifold.unembed`, and
      :meth:`~pcfunc.manifolds.Manifold.projx` keeps points in place;
    * :meth:`~pcfunc.manifolds.Manifold.relative` has
      :attr:`~pcfunc.manifolds.Manifold.relative_dim` features;
    * if :attr:`~pcfunc.manifolds.Manifold.ambient_euclidean_order` is set,
      ``cdist`` orders every pair of distances like the ambient Euclidean distance.

    Args:
        manifold (Manifold): The manifold under test.
        n (int): Number of random points. (default: ``64``)
        seed (int): Seed of the random points. (default: ``0``)
        grid_resolution (int or sequence of int, optional): Passed to ``grid``. (default: ``4``)
        atol (float, optional): Absolute tolerance. (default: ``1e-8``)

    Raises:
        AssertionError: Naming the manifold and the property that fails.
    """
    if not isinstance(manifold, Manifold):
        raise TypeError(f"manifold must be a pcfunc.manifolds.Manifold, got {type(manifold).__name__}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 3:
        raise ValueError(f"n must be an integer >= 3, got {n!r}")
    atol = 1e-8 if atol is None else float(atol)
    d = getattr(manifold, "ambient_dim", None)
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise _fail(manifold, f"ambient_dim must be a positive int, got {d!r}")

    x = manifold.random(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if not isinstance(x, Tensor) or tuple(x.shape) != (n, d):
        raise _fail(manifold, f"random({n}) must return shape ({n}, {d}), got {tuple(getattr(x, 'shape', ()))}")
    if x.dtype != torch.float64:
        raise _fail(manifold, f"random(..., dtype=torch.float64) returned {x.dtype}")
    x2 = manifold.random(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    if not torch.equal(x, x2):
        raise _fail(manifold, "random() is not reproducible from a seeded generator")
    _check_on(manifold, x, "random points", max(atol, 1e-9))

    g = manifold.grid(4 if grid_resolution is None else grid_resolution)
    if not isinstance(g, Tensor) or g.dim() != 2 or g.size(1) != d or g.size(0) < 1:
        raise _fail(manifold, f"grid() must return shape (N, {d}), got {tuple(getattr(g, 'shape', ()))}")
    _check_on(manifold, g.double(), "grid points", 1e-5)

    D = manifold.cdist(x, x)
    if tuple(D.shape) != (n, n):
        raise _fail(manifold, f"cdist(x, x) must have shape ({n}, {n}), got {tuple(D.shape)}")
    if not bool(torch.isfinite(D).all()):
        raise _fail(manifold, "cdist returned NaN or Inf")
    if bool((D < -atol).any()):
        raise _fail(manifold, f"cdist is negative (min {float(D.min()):.3g})")
    asym = float((D - D.T).abs().max())
    if asym > atol:
        raise _fail(manifold, f"cdist is not symmetric (max |D - D^T| = {asym:.3g})")
    diag = float(D.diagonal().abs().max())
    if diag > max(atol, 1e-6):
        raise _fail(manifold, f"cdist(x, x) has a non-zero diagonal (max {diag:.3g})")
    viol = D[:, None, :] - (D[:, :, None] + D[None, :, :])  # d(a,c) - d(a,b) - d(b,c), indexed [a, b, c]
    worst = float(viol.max())
    if worst > atol:
        a, b, c = torch.unravel_index(viol.argmax(), viol.shape)
        raise _fail(manifold, f"triangle inequality fails for points {int(a)}, {int(b)}, {int(c)} by {worst:.3g}")
    y = manifold.random(n, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    Dxy = manifold.cdist(x, y)
    pair = manifold.dist(x, y)
    if tuple(pair.shape) != (n,):
        raise _fail(manifold, f"dist(x, y) must have shape ({n},), got {tuple(pair.shape)}")
    err = float((pair - Dxy.diagonal()).abs().max())
    if err > 1e-6:
        raise _fail(manifold, f"dist(x, y) disagrees with the diagonal of cdist(x, y) by {err:.3g}")
    Db = manifold.cdist(torch.stack((x, y)), torch.stack((y, x)))
    if tuple(Db.shape) != (2, n, n) or float((Db[0] - Dxy).abs().max()) > atol or float((Db[1] - Dxy.T).abs().max()) > atol:
        raise _fail(manifold, "cdist does not broadcast over a leading batch dimension like torch.cdist")

    u = manifold.unembed(x)
    back = manifold.embed(u)
    if tuple(back.shape) != tuple(x.shape):
        raise _fail(manifold, f"embed(unembed(x)) has shape {tuple(back.shape)}, expected {tuple(x.shape)}")
    rt = float(manifold.dist(back, x).max())
    if rt > 1e-6:
        raise _fail(manifold, f"embed(unembed(x)) moves points by up to {rt:.3g}")
    moved = float(manifold.dist(manifold.projx(x), x).max())
    if moved > 1e-6:
        raise _fail(manifold, f"projx moves points already on the manifold by up to {moved:.3g}")
    rel = manifold.relative(x[:1].expand(n, d), x)
    if tuple(rel.shape) != (n, manifold.relative_dim):
        raise _fail(manifold, f"relative() must have shape ({n}, {manifold.relative_dim}), got {tuple(rel.shape)}")

    if manifold.ambient_euclidean_order:
        E = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").reshape(-1)
        M = Dxy.reshape(-1)
        oe, om = E.argsort(), M.argsort()
        gaps = E[oe].diff() > 1e-9  # ignore exact ties of the ambient distance
        if not bool((M[oe].diff()[gaps] > -atol).all()) or not bool((E[om].diff() > -1e-9).all()):
            raise _fail(manifold, "ambient_euclidean_order is True but cdist orders pairs differently from ambient l2")
