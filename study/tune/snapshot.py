"""Is Ray's saved experiment state of a phase usable by ``Tuner.restore``? If not, set it aside.

A driver killed while Ray copies its experiment snapshot into the run's storage can leave an
empty or truncated file there (``searcher-state-*.pkl``, ``experiment_state-*.json``, ...);
``Tuner.restore`` then fails with "Failed to restore the run state" on every later resume.
Ray reads ``tuner.pkl`` and, of each kind below, the file with the greatest name (the newest
session), so only those are checked.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import ray.cloudpickle as cloudpickle

from study.io import write_text_atomic
from study.results import METRICS_FILE, read_metrics, read_trials, write_parquet_atomic

STATE_KINDS = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl",
               "callback-states-*.pkl", "basic-variant-state-*.json")
#: where unusable state is moved (kept for inspection, never read again)
ASIDE_DIR = ".unusable-state"
#: how many trials of the phase were recorded before the current Tuner started
CARRIED_FILE = ".carried-trials.json"


def _readable(path: Path) -> bool:
    try:
        data = path.read_bytes()
        if not data:
            return False
    except OSError:
        return False
    # experiment_state-*.json is JSON; the others are pickles whatever their suffix
    for load in (json.loads, cloudpickle.loads):
        try:
            load(data)
            return True
        except Exception:  # truncated or not this format
            pass
    return False


def broken_state(exp_dir: Path) -> list[str]:
    """Names of the state files ``Tuner.restore`` would read that cannot be read back."""
    bad = [] if _readable(exp_dir / "tuner.pkl") else ["tuner.pkl"]
    for pattern in STATE_KINDS:
        files = sorted(exp_dir.glob(pattern), key=lambda p: p.name)
        if files and not _readable(files[-1]):
            bad.append(files[-1].name)
    if not list(exp_dir.glob(STATE_KINDS[0])):
        bad.append(STATE_KINDS[0])
    return bad


def set_aside(exp_dir: Path) -> Path:
    """Move every Ray state file of the experiment into ``ASIDE_DIR/<time>``; returns it."""
    dest = exp_dir / ASIDE_DIR / time.strftime("%Y%m%d-%H%M%S")
    dest.mkdir(parents=True, exist_ok=True)
    for pattern in ("tuner.pkl", *STATE_KINDS, "tmp-*", ".*-tmp-*"):
        for f in exp_dir.glob(pattern):
            if f.is_file():
                f.replace(dest / f.name)
    return dest


def carried(exp_dir: Path) -> int:
    """Trials recorded before the current Tuner of the phase started (0 for the first)."""
    path = exp_dir / CARRIED_FILE
    if not path.is_file():
        return 0
    return int(json.loads(path.read_text(encoding="utf-8"))["trials"])


def write_carried(exp_dir: Path, n: int) -> None:
    exp_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(exp_dir / CARRIED_FILE, json.dumps({"trials": int(n)}))


def recorded_trials(run_dir: Path, study: str, phase: str) -> set[str]:
    """Ids of the phase's trials with a row in ``trials.parquet`` (they finished)."""
    t = read_trials(run_dir)
    return set(t.filter((pl.col("study") == study) & (pl.col("phase") == phase))["trial"])


def drop_unrecorded_metrics(run_dir: Path, study: str, phase: str, keep: set[str]) -> int:
    """Remove the phase's metric rows of trials not in ``keep`` (never finished); count."""
    if not (run_dir / METRICS_FILE).is_file():
        return 0
    m = read_metrics(run_dir)
    gone = ((pl.col("study") == study) & (pl.col("phase") == phase)
            & ~pl.col("trial").is_in(sorted(keep)))
    n = m.filter(gone).height
    if n:
        write_parquet_atomic(m.filter(~gone), run_dir / METRICS_FILE)
    return n
