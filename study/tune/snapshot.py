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
    # experiment_state-*.json is JSON; the others are pickles whatever their suffix, checked
    # by walking their opcodes (pickletools: a truncated stream fails, nothing is executed)
    for load in (json.loads, _pickle_ops):
        try:
            load(data)
            return True
        except Exception:  # truncated or not this format
            pass
    return False


def _pickle_ops(data: bytes) -> None:
    """Raise unless ``data`` is one complete pickle stream (never unpickles it)."""
    import pickletools

    ops = list(pickletools.genops(data))
    if not ops or ops[-1][0].name != "STOP":
        raise ValueError("no complete pickle")


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


def _checkpoint_index(name: str) -> int:
    """``checkpoint_000012`` -> 12 (-1 for any other name)."""
    head, _, num = name.rpartition("_")
    return int(num) if head == "checkpoint" and num.isdigit() else -1


def named_checkpoints(exp_dir: Path) -> dict[str, tuple[str, str | None]]:
    """Trial id -> (status, checkpoint path) as the newest saved experiment state has them:
    the checkpoint ``Tuner.restore`` would resume that trial from (None: none yet).
    Empty when there is no readable state."""
    files = sorted(Path(exp_dir).glob(STATE_KINDS[0]), key=lambda p: p.name)
    if not files:
        return {}
    try:
        data = json.loads(files[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for trial_json, meta_json in data.get("trial_data") or []:
        t, meta = json.loads(trial_json), json.loads(meta_json)
        path = None
        manager = meta.get("checkpoint_manager")
        if isinstance(manager, dict) and manager.get("value"):
            path = _latest_checkpoint_path(manager["value"])
        out[str(t["trial_id"])] = (str(t.get("status")), path)
    return out


def _latest_checkpoint_path(hex_pickle: str) -> str | None:
    """The newest ``checkpoint_NNNNNN`` path named in Ray's checkpoint manager (cloudpickled,
    hex-encoded) without unpickling it: its string constants are read by walking the
    opcodes (pickletools executes nothing). Checkpoint numbers only grow, so the highest
    is the manager's latest result. None for an unreadable value or no checkpoint."""
    import pickletools

    try:
        names = [arg for _, arg, _ in pickletools.genops(bytes.fromhex(hex_pickle))
                 if isinstance(arg, str) and _checkpoint_index(Path(arg).name) >= 0]
    except Exception:  # not hex, or not a complete pickle: nothing to say about this trial
        return None
    return max(names, key=lambda n: _checkpoint_index(Path(n).name), default=None)


def repair_checkpoints(exp_dir: Path) -> list[str]:
    """Give back to each unfinished trial the checkpoint its saved state names, if Ray
    deleted it; returns ``"TRIAL: NEWER -> NAMED"`` per repair.

    With ``CheckpointConfig(num_to_keep=1)`` Ray deletes a trial's checkpoint N as soon as
    it registers N+1, and saves the experiment state (which names the latest checkpoint of
    each trial) only afterwards. A driver killed in between leaves a state that names a
    deleted checkpoint: ``Tuner.restore`` would then fail that trial ("Could not recover from
    checkpoint as it does not exist on storage anymore"). The checkpoint that replaced it
    (the oldest newer one of the trial, complete: Ray had registered it) is moved to the
    name the state uses, so the trial resumes from its latest checkpoint.
    """
    fixed = []
    for trial_id, (status, path) in named_checkpoints(exp_dir).items():
        if status in ("TERMINATED", "ERROR") or not path:
            continue
        named = Path(path)
        if named.exists() or not named.parent.is_dir():
            continue
        index = _checkpoint_index(named.name)
        newer = sorted((p for p in named.parent.glob("checkpoint_*")
                        if p.is_dir() and _checkpoint_index(p.name) > index),
                       key=lambda p: _checkpoint_index(p.name))
        if index < 0 or not newer:
            continue
        newer[0].rename(named)
        fixed.append(f"{trial_id}: {newer[0].name} -> {named.name}")
    return fixed
