"""pcfunc: distributions over functions represented as point clouds on manifolds."""

import os as _os
import sys as _sys

__version__ = "0.1.0.dev0"

#: The spin count pcfunc gives GNU OpenMP (torch's CPU thread pool) when it is imported before torch: a thread
#: that waits for work spins this many times before it sleeps, instead of libgomp's 300,000. On a CPU that is doing
#: something else, spinning threads take the cores the working ones need: on a 2-core AMD EPYC, a 2-thread VaMoH
#: training step beside one busy process took 3.5 times its idle time with libgomp's default and 2.0 times with
#: 1,000, and the idle step was no slower (0.406 s against 0.476 s; ``benchmarks/contention.py``).
OMP_SPIN_COUNT = 1000


def _quiet_openmp() -> bool:
    """Set ``GOMP_SPINCOUNT`` unless the user chose a spin count or wait policy, or torch (and so its OpenMP
    runtime, which reads the variable once when it loads) is already imported; whether it was set."""
    if "torch" in _sys.modules or "GOMP_SPINCOUNT" in _os.environ or "OMP_WAIT_POLICY" in _os.environ:
        return False
    _os.environ["GOMP_SPINCOUNT"] = str(OMP_SPIN_COUNT)
    return True


#: Whether importing pcfunc set ``GOMP_SPINCOUNT`` (see :data:`OMP_SPIN_COUNT`).
OMP_SPIN_COUNT_SET = _quiet_openmp()

from . import manifolds, ops  # noqa: E402

__all__ = ["manifolds", "ops", "__version__", "OMP_SPIN_COUNT"]
