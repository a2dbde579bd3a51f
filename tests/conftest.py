import pytest
import torch

from pcfunc import _compat


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Backends to test: the pure-PyTorch reference always, the compiled one where installed (CI installs it).
BACKENDS = ["torch"] + (["torch_cluster"] if _compat.WITH_TORCH_CLUSTER else [])
FPS_BACKENDS = BACKENDS + (["numba"] if _compat.WITH_NUMBA else [])


def pytest_report_header(config):
    return (
        f"pcfunc compiled packages: torch_cluster={_compat.WITH_TORCH_CLUSTER} "
        f"pytorch3d={_compat.WITH_PYTORCH3D} numba={_compat.WITH_NUMBA}"
    )
