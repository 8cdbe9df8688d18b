"""cluster.yaml (AWS) and cluster.local.yaml validate against Ray's own cluster-config
schema, the way `ray up` checks them, and keep the security settings the docs promise."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
FILES = ["cluster.yaml", "cluster.local.yaml"]
SCHEMA = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _start_commands(cfg: dict) -> list[str]:
    return cfg["head_start_ray_commands"] + cfg["worker_start_ray_commands"]


@pytest.mark.parametrize("name", FILES)
def test_validates_against_ray_schema(name):
    cfg = _load(name)
    jsonschema.validate(cfg, SCHEMA)  # the file as written
    validate_config(prepare_config(copy.deepcopy(cfg)))  # what `ray up` validates


@pytest.mark.parametrize("name", FILES)
def test_schema_check_is_live(name):
    """The validator rejects a misspelt key: the test above can fail."""
    cfg = _load(name)
    cfg["setup_comands"] = ["true"]
    with pytest.raises(jsonschema.ValidationError, match="setup_comands"):
        validate_config(prepare_config(cfg))


@pytest.mark.parametrize("name", FILES)
def test_token_auth_and_localhost_dashboard(name):
    cfg = _load(name)
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "0.0.0.0" not in (ROOT / name).read_text()
    starts = [c for c in _start_commands(cfg) if "ray start" in c]
    assert len(starts) == 2
    for cmd in starts:
        assert "RAY_AUTH_MODE=token" in cmd
    # the token reaches every node by file mount, never inline
    assert cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "RAY_AUTH_TOKEN=" not in (ROOT / name).read_text()


@pytest.mark.parametrize("name", FILES)
def test_no_secrets(name):
    text = (ROOT / name).read_text()
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)
    assert not re.search(r"(?i)(secret_access_key|password|BEGIN [A-Z ]*PRIVATE KEY)", text)


@pytest.mark.parametrize("name", FILES)
def test_installs_project_with_pinned_torch(name):
    cfg = _load(name)
    cmds = cfg["setup_commands"] + cfg["head_setup_commands"] + cfg["worker_setup_commands"]
    text = "\n".join(cmds)
    assert "torch==2.13.0" in text
    assert "ray[default,tune]==2.60.0" in text
    assert "pip install -q -c ~/study/constraints.txt -e ~/study" in text
    # every pip install of a Python package but torch goes through the one constraints file
    for cmd in cmds:
        if "pip install" in cmd and "torch" not in cmd and "--upgrade pip" not in cmd:
            assert "-c ~/study/constraints.txt" in cmd, cmd
    assert cfg["file_mounts"]["~/study"] == "."


def test_aws_layout():
    cfg = _load("cluster.yaml")
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = [t for n, t in types.items() if n != cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # trials never land on the head
    assert len(workers) == 1
    (gpu,) = workers
    assert gpu["min_workers"] == 0 and gpu["max_workers"] == cfg["max_workers"] >= 1
    assert gpu["node_config"]["InstanceType"].startswith(("g4dn.", "g5.", "g6.", "g6e."))
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    # only Ray's default security-group rules: intra-cluster + ssh; no extra ingress
    assert "security_group" not in cfg["provider"]
    # shared storage for data and results, mounted before setup on every node
    assert any("/mnt/study" in c for c in cfg["initialization_commands"])
    # trials ask for GPUs before any GPU worker exists (study.tune.cluster.gpu_requested)
    assert "STUDY_USE_GPU=1" in cfg["head_start_ray_commands"][1]
    gpu_setup = "\n".join(cfg["worker_setup_commands"])
    assert "download.pytorch.org/whl/cpu" not in gpu_setup
    assert "torch.cuda.is_available()" in gpu_setup


def test_local_layout():
    cfg = _load("cluster.local.yaml")
    prov = cfg["provider"]
    assert prov["type"] == "local"
    # example addresses from the documentation range (RFC 5737), never real hosts
    for ip in [prov["head_ip"], *prov["worker_ips"]]:
        assert ip.startswith("192.0.2.")
    prepared = prepare_config(copy.deepcopy(cfg))
    node = prepared["available_node_types"]["local.cluster.node"]
    assert node["min_workers"] == node["max_workers"] == len(prov["worker_ips"])


COMMAND_KEYS = ("initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands")


@pytest.mark.parametrize("name", FILES)
def test_commands_are_valid_shell(name):
    """Every command parses in bash (as Ray runs them: `bash --login -c -i '...'`)."""
    cfg = _load(name)
    cmds = [c for key in COMMAND_KEYS for c in cfg.get(key, [])]
    assert cmds
    for cmd in cmds:
        r = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, f"{name}: {cmd!r}: {r.stderr}"
    bad = subprocess.run(["bash", "-n", "-c", "(echo unbalanced"], capture_output=True)
    assert bad.returncode != 0  # the check can fail
