"""The Manifold interface: embedding, distances, coordinates and validity checks of points."""

from __future__ import annotations

import abc
import math
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = ["Manifold", "Resolution"]

Resolution = Union[int, Sequence[int]]


class Manifold(torch.nn.Module, metaclass=abc.ABCMeta):
    r"""Base class of the spaces on which pcfunc's functions live.

    A function sample is a point cloud whose coordinates ``pos: [N, ambient_dim]``
    are stored in the manifold's *ambient* embedding (unit vectors in
    :math:`\mathbb{R}^3` for the sphere). Neighbour search (:mod:`pcfunc.ops`),
    PointConv and the coordinate encodings only talk to this interface.

    To add a manifold, subclass and implement the four required members (the three methods are abstract: a
    subclass without them cannot be instantiated):

    * :attr:`ambient_dim` (class or instance attribute): size of the embedding;
    * :meth:`cdist`: pairwise distances used by farthest point sampling and kNN;
    * :meth:`random`: points drawn uniformly (or from any full-support density);
    * :meth:`grid`: a regular set of points at a given resolution.

    Set :attr:`intrinsic_dim` too when the manifold is embedded in more dimensions than it has (2 for a surface
    in :math:`\mathbb R^3`): GASP sizes its discriminator's neighbourhoods by it (:math:`3^d` neighbours).

    Everything else has a default that you may override: :meth:`dist`,
    :meth:`embed`/:meth:`unembed` (chart :math:`\leftrightarrow` ambient),
    :meth:`relative` (offset fed to PointConv's weight network), :meth:`encode`,
    :meth:`projx` and :meth:`check_point`. Set :attr:`ambient_euclidean_order`
    to ``True`` only if :meth:`cdist` is a strictly increasing function of the
    ambient Euclidean distance: then nearest neighbours and farthest points
    are the same under both, and :mod:`pcfunc.ops` may use the compiled
    :math:`\ell_2` kernels of ``torch_cluster``.

    :func:`pcfunc.testing.check_manifold` runs the property checks (symmetry,
    triangle inequality, round trips, ...) on any subclass.
    """

    #: Size of the ambient embedding, i.e. ``pos.size(-1)``.
    ambient_dim: int
    #: Whether :meth:`cdist` orders neighbours like the ambient Euclidean distance.
    ambient_euclidean_order: bool = False
    #: Name used by :func:`pcfunc.manifolds.resolve_manifold` and in ``repr``.
    name: str = "manifold"

    @property
    def intrinsic_dim(self) -> int:
        """Dimension of the manifold itself (2 for the sphere, ``n`` for the torus); by default
        :attr:`ambient_dim`. Override it (a class attribute or a property) for an embedded manifold."""
        return int(self.ambient_dim)

    # ------------------------------------------------------------------ required
    @abc.abstractmethod
    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        r"""Pairwise distances :math:`D_{ij} = d(x_i, y_j)`.

        Must broadcast over leading batch dimensions like :func:`torch.cdist`.

        Args:
            x (Tensor): Points, shape :math:`(*, N, \text{ambient\_dim})`.
            y (Tensor): Points, shape :math:`(*, M, \text{ambient\_dim})`.

        Returns:
            Tensor: Distances, shape :math:`(*, N, M)`.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement cdist(x, y)")

    @abc.abstractmethod
    def random(
        self,
        n: int,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> Tensor:
        r"""Draw ``n`` random points, shape :math:`(n, \text{ambient\_dim})`."""
        raise NotImplementedError(f"{type(self).__name__} must implement random(n, generator=None)")

    @abc.abstractmethod
    def grid(self, resolution: Resolution) -> Tensor:
        r"""A regular grid of points, shape :math:`(N, \text{ambient\_dim})`."""
        raise NotImplementedError(f"{type(self).__name__} must implement grid(resolution)")

    # ------------------------------------------------------------------ defaults
    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        r"""Distances between paired points, :math:`d(x_i, y_i)`.

        The default evaluates :meth:`cdist` on one-point sets.

        Args:
            x (Tensor): Shape :math:`(*, \text{ambient\_dim})`.
            y (Tensor): Shape :math:`(*, \text{ambient\_dim})`, broadcastable with ``x``.

        Returns:
            Tensor: Shape :math:`(*)`.
        """
        x, y = torch.broadcast_tensors(x, y)
        return self.cdist(x.unsqueeze(-2), y.unsqueeze(-2))[..., 0, 0]

    def embed(self, u: Tensor) -> Tensor:
        """Map chart coordinates to the ambient embedding (identity by default)."""
        return u

    def unembed(self, x: Tensor) -> Tensor:
        """Map ambient points to chart coordinates (identity by default)."""
        return x

    def relative(self, x_i: Tensor, x_j: Tensor) -> Tensor:
        r"""Offset of neighbour ``x_j`` seen from centroid ``x_i`` (default :math:`x_j - x_i`).

        This is what PointConv's weight network is evaluated on.
        """
        return x_j - x_i

    @property
    def relative_dim(self) -> int:
        """Size of the last dimension of :meth:`relative` (``ambient_dim`` by default)."""
        return self.ambient_dim

    def encode(self, x: Tensor) -> Tensor:
        """Default coordinate encoding fed to networks (the ambient coordinates)."""
        return x

    def projx(self, x: Tensor) -> Tensor:
        """Project ambient points onto the manifold (identity by default)."""
        return x

    def tolerance(self, dtype: torch.dtype) -> float:
        """Absolute tolerance used by :meth:`check_point` for ``dtype``."""
        # Loose enough for points computed in float32 and then cast (a common input), tight enough to catch
        # points that are not on the manifold at all.
        if dtype in (torch.float16, torch.bfloat16):
            return 1e-2
        return 1e-4 if dtype == torch.float32 else 1e-6

    def check_point(self, x: Tensor, atol: Optional[float] = None) -> Tuple[bool, Optional[str]]:
        r"""Whether ``x`` holds valid points of this manifold.

        Args:
            x (Tensor): Shape :math:`(*, \text{ambient\_dim})`.
            atol (float, optional): Tolerance of the membership test; by default
                :meth:`tolerance` of ``x.dtype``.

        Returns:
            (bool, str or None): ``(True, None)``, or ``(False, reason)``.
        """
        if not isinstance(x, Tensor):
            return False, f"expected a torch.Tensor, got {type(x).__name__}"
        if x.dim() == 0 or x.size(-1) != self.ambient_dim:
            return False, f"last dimension must be ambient_dim={self.ambient_dim}, got shape {tuple(x.shape)}"
        if not torch.is_floating_point(x):
            return False, f"expected a floating-point tensor, got dtype {x.dtype}"
        if not bool(torch.isfinite(x).all()):
            return False, "contains NaN or Inf"
        return True, None

    def assert_check_point(self, x: Tensor, name: str = "x", atol: Optional[float] = None) -> None:
        """Raise a :class:`ValueError` naming ``name`` if :meth:`check_point` fails."""
        ok, reason = self.check_point(x, atol=atol)
        if not ok:
            raise ValueError(f"{name} is not on {self!r}: {reason}")

    # ------------------------------------------------------------------ identity
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def cache_key(self) -> str:
        """A string identifying the metric, used to key cached neighbour hierarchies."""
        return repr(self)


def _per_axis(resolution: Resolution, n_axes: int, name: str = "resolution") -> Tuple[int, ...]:
    """Normalise an int or a sequence of ints to one positive int per axis."""
    if isinstance(resolution, int) and not isinstance(resolution, bool):
        res = (resolution,) * n_axes
    else:
        try:
            res = tuple(int(r) for r in resolution)  # type: ignore[union-attr]
        except TypeError:
            raise TypeError(f"{name} must be an int or a sequence of {n_axes} ints, got {resolution!r}") from None
        if len(res) != n_axes:
            raise ValueError(f"{name} must have {n_axes} entries, got {resolution!r}")
    if any(r < 1 for r in res):
        raise ValueError(f"{name} entries must be positive, got {resolution!r}")
    return res


def _chord_to_angle(chord: Tensor) -> Tensor:
    """Angle subtended by a chord of the unit circle: ``2 asin(c / 2)``, clamped before ``asin``."""
    return 2.0 * torch.asin((0.5 * chord).clamp(max=1.0))


_TWO_PI = 2.0 * math.pi
