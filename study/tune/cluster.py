"""Multi-node helper: whether trials ask Ray for GPUs.

``gpu_requested()`` answers "should each trial ask for its architecture's GPU fraction?".
On one machine the answer is "if it has a GPU". On an autoscaling cluster (cluster.yaml:
GPU workers min 0) the cluster has no GPU when the study starts -- the GPU nodes are only
launched for trials that ask for one -- so the cluster file says it instead:
``STUDY_USE_GPU=1`` exported before ``ray start`` reaches every job's driver.
"""

from __future__ import annotations

import os

from study.errors import ConfigError

ENV = "STUDY_USE_GPU"
_YES, _NO = ("1", "true", "yes"), ("0", "false", "no")


def gpu_requested(cluster_gpus: float | None = None) -> bool:
    """``$STUDY_USE_GPU`` (1/0, true/false, yes/no) if set; else whether the connected Ray
    cluster has a GPU now (``cluster_gpus``, default: ``ray.cluster_resources()``)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in _YES:
        return True
    if value in _NO:
        return False
    if value:
        raise ConfigError(f"environment variable {ENV}={os.environ[ENV]!r}: use 1 (trials ask "
                          f"for their GPU fraction) or 0 (CPU only), or leave it unset")
    if cluster_gpus is None:
        import ray

        cluster_gpus = ray.cluster_resources().get("GPU", 0) if ray.is_initialized() else 0
    return cluster_gpus > 0

