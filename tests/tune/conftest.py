"""Fixtures of the tuner tests: one local Ray instance per session, fake search spaces."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ray_session(study_cache):
    """``ray.init(num_cpus=2)`` once; every in-process study joins it."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def fake_space(tmp_path):
    """Write a fake-trainable search space (``fake:`` options, budget ``smoke``)."""

    def make(name: str = "fake", *, fake: dict | None = None, trials: int = 6,
             iterations: int = 40, eval_every: int = 10, grace: int = 10,
             max_concurrent: int = 2, lr=(1.0e-5, 1.0e-2)) -> Path:
        import yaml

        space = {
            "trainable": "fake",
            "params": {"arch": "hybrid", "lr": {"loguniform": list(lr)}},
            "fake": fake or {},
            "budgets": {"smoke": {"iterations": iterations, "eval_every": eval_every,
                                  "grid": [32, 32, 8], "trials": trials,
                                  "max_concurrent": max_concurrent, "grace_period": grace,
                                  "reduction_factor": 2, "phases": ["arterial"]}},
        }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(space), encoding="utf-8")
        return path

    return make


@pytest.fixture
def launch_bg():
    """Start ``python -m study.launch ARGS`` (2 CPUs, no report) in its own session, output
    to ``log``; the caller kills or waits for the returned Popen."""

    def launch(args, log):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        return subprocess.Popen([sys.executable, "-m", "study.launch", *args, "--cpus", "2",
                                 "--no-report"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    return launch


def replay_kw(lr, **over):
    """The fake trainable's keywords for a hand-made replay table's configuration."""
    return {"lr": lr, "l2": 1e-5, "base_channels": 8, "loss": "dice", "switch_step": None,
            "iterations": 40, **over}
