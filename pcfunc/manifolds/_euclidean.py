"""Euclidean space (images, voxels): coordinates are the points themselves."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from .._random import rand
from ._base import Manifold, Resolution, _per_axis

__all__ = ["Euclidean"]


class Euclidean(Manifold):
    r"""The space :math:`\mathbb{R}^d` with the :math:`\ell_p` metric.

    .. math::
        d_p(x, y) = \Big(\sum_{i=1}^d |x_i - y_i|^p\Big)^{1/p}, \qquad
        d_\infty(x, y) = \max_i |x_i - y_i|.

    Images, voxel grids and other flat domains use this manifold; GASP and
    VaMoH scale their coordinates to :math:`[-1, 1]^d`, which is what
    :meth:`grid` and :meth:`random` produce.

    Args:
        dim (int): Dimension :math:`d`.
        p (float, optional): Order of the norm, :math:`1 \le p \le \infty`
            (``float("inf")`` or ``"inf"``). (default: ``2``)
    """

    name = "euclidean"

    def __init__(self, dim: int, p: Union[float, str] = 2.0) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if isinstance(p, str):
            if p.lower() not in ("inf", "infinity"):
                raise ValueError(f"p must be a number >= 1 or 'inf', got {p!r}")
            p = math.inf
        p = float(p)
        if math.isnan(p) or p < 1:
            raise ValueError(f"p must satisfy 1 <= p <= inf (an lp metric), got {p!r}")
        self.ambient_dim = dim
        self.p = p
        self.ambient_euclidean_order = p == 2.0

    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        # The matrix-product shortcut of torch.cdist loses precision for close points; neighbour
        # ranking needs the exact differences.
        return torch.cdist(x, y, p=self.p, compute_mode="donot_use_mm_for_euclid_dist")

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return torch.linalg.vector_norm(x - y, ord=self.p, dim=-1)

    def random(
        self,
        n: int,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> Tensor:
        """Uniform points in :math:`[-1, 1]^d`, shape :math:`(n, d)`."""
        return 2.0 * rand((n, self.ambient_dim), generator, device=device, dtype=dtype) - 1.0

    def grid(self, resolution: Resolution) -> Tensor:
        r"""The regular grid on :math:`[-1, 1]^d` with ``resolution[i]`` points along axis ``i``.

        Endpoints included (``torch.linspace(-1, 1, n)``, one point at 0 when
        ``n == 1``), axis 0 varying slowest, so a grid of :math:`(2n - 1)` points
        per axis contains the grid of :math:`n`. Shape :math:`(\prod_i n_i, d)`.
        """
        res = _per_axis(resolution, self.ambient_dim)
        axes = [torch.linspace(-1.0, 1.0, r) if r > 1 else torch.zeros(1) for r in res]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, self.ambient_dim)

    def extra_repr(self) -> str:
        p = "inf" if math.isinf(self.p) else f"{self.p:g}"
        return f"dim={self.ambient_dim}, p={p}"
