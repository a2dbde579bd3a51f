import pytest

from pcfunc import _compat


def test_require_names_the_missing_package(monkeypatch):
    monkeypatch.setitem(_compat._AVAILABLE, "torch_cluster", False)
    with pytest.raises(ImportError, match="needs 'torch_cluster'.*pip install torch-cluster"):
        _compat.require("torch_cluster", "fps(backend='torch_cluster')")
    with pytest.raises(ValueError, match="name must be one of"):
        _compat.require("faiss", "x")


def test_forced_compiled_backend_without_package(monkeypatch):
    import torch

    from pcfunc.ops import fps

    monkeypatch.setitem(_compat._AVAILABLE, "torch_cluster", False)
    with pytest.raises(ImportError, match="backend='torch_cluster'"):
        fps(torch.rand(10, 3), num=2, backend="torch_cluster")


def test_import_pcfunc_imports_no_optional_compiled_package():
    import subprocess
    import sys

    code = ("import sys, pcfunc, pcfunc.nn, pcfunc.models, pcfunc.ops, pcfunc.data, pcfunc.render, pcfunc.training; "
            "print(sorted(m for m in ('pytorch3d', 'torch_scatter', 'torch_cluster') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert isinstance(_compat.WITH_PYTORCH3D, bool)  # detected on first read
    with pytest.raises(AttributeError, match="WITH_FAISS"):
        _compat.WITH_FAISS
