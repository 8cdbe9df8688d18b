"""A two-node Ray cluster on one machine (ray.cluster_utils.Cluster: a head and a second
node, 1 CPU and 1 (declared) GPU each, each with its own custom resource) runs the smoke
study (2 trials) through `python -m study.launch --address ADDRESS`: trials land on both
nodes, ask Ray for the search space's GPU fraction, and the run directory has the same
tables, with the same schema, as a local run.

The GPUs are declared, not real: Ray only does the accounting (CUDA_VISIBLE_DEVICES is
set for the trial); torch here is the CPU build and trains on the CPU. The cluster runs in
a child process (two_nodes_run.py), which this test times out and kills as a group.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

RUNNER = Path(__file__).with_name("two_nodes_run.py")


def _run_cluster(data: Path, runs: Path, out: Path, timeout: float = 300) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    proc = subprocess.Popen([sys.executable, str(RUNNER), str(out), str(data), str(runs)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0 and out.is_file(), log[-4000:]
    return json.loads(out.read_text())


def test_smoke_study_on_two_nodes(small_phantom, tmp_path):
    from study.results import METRIC_SCHEMA, TRIAL_SCHEMA, read_metrics, read_trials

    t0 = time.monotonic()
    res = _run_cluster(small_phantom, tmp_path / "runs", tmp_path / "cluster.json")
    print(f"two-node cycle {time.monotonic() - t0:.1f} s, study {res['launch_s']:.1f} s")
    assert res["rc"] == 0, res["stdout"] + res["stderr"]

    nodes = {a["node"] for a in res["actors"]}
    assert nodes == {"head", "second"}, f"trial actors ran on {nodes}"
    # each trial asked Ray for the space's resources (smoke.yaml: cpu 1, gpu 0.25)
    assert len(res["bundles"]) >= 2
    for b in res["bundles"]:
        assert b == {"CPU": pytest.approx(1.0), "GPU": pytest.approx(0.25)}, b

    run = tmp_path / "runs" / "two"
    trials, metrics = read_trials(run), read_metrics(run)
    assert dict(pl.read_parquet(run / "trials.parquet").schema) == TRIAL_SCHEMA
    assert dict(pl.read_parquet(run / "metrics.parquet").schema) == METRIC_SCHEMA
    assert trials.height == 2  # --samples 2: both run at once, one per node
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    assert metrics.filter(pl.col("split") == "test").height > 0
    meta = json.loads((run / "study.json").read_text())
    assert meta["name"] == "two" and meta["args"]["space"].endswith("smoke.yaml")
