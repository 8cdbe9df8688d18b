"""Kill the driver with SIGKILL mid-study, then ``--resume``: nothing lost, nothing redone.

What a resume guarantees (the same as tests/faults/test_kill_points.py, at several kill
points): exit code 0; every trial exactly once, none ERROR; a row recorded before the kill
unchanged; no recorded trial started again; a trial running at the kill resumes from the
checkpoint the saved state names, even when Ray had already replaced that checkpoint (the
kill landed between its checkpoint rotation and its next experiment snapshot: simulated
here); each trial's evaluations exactly once; Optuna holds every trial once, none RUNNING.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import optuna
import polars as pl
import pytest

from study.results import METRIC_KEY, read_metrics, read_trials
from study.tune.snapshot import named_checkpoints

pytestmark = pytest.mark.ray
State = optuna.trial.TrialState


def _starts(path):
    if not path.is_file():
        return []
    return [(ln.split()[0], int(ln.split()[1])) for ln in path.read_text().splitlines()]


def _running_with_checkpoint(run: Path, recorded: set[str]) -> dict[str, str]:
    """Unrecorded trials the newest saved state has RUNNING with a checkpoint on disk:
    id -> checkpoint path."""
    out = {}
    for tid, (status, path) in named_checkpoints(run / "ray" / "arterial").items():
        if status == "RUNNING" and tid not in recorded and path and \
                (Path(path) / "state.json").is_file():
            out[tid] = path
    return out


def test_sigkill_then_resume(fake_space, small_phantom, tmp_path, launch_bg):
    starts = tmp_path / "starts.log"
    space = fake_space(fake={"sleep": 0.4, "log_starts": str(starts)}, trials=6)
    args = ["--space", str(space), "--data", str(small_phantom), "--name", "k",
            "--out", str(tmp_path)]
    run = tmp_path / "k"
    with open(tmp_path / "first.log", "wb") as log:
        proc = launch_bg(args, log)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                # >= 1 trial recorded, and the saved state names a checkpoint of a running one
                done = set(read_trials(run)["trial"]) if (run / "trials.parquet").is_file() \
                    else set()
                if done and _running_with_checkpoint(run, done):
                    break
                time.sleep(0.2)
            assert proc.poll() is None, "the study ended before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)  # the driver only, mid-study
            proc.wait(timeout=30)
        finally:
            time.sleep(1.0)
            try:  # Ray's own processes of that session (started by the driver)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    before = read_trials(run)
    finished = set(before["trial"])
    n_before = len(_starts(starts))
    assert 1 <= len(finished) < 6
    # Ray's num_to_keep=1 rotation, had the kill come just after it: the checkpoint the saved
    # state names is gone, replaced by the next one
    lost = {}
    for tid, path in _running_with_checkpoint(run, finished).items():
        named = Path(path)
        index = int(named.name.rsplit("_", 1)[1])
        lost[tid] = json.loads((named / "state.json").read_text())["iteration"]
        nxt = named.with_name(f"checkpoint_{index + 1:06d}")
        shutil.rmtree(nxt, ignore_errors=True)  # maybe half-written when the worker died
        named.rename(nxt)
    assert lost, "no running trial with a checkpoint at the kill"

    with open(tmp_path / "resume.log", "wb") as log:
        proc = launch_bg(["--name", "k", "--out", str(tmp_path), "--resume"], log)
        rc = proc.wait(timeout=300)
    assert rc == 0, (tmp_path / "resume.log").read_text()[-3000:]

    trials = read_trials(run)
    assert trials.height == 6 and trials["trial"].n_unique() == 6
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}, trials.filter(
        pl.col("status") == "ERROR")["stop_reason"].to_list()
    keys = ["trial", "status", "budget", "best_val_dice", "final_val_dice", "stop_reason"]
    assert trials.filter(pl.col("trial").is_in(sorted(finished))).select(keys).sort("trial") \
        .equals(before.select(keys).sort("trial"))  # recorded rows unchanged
    # the trials whose checkpoint had been replaced resumed from it, not from scratch
    resumed = dict(_starts(starts)[n_before:])
    for tid, iteration in lost.items():
        assert resumed.get(tid) == iteration, (tid, iteration, resumed)
    # no trial the first driver had finished was started again
    again = {t for t, _ in _starts(starts)[n_before:]}
    assert not again & finished
    m = read_metrics(run)
    assert m.select(METRIC_KEY).is_duplicated().sum() == 0
    for r in trials.iter_rows(named=True):  # each trial has every evaluation it reached
        its = set(m.filter((pl.col("trial") == r["trial"]) & (pl.col("case") == "mean")
                           & (pl.col("metric") == "dice"))["iteration"])
        assert its == set(range(10, r["budget"] + 1, 10))
    study = optuna.load_study(study_name="k-arterial", storage=f"sqlite:///{run}/optuna.db")
    states = [t.state for t in study.trials]
    assert State.RUNNING not in states
    assert states.count(State.COMPLETE) + states.count(State.PRUNED) == 6
    assert (m.filter(pl.col("split") == "test").height > 0)
    assert '"resumes": 1' in (run / "study.json").read_text()
