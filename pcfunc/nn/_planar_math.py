"""The planar flow's math (Rezende & Mohamed, 2015): functions of ``(z, u, w, b)`` that own no parameters."""

from __future__ import annotations

import math
from typing import Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_positive_int

__all__ = ["ACTIVATIONS", "DEFAULT_MAX_ITER", "planar_flow", "planar_flow_inverse"]

#: Activations :math:`h` of a planar layer.
ACTIVATIONS = ("leaky_relu", "tanh")

#: Newton iterations allowed to the tanh inverse (bisection alone would need about 60 in float64).
DEFAULT_MAX_ITER = 100


# ----------------------------------------------------------------------------------------------------------------------
# The math: functions of (z, u, w, b), no parameters owned.


def planar_flow(
    z: Tensor, u: Tensor, w: Tensor, b: Union[Tensor, float], activation: str = "leaky_relu",
    negative_slope: float = 0.2,
) -> Tuple[Tensor, Tensor]:
    r"""One planar layer :math:`f(z) = z + \hat u\, h(w^\top z + b)` and its log-determinant.

    Rezende & Mohamed, `Variational Inference with Normalizing Flows <https://arxiv.org/abs/1505.05770>`_
    (ICML 2015), Eq. (10)-(12) and App. A. ``u`` is the raw (unconstrained) vector; the layer uses

    .. math::
        \hat u = u + \bigl(m(w^\top u) - w^\top u\bigr) \frac{w}{\lVert w \rVert^2}, \qquad
        m(x) = -1 + \operatorname{softplus}(x),

        \log \lvert \det J_f(z) \rvert = \log\bigl(1 + h'(w^\top z + b)\, w^\top \hat u\bigr),

    so that :math:`w^\top \hat u = m(w^\top u) > -1` for every ``u``. Since :math:`0 < h' \le 1` for
    ``"tanh"`` and for ``"leaky_relu"`` with slope :math:`\alpha \in (0, 1]`, this is the invertibility
    condition :math:`1 + h'(a)\, w^\top \hat u > 0` for all :math:`a`: :math:`f` is a bijection of
    :math:`\mathbb{R}^D` whatever the raw parameters. (If :math:`w = 0` the layer is the translation
    :math:`z + u\, h(b)`.)

    Args:
        z (Tensor): Points, shape :math:`(*, D)`.
        u (Tensor): Raw direction, shape :math:`(D,)`.
        w (Tensor): Normal of the hyperplane, shape :math:`(D,)`.
        b (Tensor or float): Offset, a scalar.
        activation (str): ``"leaky_relu"`` or ``"tanh"`` (default: ``"leaky_relu"``).
        negative_slope (float): Slope :math:`\alpha \in (0, 1]` of the leaky ReLU for negative inputs
            (default: ``0.2``); unused by ``"tanh"``.

    Returns:
        (Tensor, Tensor): ``y = f(z)`` and :math:`\log \lvert \det J_f(z) \rvert`.

    Shapes:
        - **input:** ``z`` :math:`(*, D)`
        - **output:** ``y`` :math:`(*, D)`, log-determinant :math:`(*)`
    """
    dim = _check_parameters(u, w, b, activation, negative_slope)
    _check_input(z, "z", dim, u.dtype)
    u_hat, s = _constrained_u(u, w)
    return _forward(z, u_hat, s, w, torch.as_tensor(b, dtype=u.dtype, device=u.device), activation,
                    float(negative_slope))


def planar_flow_inverse(
    y: Tensor, u: Tensor, w: Tensor, b: Union[Tensor, float], activation: str = "leaky_relu",
    negative_slope: float = 0.2, max_iter: int = DEFAULT_MAX_ITER,
) -> Tuple[Tensor, Tensor]:
    r"""Inverse of :func:`planar_flow` and its log-determinant.

    With :math:`a = w^\top z + b` and :math:`\kappa = w^\top \hat u > -1`, projecting
    :math:`y = z + \hat u\, h(a)` on :math:`w` gives the scalar equation

    .. math::
        a + \kappa\, h(a) = w^\top y + b, \qquad z = y - \hat u\, h(a), \qquad
        \log \lvert \det J_{f^{-1}}(y) \rvert = -\log\bigl(1 + h'(a)\, \kappa\bigr),

    whose left side is strictly increasing in :math:`a`. For ``"leaky_relu"`` it is piecewise linear and
    solved exactly (:math:`a` has the sign of :math:`w^\top y + b`). For ``"tanh"`` it is solved in float64
    by Newton's method safeguarded by bisection on the bracket :math:`[c - |\kappa|, c + |\kappa|]`,
    :math:`c = w^\top y + b`, vectorised over the batch, for at most ``max_iter`` iterations; the root then
    takes one Newton step under autograd, which gives the exact implicit-function gradients with respect to
    ``y`` and the parameters.

    Args:
        y (Tensor): Points, shape :math:`(*, D)`.
        u (Tensor): Raw direction, shape :math:`(D,)`.
        w (Tensor): Normal of the hyperplane, shape :math:`(D,)`.
        b (Tensor or float): Offset, a scalar.
        activation (str): ``"leaky_relu"`` or ``"tanh"`` (default: ``"leaky_relu"``).
        negative_slope (float): Slope :math:`\alpha \in (0, 1]` of the leaky ReLU (default: ``0.2``).
        max_iter (int): Iterations allowed to the ``"tanh"`` solver (default: ``100``).

    Returns:
        (Tensor, Tensor): ``z`` with :math:`f(z) = y`, and :math:`\log \lvert \det J_{f^{-1}}(y) \rvert
        = -\log \lvert \det J_f(z) \rvert`.

    Raises:
        RuntimeError: If the ``"tanh"`` solver does not converge within ``max_iter`` iterations.

    Shapes:
        - **input:** ``y`` :math:`(*, D)`
        - **output:** ``z`` :math:`(*, D)`, log-determinant :math:`(*)`
    """
    dim = _check_parameters(u, w, b, activation, negative_slope)
    max_iter = check_positive_int(max_iter, "max_iter")
    _check_input(y, "y", dim, u.dtype)
    u_hat, s = _constrained_u(u, w)
    return _inverse(y, u_hat, s, w, torch.as_tensor(b, dtype=u.dtype, device=u.device), activation,
                    float(negative_slope), max_iter)


def _constrained_u(u: Tensor, w: Tensor) -> Tuple[Tensor, Tensor]:
    """``û`` and ``s = 1 + wᵀû = softplus(wᵀu) > 0``, the latter without the cancellation of ``1 + (-1 + ...)``."""
    wu = torch.dot(w, u)
    ww = torch.dot(w, w)
    tiny = torch.finfo(u.dtype).tiny
    # w = 0 (or so small that ww underflows): the layer is a translation, wᵀû = 0, i.e. s = 1.
    s = torch.where(ww > 0, F.softplus(wu), torch.ones_like(wu)).clamp_min(tiny)
    u_hat = u + ((s - 1 - wu) / ww.clamp_min(tiny)) * w
    return u_hat, s


def _forward(z: Tensor, u_hat: Tensor, s: Tensor, w: Tensor, b: Tensor, activation: str,
             slope: float) -> Tuple[Tensor, Tensor]:
    a = z @ w + b
    if activation == "tanh":
        h = torch.tanh(a)
        t2 = h * h
        det = t2 + (1 - t2) * s  # = 1 + (1 - tanh²a) wᵀû, positive even when s is tiny
    else:
        h = F.leaky_relu(a, slope)
        det = torch.where(a >= 0, s, (1 - slope) + slope * s)
    det = torch.where(torch.isfinite(a), det, a - a)  # NaN/Inf in, NaN out (a NaN fails a >= 0: it picks a slope)
    return z + h.unsqueeze(-1) * u_hat, torch.log(det)


def _inverse(y: Tensor, u_hat: Tensor, s: Tensor, w: Tensor, b: Tensor, activation: str, slope: float,
             max_iter: int) -> Tuple[Tensor, Tensor]:
    c = y @ w + b
    if activation == "tanh":
        a = _solve_tanh(c, s, max_iter)
        h = torch.tanh(a)
        t2 = h * h
        det = t2 + (1 - t2) * s
    else:
        det = torch.where(c >= 0, s, (1 - slope) + slope * s)  # both slopes of a ↦ a + wᵀû h(a) are positive
        a = c / det
        h = F.leaky_relu(a, slope)
    det = torch.where(torch.isfinite(c), det, c - c)
    return y - h.unsqueeze(-1) * u_hat, -torch.log(det)


def _solve_tanh(c: Tensor, s: Tensor, max_iter: int) -> Tensor:
    """Root ``a`` of ``a + (s - 1) tanh(a) = c`` (``s > 0``), elementwise, differentiable in ``c`` and ``s``."""
    c64, s64 = c.double(), s.double()
    eps = torch.finfo(torch.float64).eps
    with torch.no_grad():
        cd, sd = c64.detach(), s64.detach()
        k = sd - 1
        # |tanh| < 1 brackets the root; g(a) - c is negative below it and positive above.
        lo, hi = cd - k.abs(), cd + k.abs()
        a = torch.minimum(torch.maximum(cd / sd, lo), hi)  # root of the linearisation at 0
        scale = 1 + cd.abs() + k.abs()
        for _ in range(max_iter):
            t = torch.tanh(a)
            r = a - cd + k * t
            lo = torch.where(r < 0, a, lo)
            hi = torch.where(r > 0, a, hi)
            step = r / (t * t + (1 - t * t) * sd)
            new = a - step
            new = torch.where((new >= lo) & (new <= hi), new, 0.5 * (lo + hi))
            # Converged: the step is at rounding level, or the residual is (then a is as good as the data allow).
            done = ((new - a).abs() <= 4 * eps * (1 + a.abs())) | (r.abs() <= 4 * eps * scale)
            a = new
            if bool(done.all()):
                break
        t = torch.tanh(a)
        bad = ((a - cd + k * t).abs() > math.sqrt(eps) * scale) & torch.isfinite(cd)
        if bool(bad.any()):
            raise RuntimeError(
                f"the tanh planar-flow inverse did not converge in max_iter={max_iter} iterations for "
                f"{int(bad.sum())} of {bad.numel()} points; raise max_iter"
            )
    # One Newton step under autograd: zero change in value, implicit-function gradients da/dc and da/ds.
    t = torch.tanh(a)
    a = a - (a - c64 + (s64 - 1) * t) / (t * t + (1 - t * t) * s64)
    return a.to(c.dtype)


def _check_activation(activation: object, negative_slope: object) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if (isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float))
            or not 0 < negative_slope <= 1):
        raise ValueError(f"negative_slope must be a number in (0, 1] (invertibility), got {negative_slope!r}")


def _check_parameters(u: Tensor, w: Tensor, b: Union[Tensor, float], activation: str, negative_slope: float) -> int:
    _check_activation(activation, negative_slope)
    for name, v in (("u", u), ("w", w)):
        if not isinstance(v, Tensor) or not torch.is_floating_point(v):
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got {getattr(v, 'dtype', type(v))}")
        if v.dim() != 1:
            raise ValueError(f"{name} must have shape [D], got {tuple(v.shape)}")
    if w.shape != u.shape or w.dtype != u.dtype:
        raise ValueError(f"w must match u, got {tuple(w.shape)} {w.dtype} and {tuple(u.shape)} {u.dtype}")
    if isinstance(b, Tensor) and b.numel() != 1:
        raise ValueError(f"b must be a scalar, got shape {tuple(b.shape)}")
    return u.numel()


def _check_input(x: object, name: str, dim: int, dtype: torch.dtype) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.size(-1) != dim:
        raise ValueError(f"{name} must have shape [..., {dim}] (last dimension dim={dim}), got {tuple(x.shape)}")
    if x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but the flow's parameters are {dtype}; convert one of them")
