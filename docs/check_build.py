"""Checks of the built HTML docs, run by ``bash scripts/run test`` after the Sphinx build.

* No page loads a script, stylesheet or font from the network (the maths is rendered by the MathJax copy in
  ``_static/mathjax``), so the docs read the same offline.
* The API reference documents the methods VaMoH inherits (``reconstruct``, ``inpaint``, ...).

Usage: ``python docs/check_build.py docs/_build/html``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REMOTE = re.compile(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=\"(https?:)?//", re.IGNORECASE)
INHERITED = ("reconstruct", "inpaint", "predictive", "sample", "component_maps", "interpolate")


def main(root: Path) -> int:
    problems = []
    pages = sorted(root.rglob("*.html"))
    if not pages:
        problems.append(f"no HTML pages under {root}")
    for page in pages:
        for m in REMOTE.finditer(page.read_text(encoding="utf-8")):
            tag = m.group(0)
            if m.group(1).lower() == "link" and "stylesheet" not in tag and "preload" not in tag:
                continue  # a hyperlink-like <link> (canonical, author) loads nothing
            problems.append(f"{page.relative_to(root)} loads from the network: {tag[:120]}")
    mathjax = root / "_static" / "mathjax" / "tex-chtml.js"
    if not mathjax.is_file():
        problems.append(f"{mathjax.relative_to(root)} is missing: the maths would not render offline")
    models = root / "api" / "models.html"
    text = models.read_text(encoding="utf-8") if models.is_file() else ""
    for name in INHERITED:
        if f'id="pcfunc.models.VaMoH.{name}"' not in text:
            problems.append(f"api/models.html does not document VaMoH.{name}")
    for p in problems:
        print(f"docs check: {p}", file=sys.stderr)
    if not problems:
        print(f"docs check: {len(pages)} pages load nothing from the network; VaMoH's inherited methods documented")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/_build/html")))
