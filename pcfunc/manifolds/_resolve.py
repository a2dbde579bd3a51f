"""Manifolds by name: a registry of the built-in manifolds and users' own."""

from __future__ import annotations

from typing import Any, Callable, Dict, Union

from ._base import Manifold
from ._euclidean import Euclidean
from ._sphere import Sphere
from ._torus import Torus

__all__ = ["resolve_manifold", "register_manifold"]

_REGISTRY: Dict[str, Callable[..., Manifold]] = {
    "euclidean": Euclidean,
    "sphere": Sphere,
    "s2": Sphere,
    "torus": Torus,
}


def register_manifold(name: str, factory: Callable[..., Manifold]) -> None:
    """Make ``resolve_manifold(name, **kwargs)`` build ``factory(**kwargs)``.

    Args:
        name (str): Case-insensitive name.
        factory (callable): A :class:`Manifold` subclass or a function returning one.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, got {type(factory).__name__}")
    _REGISTRY[name.lower()] = factory


def resolve_manifold(manifold: Union[str, Manifold], **kwargs: Any) -> Manifold:
    """Return ``manifold`` itself, or build the manifold registered under that name.

    Names: ``"euclidean"`` (needs ``dim=``), ``"sphere"`` (alias ``"s2"``),
    ``"torus"``, and any registered with :func:`register_manifold`.

    Example:
        >>> resolve_manifold("sphere")
        Sphere()
        >>> resolve_manifold("euclidean", dim=2, p=1)
        Euclidean(dim=2, p=1)
    """
    if isinstance(manifold, Manifold):
        if kwargs:
            raise ValueError(f"keyword arguments {sorted(kwargs)} given with a Manifold instance")
        return manifold
    if not isinstance(manifold, str):
        raise TypeError(f"manifold must be a Manifold or a name, got {type(manifold).__name__}")
    try:
        factory = _REGISTRY[manifold.lower()]
    except KeyError:
        raise ValueError(f"unknown manifold {manifold!r}; known names: {sorted(_REGISTRY)}") from None
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise TypeError(f"manifold {manifold!r} cannot be built from its name with {kwargs or 'no arguments'} ({e}); "
                        "pass a Manifold instance instead, e.g. pcfunc.manifolds.Euclidean(dim=2)") from e
