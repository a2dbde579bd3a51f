"""The layering of docs/architecture.rst: no pcfunc module imports a package above its own."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "pcfunc"

# What each package may import of pcfunc (besides itself and the private helpers _validation, _compat and _random).
ALLOWED = {
    "manifolds": set(),
    "ops": {"manifolds"},
    "metrics": set(),
    "data": {"manifolds", "ops"},
    "nn": {"manifolds", "ops"},
    "models": {"manifolds", "ops", "nn"},
    "evaluation": {"manifolds", "ops", "data", "metrics", "models"},
    "training": {"manifolds", "ops", "data", "nn", "models", "metrics"},
    "render": {"manifolds", "ops", "data"},
    "testing": {"manifolds", "ops", "data", "nn", "models", "metrics"},
}
PRIVATE = {"_validation", "_compat", "_random"}


def _imported_packages(path: Path):
    """(line, pcfunc subpackage) of every import in ``path``, module-level or inside functions."""
    here = ["pcfunc", *path.relative_to(ROOT).parts[:-1]]  # the package that holds the file
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level <= len(here), f"{path}: import reaches above pcfunc"
                full = here[:len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            else:
                full = node.module.split(".")
            if full[0] != "pcfunc":
                continue
            for name in [full[1]] if len(full) > 1 else [a.name for a in node.names]:
                yield node.lineno, name
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "pcfunc" and len(parts) > 1:
                    yield node.lineno, parts[1]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_points_upward(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in _imported_packages(path):
            if name not in ALLOWED[package] | PRIVATE | {package}:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line} imports pcfunc.{name}")
    assert not bad, "\n".join(bad)


def test_the_table_covers_every_package():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def _module_graph():
    """pcfunc module -> the pcfunc modules it imports (module-level or inside functions; ``from .pkg import sub``
    counts as importing ``pkg.sub`` alone when every name is a submodule)."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = ["pcfunc", *path.relative_to(ROOT).with_suffix("").parts]
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {m: set() for m in modules}
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = here[:len(here) - node.level + 1] if node.level else []
                target = ".".join(base + (node.module.split(".") if node.module else []))
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
                found = subs if len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            graph[name] |= {t for t in found if t in modules and t != name}
    return graph


def test_no_import_cycle_between_modules():
    graph = _module_graph()
    packages = {m for m in graph if (ROOT.parent / m.replace(".", "/") / "__init__.py").exists()}

    def reaches(start, goal):  # depth-first over modules (a package's __init__ re-exports are not followed)
        seen, stack = set(), [start]
        while stack:
            m = stack.pop()
            for t in graph[m]:
                if t == goal:
                    return True
                if t not in seen and t not in packages:
                    seen.add(t)
                    stack.append(t)
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph if a not in packages for b in graph[a]
                    if b not in packages and reaches(b, a))
    assert not cycles, "\n".join(cycles)
    assert "pcfunc.evaluation._points" in graph["pcfunc.evaluation._harness"]  # the graph sees real imports
