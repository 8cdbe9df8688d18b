"""The report in a real browser: headless Chromium loads it offline, no console message,
every figure drawn, the screenshot is not blank."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from study.report import build_report
from study.report.png import decode_png

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).is_file(), reason="chromium not installed (apt-get install chromium)"),
]


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND",  # offline
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def console_messages(stderr: str) -> list[str]:
    """Chromium logs every console message and uncaught exception as ``...:CONSOLE...``;
    the report itself never logs, so any such line is a problem."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_console_detector_sees_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>console.error('boom'); missingFn();</script></body></html>")
    proc = chromium(tmp_path, "--dump-dom", bad.as_uri())
    msgs = console_messages(proc.stderr)
    assert any("boom" in m for m in msgs) and any("Uncaught" in m for m in msgs)


def test_report_loads_without_console_errors_and_renders(tmp_path, run_dir):
    page = build_report([run_dir], tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    proc = chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    img = decode_png(shot.read_bytes())[..., :3].astype(np.float32)
    assert img.shape[:2] == (2000, 1400)
    assert img.std() > 20  # not blank
    assert len(np.unique(img.reshape(-1, 3)[::97], axis=0)) > 20  # text, tables, colours
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert console_messages(dom.stderr) == []
    assert dom.stdout.count('class="plot-container plotly"') == 9  # every figure drawn
