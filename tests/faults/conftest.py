"""Fixtures of the fault and bad-input suite.

* ``tree(path)``: sorted relative paths under ``path`` (``[]`` when it does not exist), to
  prove a failed command left no file behind.
* ``run_module(module, *args, env=None, timeout=...)``: ``python -m module args`` in a
  subprocess (repository root as cwd) -> ``CompletedProcess`` with text output.
* ``fault_space(path, **kw)``: write a fake-trainable search space YAML, return its path.
* ``fault_env(plan, log)``: environment for a subprocess whose trials (and their Ray
  workers) meet the faults of ``plan`` (see ``injector/sitecustomize.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INJECTOR = Path(__file__).resolve().parent / "injector"


def _tree(path) -> list[str]:
    path = Path(path)
    if not path.exists():
        return []
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


@pytest.fixture
def tree():
    return _tree


def _base_env(extra: dict | None = None) -> dict:
    env = {**os.environ, "RAY_DEDUP_LOGS": "1", "PYTHONUNBUFFERED": "1",
           "RAY_USAGE_STATS_ENABLED": "0", "TQDM_DISABLE": "1"}
    env.update(extra or {})
    return env


@pytest.fixture(scope="session")
def run_module():
    def run(module: str, *args, env: dict | None = None, timeout: float = 240,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", module, *map(str, args)],
                              capture_output=True, text=True, env=_base_env(env),
                              cwd=cwd or REPO, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def fault_env():
    def make(plan: dict[int, str], log: Path | None = None) -> dict:
        env = {"STUDY_FAULTS": json.dumps({str(k): v for k, v in plan.items()}),
               "PYTHONPATH": os.pathsep.join(
                   [str(INJECTOR), str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        if log is not None:
            env["STUDY_FAULTS_LOG"] = str(log)
        return env

    return make


def write_space(path: Path, *, trials: int = 4, iterations: int = 30, eval_every: int = 10,
                grace: int = 30, max_concurrent: int = 2, fake: dict | None = None,
                lr=(1.0e-4, 1.0e-2), max_failures: int = 0, phases=("arterial",)) -> Path:
    import yaml

    space = {
        "description": f"fault suite space {Path(path).stem}",
        "trainable": "fake",
        "seed": 0,
        "max_failures": max_failures,
        "params": {"arch": "hybrid", "lr": {"loguniform": list(lr)}},
        "resources": {"default": {"cpu": 1, "gpu": 0}},
        "fake": fake or {},
        "budgets": {"smoke": {"iterations": iterations, "eval_every": eval_every,
                              "grid": [32, 32, 8], "trials": trials,
                              "max_concurrent": max_concurrent, "grace_period": grace,
                              "reduction_factor": 2, "phases": list(phases)}},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(space), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def fault_space():
    """``make(path, *, trials, iterations, eval_every, grace, max_concurrent, fake, lr,
    max_failures, phases=("arterial",)) -> path`` of a fake-trainable search space."""
    return write_space
