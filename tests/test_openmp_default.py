"""pcfunc's OpenMP spin count: set when pcfunc is imported before torch, never over a user's choice, never after
torch's runtime has loaded (when it could no longer take effect)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = "import os, {first}; import pcfunc; print(os.environ.get('GOMP_SPINCOUNT'), pcfunc.OMP_SPIN_COUNT_SET)"


def probe(first: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    clean["PYTHONPATH"] = str(ROOT) + os.pathsep + clean.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True,
                         env={**clean, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("first, env, expected", [
    ("sys", {}, "1000 True"),  # pcfunc first: its spin count
    ("torch", {}, "None False"),  # torch's OpenMP already read the environment: nothing is pretended
    ("sys", {"GOMP_SPINCOUNT": "5"}, "5 False"),  # the user's choice stays
    ("sys", {"OMP_WAIT_POLICY": "ACTIVE"}, "None False"),
])
def test_pcfunc_sets_the_spin_count_only_when_it_can_and_the_user_did_not(first, env, expected):
    assert probe(first, **env) == expected

