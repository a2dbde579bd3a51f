"""Sphinx configuration of the pcfunc documentation.

Build (from the repository root; warnings are errors)::

    python -m sphinx -n -W --keep-going -q -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Import pcfunc from this checkout, whatever the current directory.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pcfunc  # noqa: E402

project = "pcfunc"
author = "pcfunc developers"
copyright = "pcfunc developers"
release = pcfunc.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax 3 copied into the build (_static/mathjax): the maths renders without a network.
    "sphinx-mathjax-offline",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.doctest",
]

exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path: list[str] = []

html_theme = "furo"
html_title = f"pcfunc {release}"

# -- autodoc / napoleon ------------------------------------------------------------
# Google-style docstrings only (Args:, Returns:, Raises:, Example:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# "Shapes:" (input/output shapes, as in PyG's docstrings) is rendered as its own section.
napoleon_custom_sections = ["Shapes"]
# "Attributes:" become :ivar: fields rather than separate attribute entries, so a dataclass
# field described there is not documented twice.
napoleon_use_ivar = True
# Type hints go into the parameter descriptions, and only for parameters the docstring
# documents: the docstrings already give types as "name (type): ...".
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_member_order = "bysource"
# Show defaults as written in the source (cache=default_cache), not as the repr of the
# object at build time.
autodoc_preserve_defaults = True
# An override without a docstring is not listed on the subclass: inheriting the base
# docstring would describe the default ("identity by default") rather than the override, and
# would pull torch.nn.Module's docstrings (extra_repr) into every manifold. The base class
# page documents the method.
autodoc_inherit_docstrings = False
# No "inherited-members": a manifold page would list every torch.nn.Module method.
autodoc_default_options = {"members": True, "show-inheritance": True}

# Every cross-reference to pcfunc must resolve (the build runs with -n -W). References to other packages resolve
# only with intersphinx (off by default, below) and are ignored, as are the plain-language types of the docstrings'
# "name (type): ..." (napoleon turns "optional", "sequence of int", "array" into references).
nitpicky = True
_EXTERNAL = r"(torch|numpy|np|xarray|xr|lightning|pl|torch_geometric|matplotlib|pathlib|cftime|e3nn|scipy|PIL|numba|pytorch3d|pandas|typing)(\..*)?"
_PLAIN_TYPES = (r"(Tensor|Module|optional|sequence|array|array-like|callable|iterable|dict|list|tuple|set|int|float|str|"
                r"bool|bytes|None|object|any|Path|Dataset|Colormap|Generator|pair|num|k|lat|lon|label|\d+|\"inf\"|"
                r"RGB in)")
# Private base classes named by "Bases:" (show-inheritance) are not documented.
nitpick_ignore_regex = [(r"py:.*", _EXTERNAL), (r"py:class", _PLAIN_TYPES), (r"py:class", r"pcfunc(\.\w+)*\._\w+(\.\w+)*")]

# -- intersphinx -------------------------------------------------------------------
# The inventories live on the web. Build machines for this project reach PyPI only, and
# an unreachable inventory is a warning, which -W turns into a failed build. The mapping
# is therefore enabled only on request (PCFUNC_DOCS_INTERSPHINX=1, e.g. on Read the Docs),
# which makes references such as :class:`torch.Tensor` links; without it they render as
# plain code.
intersphinx_mapping: dict[str, tuple[str, None]] = {}
if os.environ.get("PCFUNC_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "torch_geometric": ("https://pytorch-geometric.readthedocs.io/en/latest/", None),
    }

# -- doctest -----------------------------------------------------------------------
# ">>>" examples in docstrings use the public names without imports; check them with
#   python -m sphinx -b doctest docs docs/_build/doctest
doctest_global_setup = """
import torch
from pcfunc.manifolds import *
from pcfunc.ops import *
"""
