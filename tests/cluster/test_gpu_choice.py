"""study.tune.cluster: the GPU decision for trials and the node label."""

from __future__ import annotations

import pytest

from study.errors import ConfigError
from study.tune.cluster import ENV, gpu_requested


@pytest.mark.parametrize("value,gpus,expected", [
    ("1", 0, True),      # autoscaling cluster: no GPU node yet, trials must still ask
    ("yes", 0, True),
    ("TRUE", 0, True),
    ("0", 4, False),     # forced CPU-only on a GPU box
    ("no", 4, False),
    (None, 0, False),    # unset: what the cluster has now
    (None, 1, True),
    (None, 0.5, True),
])
def test_gpu_requested(monkeypatch, value, gpus, expected):
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    assert gpu_requested(cluster_gpus=gpus) is expected


def test_gpu_requested_rejects_garbage(monkeypatch):
    monkeypatch.setenv(ENV, "maybe")
    with pytest.raises(ConfigError, match=r"STUDY_USE_GPU='maybe'.*use 1"):
        gpu_requested(cluster_gpus=0)


def test_gpu_requested_without_ray(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray instance is connected in this process")
    assert gpu_requested() is False

