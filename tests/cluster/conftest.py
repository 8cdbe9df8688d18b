"""Fixtures and markers for the multi-node tests (tests/cluster).

``loopback_sshd`` runs a private sshd on 127.0.0.1 (free port, keys generated in a temp
dir) inside its own PID namespace (``unshare --pid``): every process started over that
ssh -- Ray's head, ``ray stop`` -- lives and dies in the namespace. ``ray stop`` there
cannot see (and so cannot kill) Ray instances outside it, and killing the namespace's
first process at teardown ends all of them at once.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("loopback", Path(__file__).with_name("loopback.py"))
lb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lb)

SSHD = "/usr/sbin/sshd"

RELAY = """\
import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while True:
        b = os.read(0, 65536)
        if not b:
            break
        s.sendall(b)
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
threading.Thread(target=up, daemon=True).start()
while True:
    b = s.recv(65536)
    if not b:
        break
    os.write(1, b)
"""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cluster: multi-node Ray (ray up over loopback ssh, or a 2-node cluster)"
    )


@dataclass
class Sshd:
    port: int
    key: Path  # private key accepted for root
    tmp: Path  # short private temp dir (unix socket paths stay short)
    proxy_command: str  # ssh ProxyCommand reaching this sshd (Ray has no ssh port option)

    def ssh(self, cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no",
             "-o", f"UserKnownHostsFile={os.devnull}", "-o", "BatchMode=yes",
             "-o", f"ProxyCommand={self.proxy_command}", "-o", "LogLevel=ERROR",
             "root@127.0.0.1", cmd],
            capture_output=True, text=True, timeout=timeout,
        )


def _missing_tools() -> list[str]:
    tools = ["ssh", "ssh-keygen", "rsync", "unshare"]
    missing = [t for t in tools if shutil.which(t) is None]
    if not os.path.exists(SSHD):
        missing.append(SSHD)
    return missing


def _kill_namespace(unshare: subprocess.Popen) -> None:
    """SIGKILL the namespace's first process (unshare's only child): the kernel then
    kills every process in the namespace. Then reap unshare itself."""
    children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children")
    try:
        for pid in children.read_text().split():
            os.kill(int(pid), signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError):
        pass
    try:
        unshare.wait(timeout=10)
    except subprocess.TimeoutExpired:
        unshare.kill()
        unshare.wait(timeout=10)


@pytest.fixture
def ray_default_path() -> str:
    """'' or a PYTHONPATH entry giving ray[default] (dashboard, job server); skips without."""
    path = lb.dashboard_pythonpath()
    if path is None:
        pytest.skip("ray[default] (dashboard + job server) is not installed: "
                    "pip install -e '.[cluster]' (or set STUDY_TEST_RAY_DEFAULT_DEPS)")
    return path


@pytest.fixture
def loopback_sshd():
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("loopback ssh test needs root on Linux (PID namespace, root login)")
    missing = _missing_tools()
    if missing:
        pytest.skip(
            f"loopback ssh test needs {', '.join(missing)}: "
            "apt-get install -y openssh-server openssh-client rsync"
        )
    tmp = Path(tempfile.mkdtemp(prefix="slb-", dir="/tmp"))
    unshare = None
    try:
        for name in ("host", "key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(tmp / name)], check=True, timeout=30)
        shutil.copy(tmp / "key.pub", tmp / "authorized_keys")
        (tmp / "relay.py").write_text(RELAY)
        port = lb.free_port()
        (tmp / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp}/host\n"
            f"PidFile {tmp}/sshd.pid\nAuthorizedKeysFile {tmp}/authorized_keys\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
            "AllowTcpForwarding yes\nMaxSessions 50\nMaxStartups 50\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation dir
        log = open(tmp / "sshd.log", "w")
        unshare = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
             SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        if not lb.wait_port(port, 15):
            pytest.skip(f"sshd did not start: {(tmp / 'sshd.log').read_text()[-500:]}")
        sshd = Sshd(port=port, key=tmp / "key", tmp=tmp,
                    proxy_command=f"{sys.executable} {tmp}/relay.py 127.0.0.1 {port}")
        probe = sshd.ssh("echo ok", timeout=30)
        if probe.stdout.strip() != "ok":
            pytest.skip(f"ssh to the loopback sshd failed: {probe.stderr[-500:]}")
        yield sshd
    finally:
        if unshare is not None:
            _kill_namespace(unshare)
        shutil.rmtree(tmp, ignore_errors=True)
