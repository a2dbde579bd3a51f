"""L-BFGS over a batch of independent problems (the refinement of each field's latent at inference)."""

from __future__ import annotations

from typing import Callable, Tuple

import torch
from torch import Tensor

__all__ = ["batched_lbfgs"]


def batched_lbfgs(objective: Callable[[Tensor], Tensor], x: Tensor, steps: int, history: int = 10,
                  max_halvings: int = 10) -> Tensor:
    r"""Minimise :math:`B` independent objectives at once: L-BFGS with a backtracking (Armijo) line search, each
    row of ``x`` with its own curvature pairs and its own step length.

    ``objective`` maps :math:`(B, Z)` to the :math:`B` values, row :math:`b` depending on row :math:`b` only
    (e.g. the negative log posterior of each field's latent). One evaluation of it (and of its gradient) serves
    every row, so a batch of fields costs what one does; unlike :class:`torch.optim.LBFGS` on the sum, a row
    whose curvature or scale differs from the others' is not held back by them. A row's step is accepted when
    :math:`f(\mathbf x + t\mathbf d) \le f(\mathbf x) + 10^{-4}\, t\, \nabla f^\top \mathbf d`, its length
    halved otherwise (up to ``max_halvings`` times, then the next iteration goes on from there); a row whose
    step has shrunk to round-off, or whose value falls by less than ten machine epsilons of it, has converged and
    stays where it is (the iterations end when every row has); curvature pairs with
    :math:`\mathbf s^\top \mathbf y \le 0` are skipped, so the direction is always one of descent.

    Args:
        objective (callable): :math:`(B, Z) \to (B,)`, differentiable.
        x (Tensor): The start :math:`(B, Z)`.
        steps (int): Most iterations (each at least one evaluation of the objective and its gradient: one where
            the full quasi-Newton step is accepted, as it mostly is).
        history (int): Curvature pairs kept per row. (default: ``10``)
        max_halvings (int): Line-search halvings per iteration. (default: ``10``)

    Returns:
        Tensor: The rows after ``steps`` iterations, :math:`(B, Z)`, detached.
    """
    def value_and_grad(z: Tensor) -> Tuple[Tensor, Tensor]:
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            f = objective(z)
            g, = torch.autograd.grad(f.sum(), [z])  # the parameters of the objective get no gradient
        return f.detach(), g

    x = x.detach().clone()
    B, Z = x.shape
    f, g = value_and_grad(x)
    S, Y = x.new_zeros(B, history, Z), x.new_zeros(B, history, Z)
    rho = x.new_zeros(B, history)  # 0 marks an empty (or skipped) slot
    done = ~torch.isfinite(f)
    tol = 10 * torch.finfo(f.dtype).eps
    t0 = torch.ones_like(f)  # each row's first trial step length
    for it in range(steps):
        if bool(done.all()):
            break
        # Two-loop recursion, newest pair first, every row at once.
        q, alpha = g.clone(), x.new_zeros(B, history)
        order = [(it - 1 - i) % history for i in range(history)]
        for j in order:
            alpha[:, j] = rho[:, j] * (S[:, j] * q).sum(-1)
            q = q - alpha[:, j, None] * Y[:, j]
        newest = order[0]
        yy = (Y[:, newest] ** 2).sum(-1)
        gamma = torch.where((rho[:, newest] > 0) & (yy > 0), 1 / (rho[:, newest] * yy).clamp_min(1e-300),
                            1 / g.abs().sum(-1).clamp_min(1.0))  # the first step: at most a unit step in l1
        r = gamma[:, None] * q
        for j in reversed(order):
            beta = rho[:, j] * (Y[:, j] * r).sum(-1)
            r = r + S[:, j] * (alpha[:, j] - beta)[:, None]
        d = -r
        slope = (g * d).sum(-1)
        bad = ~(slope < 0)  # not a descent direction (round-off): steepest descent for that row
        d = torch.where(bad[:, None], -g * gamma[:, None], d)
        slope = torch.where(bad, -(g * g).sum(-1) * gamma, slope)
        t = t0.clone()
        todo = (slope < 0) & ~done
        x_new, f_next, g_next = x.clone(), f.clone(), g.clone()
        for _ in range(max_halvings):
            if not bool(todo.any()):
                break
            trial = x + t[:, None] * d
            f_trial, g_trial = value_and_grad(trial)
            ok = todo & torch.isfinite(f_trial) & (f_trial <= f + 1e-4 * t * slope)
            x_new = torch.where(ok[:, None], trial, x_new)
            f_next = torch.where(ok, f_trial, f_next)
            g_next = torch.where(ok[:, None], g_trial, g_next)
            todo = todo & ~ok
            t = torch.where(todo, t / 2, t)
        # A row whose line search failed goes on from its last step length next time, unless that step is at
        # round-off level; a row that has stopped decreasing has converged.
        tiny = (t[:, None] * d).abs().amax(-1) <= 100 * tol * (1 + x.abs().amax(-1))
        moved = (slope < 0) & ~done & ~todo
        done = done | (todo & tiny) | (moved & ((f - f_next) <= tol * (1 + f.abs())))
        t0 = torch.where(todo, t, torch.ones_like(t))
        s, y = x_new - x, g_next - g
        sy = (s * y).sum(-1)
        keep = sy > 1e-10 * (s.norm(dim=-1) * y.norm(dim=-1)).clamp_min(1e-300)
        slot = it % history
        S[:, slot] = torch.where(keep[:, None], s, S[:, slot])
        Y[:, slot] = torch.where(keep[:, None], y, Y[:, slot])
        rho[:, slot] = torch.where(keep, 1 / torch.where(keep, sy, torch.ones_like(sy)), rho[:, slot])
        x, f, g = x_new, f_next, g_next
    return x
