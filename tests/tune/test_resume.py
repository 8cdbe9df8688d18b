"""Kill the driver with SIGKILL mid-study, then ``--resume``: nothing lost, nothing redone."""

from __future__ import annotations

import os
import signal
import time

import optuna
import polars as pl
import pytest

from study.results import METRIC_KEY, read_metrics, read_trials

pytestmark = pytest.mark.ray
State = optuna.trial.TrialState


def _starts(path):
    if not path.is_file():
        return []
    return [(ln.split()[0], int(ln.split()[1])) for ln in path.read_text().splitlines()]


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
                if (run / "trials.parquet").is_file() and read_trials(run).height >= 1:
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
    finished = set(read_trials(run)["trial"])
    n_before = len(_starts(starts))
    assert 1 <= len(finished) < 6

    with open(tmp_path / "resume.log", "wb") as log:
        proc = launch_bg(["--name", "k", "--out", str(tmp_path), "--resume"], log)
        rc = proc.wait(timeout=300)
    assert rc == 0, (tmp_path / "resume.log").read_text()[-3000:]

    trials = read_trials(run)
    assert trials.height == 6 and trials["trial"].n_unique() == 6
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}
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
