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
