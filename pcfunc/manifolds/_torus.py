"""The flat torus, a product of circles embedded in the plane of each angle."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from .._random import rand
from ._base import _TWO_PI, Manifold, Resolution, _chord_to_angle, _per_axis

__all__ = ["Torus"]


class Torus(Manifold):
    r"""The flat torus :math:`T^n = (S^1)^n`, a product of ``n`` circles of circumference :math:`2\pi`.

    A point with angles :math:`\theta \in [0, 2\pi)^n` is stored in the
    ambient embedding :math:`(\cos\theta_1, \sin\theta_1, \dots, \cos\theta_n,
    \sin\theta_n) \in \mathbb{R}^{2n}`, which makes every coordinate periodic
    by construction. The distance is the geodesic distance of the flat torus,

    .. math::
        d(x, y) = \Big(\sum_{i=1}^n \delta_i^2\Big)^{1/2}, \qquad
        \delta_i = \min(|\theta_i - \theta'_i|,\ 2\pi - |\theta_i - \theta'_i|),

    with each :math:`\delta_i` computed from the chord of circle :math:`i`.
    This is *not* a monotone function of the ambient Euclidean distance, so
    neighbour search uses pcfunc's reference kernels. Chart coordinates
    (:meth:`embed`/:meth:`unembed`) are the angles in radians.

    Args:
        n (int, optional): Number of circles. (default: ``2``)
    """

    name = "torus"

    def __init__(self, n: int = 2) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer (number of circles), got {n!r}")
        self.n = n
        self.ambient_dim = 2 * n

    @property
    def intrinsic_dim(self) -> int:
        return int(self.n)

    def _circles(self, x: Tensor) -> Tensor:
        return x.reshape(*x.shape[:-1], self.n, 2)

    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        total = None
        for i in range(self.n):  # a loop over circles (n is tiny), not over points
            sl = slice(2 * i, 2 * i + 2)
            delta = _chord_to_angle(torch.cdist(x[..., sl], y[..., sl], compute_mode="donot_use_mm_for_euclid_dist"))
            total = delta.square() if total is None else total + delta.square()
        assert total is not None
        return total.sqrt()

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        a, b = self._circles(x), self._circles(y)
        cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
        delta = torch.atan2(cross, (a * b).sum(-1)).abs()
        return torch.linalg.vector_norm(delta, dim=-1)

    def embed(self, u: Tensor) -> Tensor:
        """Angles in radians, shape :math:`(*, n)`, to :math:`(*, 2n)`."""
        if u.size(-1) != self.n:
            raise ValueError(f"u must have shape [..., {self.n}] (angles), got {tuple(u.shape)}")
        return torch.stack((torch.cos(u), torch.sin(u)), dim=-1).reshape(*u.shape[:-1], self.ambient_dim)

    def unembed(self, x: Tensor) -> Tensor:
        """Ambient points :math:`(*, 2n)` to angles in :math:`[0, 2\\pi)`, shape :math:`(*, n)`."""
        c = self._circles(x)
        return torch.remainder(torch.atan2(c[..., 1], c[..., 0]), _TWO_PI)

    def projx(self, x: Tensor) -> Tensor:
        c = self._circles(x)
        c = c / torch.linalg.vector_norm(c, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
        return c.reshape(x.shape)

    def random(
        self,
        n: int,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> Tensor:
        """Uniform points (uniform angles), shape :math:`(n, 2 n_\\text{circles})`."""
        u = rand((n, self.n), generator, device=device, dtype=dtype) * _TWO_PI
        return self.embed(u)

    def grid(self, resolution: Resolution) -> Tensor:
        """``resolution[i]`` equally spaced angles :math:`2\\pi k / r_i` on circle ``i``; first circle slowest."""
        res = _per_axis(resolution, self.n)
        axes = [torch.arange(r, dtype=torch.float64) * (_TWO_PI / r) for r in res]
        u = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, self.n)
        return self.embed(u).to(torch.get_default_dtype())

    def check_point(self, x: Tensor, atol: Optional[float] = None) -> Tuple[bool, Optional[str]]:
        ok, reason = super().check_point(x, atol)
        if not ok:
            return ok, reason
        atol = self.tolerance(x.dtype) if atol is None else atol
        err = (torch.linalg.vector_norm(self._circles(x), dim=-1) - 1.0).abs()
        if x.numel() and bool((err > atol).any()):
            return False, f"each (cos, sin) pair must have unit norm; max error {float(err.max()):.3g} > atol={atol:g}"
        return True, None

    def extra_repr(self) -> str:
        return f"n={self.n}"


