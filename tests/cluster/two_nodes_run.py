"""Run by test_two_nodes.py in a fresh process (never inside pytest's own process: a Ray
test cluster there would break a Ray session that another test module keeps open).

    python two_nodes_run.py OUT.json DATA RUNS

Starts ray.cluster_utils.Cluster -- a head and a second node, 1 CPU and 1 declared GPU
each, each with its own custom resource --, runs the smoke study on it through
`python -m study.launch --address ADDRESS`, then writes OUT.json: the launcher's exit
code and output tail, the node ids, and from the GCS every trial actor's node and every
placement group's bundles.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(out_json: str, data: str, runs: str) -> int:
    import ray._common.utils
    import ray._private.utils
    from ray.cluster_utils import Cluster

    # Ray's test cluster writes /tmp/ray/ray_current_cluster (a bare ray.init() elsewhere
    # on this machine would then join it) and deletes that file at shutdown, whoever
    # wrote it: both off.
    ray._private.utils.write_ray_address = lambda *a, **k: None
    ray._common.utils.reset_ray_address = lambda *a, **k: None

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "num_gpus": 1, "resources": {"node_head": 1},
        "include_dashboard": False})
    try:
        node = cluster.add_node(num_cpus=1, num_gpus=1, resources={"node_second": 1})
        cluster.wait_for_nodes()
        names = {cluster.head_node.node_id: "head", node.node_id: "second"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "study.launch", "--space", "smoke", "--budget", "smoke",
             "--data", data, "--samples", "2", "--address", cluster.address, "--out", runs,
             "--name", "two", "--no-report"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
        )
        launch_s = time.monotonic() - t0
        # Tune wraps a function trainable in an actor class named ImplicitFunc
        actors = [{"node": names.get(a["Address"]["NodeID"], a["Address"]["NodeID"]),
                   "state": a["State"]}
                  for a in cluster.global_state.actor_table(None).values()
                  if a["ActorClassName"] == "ImplicitFunc"]
        bundles = [b for pg in cluster.global_state.placement_group_table().values()
                   for b in pg["bundles"].values()]
        Path(out_json).write_text(json.dumps({
            "rc": r.returncode, "stdout": r.stdout[-3000:], "stderr": r.stderr[-3000:],
            "launch_s": launch_s, "actors": actors, "bundles": bundles}))
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
