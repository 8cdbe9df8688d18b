"""Loopback smoke test of the documented cluster workflow: an sshd on 127.0.0.1, the
local-provider file pointed at it, `ray up -y`, `ray dashboard` (ssh tunnel),
`ray job submit` of a smoke study, results checked, `ray down -y`.

Only 127.0.0.1 is touched; every step has a timeout; teardown kills the sshd's PID
namespace, which ends every process the test started over ssh.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

_spec = importlib.util.spec_from_file_location("loopback", Path(__file__).with_name("loopback.py"))
lb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lb)

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

PORTS = ("gcs", "dashboard", "client", "agent", "agent_grpc", "runtime_env", "metrics", "local")


def _token(path: Path) -> str:
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    token = generate_new_authentication_token()
    path.write_text(token)
    path.chmod(0o600)
    return token


def test_ray_up_job_submit_down_on_loopback(ray_default_path, loopback_sshd, small_phantom,
                                            request):
    pythonpath = ray_default_path
    sshd = loopback_sshd
    ports = dict(zip(PORTS, lb.free_ports(len(PORTS)), strict=True))
    name = f"study-loopback-{uuid.uuid4().hex[:8]}"
    token_path = sshd.tmp / "auth_token"
    _token(token_path)
    cache = os.environ.get("STUDY_CACHE") or str(sshd.tmp / "cache")  # shared with the session
    cfg = lb.loopback_config(lb.load_template(), name=name, sshd=sshd, ports=ports,
                             pythonpath=pythonpath, cache=cache)
    cfg_path = sshd.tmp / "cluster.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log = sshd.tmp / "cli.log"
    env = lb.ray_env(token_path, pythonpath)
    saved = lb.save_bootstrap()
    tunnel = None
    timings = {}
    try:
        t0 = time.monotonic()
        r = lb.run([lb.RAY, "up", "-y", str(cfg_path), "--no-config-cache",
                    "--log-style", "record"], env=env, timeout=300, log=log)
        assert r.returncode == 0, log.read_text()[-4000:]
        timings["ray_up_s"] = time.monotonic() - t0

        # the code arrived through file_mounts, the token too
        remote = sshd.tmp / "remote"
        assert (remote / "study" / "cluster.local.yaml").is_file()
        assert (remote / "study" / "study" / "launch.py").is_file()
        for skipped in (".venv", ".git"):  # rsync_exclude / rsync_filter of the template
            assert not (remote / "study" / skipped).exists(), skipped
        assert (remote / "auth_token").read_text() == token_path.read_text()

        # dashboard bound to 127.0.0.1 on the head, reached through `ray dashboard` (ssh -L)
        t1 = time.monotonic()
        tunnel = lb.start_tunnel(cfg_path, local=ports["local"], remote=ports["dashboard"],
                                 env=env, log=log)
        assert lb.wait_port(ports["local"], 60), log.read_text()[-3000:]
        address = f"http://127.0.0.1:{ports['local']}"

        # token auth: the job API refuses a request without the token, accepts it with
        assert _http_status(f"{address}/api/jobs/") == 401
        assert _http_status(f"{address}/api/jobs/", token_path.read_text().strip()) == 200

        out = remote / "runs"
        entry = _entrypoint(remote, out, small_phantom)
        r = lb.run([lb.RAY, "job", "submit", "--address", address,
                    "--submission-id", f"{name}-smoke", "--", "bash", "-c", entry],
                   env=env, timeout=300, log=log)
        timings["job_s"] = time.monotonic() - t1
        assert r.returncode == 0, log.read_text()[-6000:]
        _check_results(out)

        # following a study: job logs through the tunnel, `ray status` on the head
        r = lb.run([lb.RAY, "job", "logs", "--address", address, f"{name}-smoke"],
                   env=env, timeout=60, log=log)
        assert r.returncode == 0 and "== study loop: finished" in r.stdout, r.stdout[-2000:]
        status = (f"export PATH={lb.VENV_BIN}:$PATH RAY_AUTH_MODE=token "
                  f"RAY_AUTH_TOKEN_PATH={remote}/auth_token; "
                  f"ray status --address 127.0.0.1:{ports['gcs']}")
        r = lb.run([lb.RAY, "exec", str(cfg_path), status, "--no-config-cache"],
                   env=env, timeout=60, log=log)
        assert r.returncode == 0 and "Resources" in r.stdout, r.stdout[-2000:]
    finally:
        t2 = time.monotonic()
        lb.stop_group(tunnel)
        try:  # also after a failed or timed-out `ray up`: harmless, and it cleans up
            lb.run([lb.RAY, "down", "-y", str(cfg_path), "--log-style", "record"],
                   env=env, timeout=120, log=log)
        finally:
            lb.restore_bootstrap(saved)
            lb.cleanup_local_state(name)
        timings["ray_down_s"] = time.monotonic() - t2
        timings = {k: round(v, 1) for k, v in timings.items()}
        print("loopback timings:", json.dumps(timings))
        request.node.user_properties.append(("loopback_timings", timings))
        if os.environ.get("STUDY_TEST_KEEP_LOG"):
            Path(os.environ["STUDY_TEST_KEEP_LOG"]).write_text(log.read_text())


def _http_status(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def _entrypoint(remote: Path, out: Path, data: Path) -> str:
    """What a user submits (docs/CLUSTER.md), with this machine's venv python."""
    return (f"cd {remote}/study && {lb.VENV_BIN}/python -m study.launch --space smoke "
            f"--budget smoke --samples 2 --data {data} --address auto --out {out} "
            "--name loop")


def _check_results(out: Path) -> None:
    import polars as pl

    from study.results import METRIC_SCHEMA, TRIAL_SCHEMA

    run = out / "loop"
    trials = pl.read_parquet(run / "trials.parquet")
    metrics = pl.read_parquet(run / "metrics.parquet")
    assert dict(trials.schema) == TRIAL_SCHEMA and dict(metrics.schema) == METRIC_SCHEMA
    assert trials.height == 2
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    assert metrics.filter(pl.col("split") == "test").height > 0
    meta = json.loads((run / "study.json").read_text())
    assert meta["name"] == "loop"
    assert "<html" in (run / "report.html").read_text()[:2000].lower()
    # the driver ran from the synced copy of the code, not from this checkout
    assert meta["args"]["space"] == str(out.parent / "study" / "search_spaces" / "smoke.yaml")
