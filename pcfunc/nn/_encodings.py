"""Coordinate encodings fed to function representations: random Fourier features and spherical harmonics."""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch
from torch import Tensor

from .._validation import check_positive_int

__all__ = ["FourierFeatures", "SphericalHarmonics", "spherical_harmonics", "get_encoding"]

_NORMALIZATIONS = ("integral", "component", "norm")


class FourierFeatures(torch.nn.Module):
    r"""Random Fourier features of coordinates (Tancik et al., 2020), as used by GASP.

    From `"Fourier Features Let Networks Learn High Frequency Functions in Low
    Dimensional Domains" <https://arxiv.org/abs/2006.10739>`_ and Section 2 of
    `"Generative Models as Distributions of Functions"
    <https://arxiv.org/abs/2102.04776>`_ (GASP):

    .. math::
        \gamma(\mathbf{x}) = \begin{pmatrix} \cos(2\pi B \mathbf{x}) \\ \sin(2\pi B \mathbf{x}) \end{pmatrix}
        \in \mathbb{R}^{2m}, \qquad B \in \mathbb{R}^{m \times d},\quad B_{ij} \sim \mathcal{N}(0, \sigma^2),

    following the paper exactly: the :math:`2\pi` factor is included, and the
    :math:`m` cosines come first, then the :math:`m` sines. :math:`B` is drawn
    once and then fixed (a buffer, saved in the ``state_dict`` as ``"B"``), or
    trained when ``learnable=True`` (a :class:`~torch.nn.Parameter`; GASP's
    appendix reports that learning it did not help and trained more slowly).
    The paper configurations use :math:`m = 128` and :math:`\sigma = 2`
    (ERA5, CelebA-HQ 64, and every VaMoH dataset).

    Args:
        in_dim (int): Coordinate dimension :math:`d` (3 for unit vectors on the sphere).
        num_frequencies (int): Number of frequencies :math:`m`. (default: ``128``)
        sigma (float): Standard deviation :math:`\sigma` of the entries of :math:`B`. (default: ``2.0``)
        learnable (bool): Make :math:`B` a trainable parameter. (default: ``False``)
        generator (torch.Generator, optional): Random generator used to draw :math:`B`.
        dtype (torch.dtype, optional): dtype of :math:`B` (default: the default dtype).
        device (torch.device or str, optional): Device of :math:`B`.

    Shapes:
        - **input:** coordinates :math:`(*, d)`
        - **output:** features :math:`(*, 2m)`
    """

    B: Tensor

    def __init__(
        self,
        in_dim: int,
        num_frequencies: int = 128,
        sigma: float = 2.0,
        learnable: bool = False,
        generator: Optional[torch.Generator] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> None:
        super().__init__()
        self.in_dim = check_positive_int(in_dim, "in_dim")
        self.num_frequencies = check_positive_int(num_frequencies, "num_frequencies")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
            raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
        self.sigma = float(sigma)
        self.learnable = bool(learnable)
        B = torch.empty(self.num_frequencies, self.in_dim, dtype=dtype, device=device)
        if self.learnable:
            self.B = torch.nn.Parameter(B)
        else:
            self.register_buffer("B", B)
        self.reset_parameters(generator)

    @property
    def out_dim(self) -> int:
        """Size :math:`2m` of the encoding."""
        return 2 * self.num_frequencies

    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        r"""Draw a new :math:`B`, :math:`B_{ij} \sim \mathcal{N}(0, \sigma^2)`."""
        with torch.no_grad():
            self.B.normal_(0.0, self.sigma, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 0 or x.size(-1) != self.in_dim:
            raise ValueError(f"x must have shape [..., {self.in_dim}] (in_dim={self.in_dim}), got {tuple(x.shape)}")
        if x.dtype != self.B.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the frequencies B have {self.B.dtype}; convert one of them")
        proj = torch.matmul(x, (2.0 * math.pi) * self.B.t())
        return torch.cat((torch.cos(proj), torch.sin(proj)), dim=-1)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, num_frequencies={self.num_frequencies}, sigma={self.sigma:g}, "
            f"learnable={self.learnable}"
        )


def _e3nn_o3():
    try:
        from e3nn import o3
    except ImportError as e:  # an optional dependency (the ``nn`` extra)
        raise ImportError("spherical harmonics need 'e3nn': pip install e3nn (or pip install 'pcfunc[nn]')") from e
    return o3


def spherical_harmonics(x: Tensor, lmax: int, normalization: str = "component", normalize: bool = True) -> Tensor:
    r"""Real spherical harmonics :math:`Y_l^m` of degree :math:`l \le l_\text{max}` at points of the sphere.

    Evaluated with :func:`e3nn.o3.spherical_harmonics` in pcfunc's sphere frame
    (:math:`z` is the north pole, :math:`(x, y, z) = (\cos\varphi\cos\lambda,
    \cos\varphi\sin\lambda, \sin\varphi)`). e3nn's polynomials treat its
    :math:`y` axis as the polar axis, so the coordinates are passed to it in
    the order :math:`(y, z, x)`: the result is then the standard table of real
    spherical harmonics with :math:`z` as the axis, e.g. for :math:`l = 1`

    .. math::
        (Y_1^{-1}, Y_1^0, Y_1^1) = c_1\,(y, z, x) = c_1\,(\cos\varphi\sin\lambda,\ \sin\varphi,\
        \cos\varphi\cos\lambda),

    and every :math:`m = 0` harmonic is a polynomial in :math:`z = \sin\varphi`
    (it depends on the latitude only). In general, with the colatitude
    :math:`\theta = 90^\circ - \varphi` and the complex harmonics
    :math:`Y_l^m(\theta, \lambda)` (Condon-Shortley phase included, as in
    :func:`scipy.special.sph_harm_y`), the ``"integral"`` normalisation gives
    the usual real harmonics

    .. math::
        Y_{l,m} = \begin{cases}
        \sqrt{2}\,(-1)^m \operatorname{Im} Y_l^{|m|} & m < 0, \\
        Y_l^0 & m = 0, \\
        \sqrt{2}\,(-1)^m \operatorname{Re} Y_l^m & m > 0.
        \end{cases}

    The columns are ordered by degree, then order :math:`m = -l, \dots, l`:
    :math:`Y_{l,m}` is column :math:`l^2 + l + m`.

    Normalisations (:math:`\int` is over the unit sphere, area :math:`4\pi`):

    * ``"integral"``: orthonormal, :math:`\int Y_l^m Y_{l'}^{m'} \,d\Omega = \delta_{ll'}\delta_{mm'}`;
    * ``"component"``: :math:`\sqrt{4\pi}` times that, so every harmonic has mean square 1 over
      the sphere (values of order 1, the scale a network input wants);
    * ``"norm"``: :math:`\lVert (Y_l^{-l}, \dots, Y_l^l)(\mathbf{x}) \rVert = 1` for every degree.

    Args:
        x (Tensor): Points, shape :math:`(*, 3)`.
        lmax (int): Largest degree, :math:`0 \le l_\text{max} \le 12`.
        normalization (str): ``"component"``, ``"integral"`` or ``"norm"``. (default: ``"component"``)
        normalize (bool): Project ``x`` radially onto the unit sphere first; with ``False`` the
            harmonics are evaluated as polynomials of ``x`` as given. (default: ``True``)

    Returns:
        Tensor: Shape :math:`(*, (l_\text{max} + 1)^2)`.
    """
    lmax = _check_lmax(lmax)
    normalization = _check_normalization(normalization)
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.size(-1) != 3:
        raise ValueError(f"x must have shape [..., 3] (unit vectors on the sphere), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    o3 = _e3nn_o3()
    # pcfunc (x, y, z) -> e3nn (y, z, x): e3nn's polar axis is its y.
    return o3.spherical_harmonics(list(range(lmax + 1)), x[..., [1, 2, 0]], normalize, normalization=normalization)


def _check_lmax(lmax: object) -> int:
    if isinstance(lmax, bool) or not isinstance(lmax, int) or not 0 <= lmax <= 12:
        raise ValueError(f"lmax must be an integer in [0, 12] (e3nn's range), got {lmax!r}")
    return lmax


def _check_normalization(normalization: object) -> str:
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")
    return str(normalization)


class SphericalHarmonics(torch.nn.Module):
    r"""Encoding of points on the sphere by the real spherical harmonics up to degree :math:`l_\text{max}`.

    .. math::
        \gamma(\mathbf{x}) = \big(Y_l^m(\mathbf{x})\big)_{0 \le l \le l_\text{max},\ -l \le m \le l}
        \in \mathbb{R}^{(l_\text{max}+1)^2}

    The module form of :func:`spherical_harmonics` (see there for the frame
    and the normalisations): :math:`Y_l^m` is taken about pcfunc's :math:`z`
    axis (the north pole), so the :math:`m = 0` harmonics depend on the
    latitude only, and :math:`Y_l^m` is output column :math:`l^2 + l + m`.
    It has no parameters and can replace :class:`FourierFeatures` as the
    ``encoding`` of a :class:`~pcfunc.nn.FunctionRepresentation` on the
    sphere. Needs ``e3nn``.

    Args:
        lmax (int): Largest degree, :math:`0 \le l_\text{max} \le 12`.
        normalization (str): ``"component"`` (mean square 1 over the sphere), ``"integral"``
            (orthonormal) or ``"norm"``. (default: ``"component"``)
        normalize (bool): Project inputs radially onto the unit sphere first. (default: ``True``)

    Shapes:
        - **input:** points :math:`(*, 3)`
        - **output:** features :math:`(*, (l_\text{max} + 1)^2)`
    """

    in_dim = 3

    def __init__(self, lmax: int, normalization: str = "component", normalize: bool = True) -> None:
        super().__init__()
        self.lmax = _check_lmax(lmax)
        self.normalization = _check_normalization(normalization)
        self.normalize = bool(normalize)
        _e3nn_o3()  # fail at construction, not at the first forward, when e3nn is missing

    @property
    def out_dim(self) -> int:
        """Number :math:`(l_\\text{max} + 1)^2` of harmonics."""
        return (self.lmax + 1) ** 2

    def reset_parameters(self) -> None:
        """Nothing to reset (no parameters); present for a uniform interface."""

    def forward(self, x: Tensor) -> Tensor:
        return spherical_harmonics(x, self.lmax, self.normalization, self.normalize)

    def extra_repr(self) -> str:
        return f"lmax={self.lmax}, normalization={self.normalization!r}, normalize={self.normalize}"


_ENCODINGS = {"fourier": lambda in_dim, **kw: FourierFeatures(in_dim, **kw),
              "spherical_harmonics": lambda in_dim, **kw: SphericalHarmonics(**kw)}


def get_encoding(encoding: Any, in_dim: int) -> Optional[torch.nn.Module]:
    """A coordinate encoding from a module, a name or a ``(name, options)`` pair (a form that checkpoints can store).

    Names: ``"fourier"`` (:class:`FourierFeatures` of ``in_dim`` coordinates; options ``num_frequencies``,
    ``sigma``, ...) and ``"spherical_harmonics"`` (:class:`SphericalHarmonics`; options ``lmax``, ...). A module
    is returned as it is, ``None`` stays ``None``.

    Example:
        >>> get_encoding(("fourier", {"num_frequencies": 8}), 3).out_dim
        16
    """
    if encoding is None or isinstance(encoding, torch.nn.Module):
        return encoding
    name, options = encoding, {}
    if isinstance(encoding, (tuple, list)):
        if len(encoding) != 2 or not isinstance(encoding[1], dict):
            raise ValueError(f"encoding must be a module, a name or a (name, options dict) pair, got {encoding!r}")
        name, options = encoding
    if not isinstance(name, str) or name.lower() not in _ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; known names: {sorted(_ENCODINGS)} (or pass a module)")
    return _ENCODINGS[name.lower()](in_dim, **options)
