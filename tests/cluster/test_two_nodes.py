"""A two-node Ray cluster on one machine (ray.cluster_utils.Cluster: a head and a second
node, 1 CPU and 1 (declared) GPU each, each with its own custom resource) runs the smoke
study through `python -m study.launch --address ADDRESS`: trials land on both nodes, ask
Ray for the search space's GPU fraction, and the run directory has the same tables, with
the same schema, as a local run.

The GPUs are declared, not real: Ray only does the accounting (CUDA_VISIBLE_DEVICES is
set for the trial); torch here is the CPU build and trains on the CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_nodes(monkeypatch, tmp_path_factory):
    """Head + one node. Ray's test cluster normally writes /tmp/ray/ray_current_cluster
    (so that a bare ray.init() elsewhere on this machine would join it) and deletes that
    file at shutdown, whoever wrote it: both are switched off here."""
    import ray._common.utils
    import ray._private.utils
    from ray.cluster_utils import Cluster

    monkeypatch.setattr(ray._private.utils, "write_ray_address", lambda *a, **k: None)
    monkeypatch.setattr(ray._common.utils, "reset_ray_address", lambda *a, **k: None)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "num_gpus": 1, "resources": {"node_head": 1},
                        "include_dashboard": False},
    )
    try:
        node = cluster.add_node(num_cpus=1, num_gpus=1, resources={"node_second": 1})
        cluster.wait_for_nodes()
        yield cluster, {cluster.head_node.node_id: "head", node.node_id: "second"}
    finally:
        cluster.shutdown()


def _launch(address: str, data: Path, out: Path, name: str) -> subprocess.CompletedProcess:
    """The launcher as a user runs it; $STUDY_CACHE is the session's (tests/conftest.py)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return subprocess.run(
        [sys.executable, "-m", "study.launch", "--space", "smoke", "--budget", "smoke",
         "--data", str(data),
         "--samples", "2", "--address", address, "--out", str(out), "--name", name,
         "--no-report"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )


def _trial_actors(cluster) -> list[dict]:
    """Every trial actor the cluster ran (dead ones included), from the GCS. Tune wraps
    a function trainable in an actor class named ImplicitFunc."""
    table = cluster.global_state.actor_table(None)
    return [a for a in table.values() if a["ActorClassName"] == "ImplicitFunc"]


def _trial_bundles(cluster) -> list[dict]:
    """Resources of every placement group Tune made for a trial (removed ones included)."""
    table = cluster.global_state.placement_group_table()
    return [b for pg in table.values() for b in pg["bundles"].values()]


def test_smoke_study_on_two_nodes(two_nodes, small_phantom, tmp_path):
    from study.results import METRIC_SCHEMA, TRIAL_SCHEMA, read_metrics, read_trials

    cluster, names = two_nodes
    t0 = time.monotonic()
    r = _launch(cluster.address, small_phantom, tmp_path / "runs", "two")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"two-node smoke study: {took:.1f} s")

    actors = _trial_actors(cluster)
    nodes = {names.get(a["Address"]["NodeID"]) for a in actors}
    assert nodes == {"head", "second"}, f"trial actors ran on {nodes}"
    # each trial asked Ray for the space's resources (smoke.yaml: cpu 1, gpu 0.25)
    bundles = _trial_bundles(cluster)
    assert len(bundles) >= 2
    for b in bundles:
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
