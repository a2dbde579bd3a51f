"""Property checks for manifolds, for users who add their own (see the tutorial "Add your own manifold").

Example:
    >>> from pcfunc.manifolds import Sphere
    >>> from pcfunc.testing import check_manifold
    >>> check_manifold(Sphere())
"""

from ._manifold_checks import check_manifold

__all__ = ["check_manifold"]
