"""Turns cluster.local.yaml into a one-node cluster on 127.0.0.1 and drives the Ray
cluster CLI (`ray up`, `ray dashboard`, `ray job submit`, `ray down`) against it.

Loaded by test_loopback.py by path (pytest's importlib mode has no sibling imports).
"""

from __future__ import annotations

import copy
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from getpass import getuser
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
BOOTSTRAP = [Path.home() / "ray_bootstrap_config.yaml", Path.home() / "ray_bootstrap_key.pem"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free ports (held open together so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_port(port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.2)
    return False


def dashboard_pythonpath() -> str | None:
    """'' when this venv has ray[default]'s dashboard packages; else the directory named by
    STUDY_TEST_RAY_DEFAULT_DEPS if it has them; else None (the test is skipped)."""
    import importlib.util

    if all(importlib.util.find_spec(m) for m in ("aiohttp", "aiohttp_cors", "grpc", "opencensus")):
        return ""
    extra = os.environ.get("STUDY_TEST_RAY_DEFAULT_DEPS", "")
    if extra and (Path(extra) / "aiohttp").is_dir():
        return extra
    return None


def loopback_config(template: dict, *, name: str, sshd, ports: dict, pythonpath: str,
                    cache: str) -> dict:
    """cluster.local.yaml with head 127.0.0.1 reached through the test sshd, no workers,
    everything (code, token, Ray's temp dir, results) under the sshd's temp dir, free
    ports instead of Ray's fixed defaults, and this machine's venv instead of a fresh one
    (the template's setup commands pip-install from the network)."""
    cfg = copy.deepcopy(template)
    tmp, remote = sshd.tmp, sshd.tmp / "remote"
    cfg["cluster_name"] = name
    cfg["provider"] = {"type": "local", "head_ip": "127.0.0.1", "worker_ips": []}
    cfg["max_workers"] = 0
    cfg["auth"] = {"ssh_user": "root", "ssh_private_key": str(sshd.key),
                   "ssh_proxy_command": sshd.proxy_command}
    assert set(cfg["file_mounts"]) == {"~/study", "~/.ray/auth_token"}
    cfg["file_mounts"] = {str(remote / "study"): str(ROOT),
                          str(remote / "auth_token"): str(tmp / "auth_token")}
    cfg["setup_commands"] = [f"{VENV_BIN}/python -c 'import ray, torch, study'"]
    env = (f"export PATH={VENV_BIN}:$PATH RAY_AUTH_TOKEN_PATH={remote}/auth_token"
           f" STUDY_CACHE={cache}" + (f" PYTHONPATH={pythonpath}" if pythonpath else ""))
    head = cfg["head_start_ray_commands"]
    assert head[0] == "ray stop" and "--port=6379" in head[1]
    assert "STUDY_USE_GPU=1" in head[1]
    start = head[1].replace("--port=6379", f"--port={ports['gcs']}")
    start = start.replace("STUDY_USE_GPU=1", "STUDY_USE_GPU=0") + (  # no GPU here
        f" --dashboard-port={ports['dashboard']} --ray-client-server-port={ports['client']}"
        f" --dashboard-agent-listen-port={ports['agent']}"
        f" --dashboard-agent-grpc-port={ports['agent_grpc']}"
        f" --runtime-env-agent-port={ports['runtime_env']}"
        f" --metrics-export-port={ports['metrics']} --temp-dir={tmp}/r"
        " --object-store-memory=200000000"
    )
    # `ray stop` runs inside the sshd's PID namespace: it only sees this cluster's processes
    cfg["head_start_ray_commands"] = [f"{env}; ray stop", f"{env}; {start}"]
    cfg["worker_start_ray_commands"] = []
    return cfg


def ray_env(token_path: Path, pythonpath: str) -> dict:
    """Environment of the CLI on 'your machine': token auth on, token from token_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path),
               RAY_USAGE_STATS_ENABLED="0")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run(args: list[str], *, env: dict, timeout: float, log: Path) -> subprocess.CompletedProcess:
    """Run a CLI in its own process group; on timeout kill that group and raise.
    Output is appended to `log`; the result's stdout holds this command's part."""
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(args)}\n")
        out.flush()
        start = out.tell()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    with open(log) as f:
        f.seek(start)
        return subprocess.CompletedProcess(args, rc, stdout=f.read())


def start_tunnel(cfg_path: Path, *, local: int, remote: int, env: dict, log: Path):
    out = open(log, "a")
    proc = subprocess.Popen(
        [RAY, "dashboard", str(cfg_path), "--port", str(local), "--remote-port", str(remote),
         "--no-config-cache"],
        env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    out.close()
    return proc


def stop_group(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


def save_bootstrap() -> dict:
    """`ray up` writes ~/ray_bootstrap_{config.yaml,key.pem} on the head (= this machine)."""
    return {p: (p.read_bytes() if p.exists() else None) for p in BOOTSTRAP}


def restore_bootstrap(saved: dict) -> None:
    for p, data in saved.items():
        if data is None:
            p.unlink(missing_ok=True)
        else:
            p.write_bytes(data)


def cleanup_local_state(name: str) -> None:
    """Files the cluster launcher keeps for cluster `name` (names are unique per run)."""
    from ray.autoscaler._private.local.config import get_lock_path, get_state_path

    for p in (get_state_path(name), get_lock_path(name)):
        Path(p).unlink(missing_ok=True)
    user = hashlib.sha256(getuser().encode()).hexdigest()[:10]
    cluster = hashlib.sha256(name.encode()).hexdigest()[:10]
    control = Path(f"/tmp/ray_ssh_{user}/{cluster}")
    if control.is_dir():
        for sock in control.iterdir():
            sock.unlink(missing_ok=True)
        control.rmdir()


def wait_for(pred, timeout: float, step: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


def load_template() -> dict:
    return yaml.safe_load((ROOT / "cluster.local.yaml").read_text())
