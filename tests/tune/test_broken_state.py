"""A Ray state file left empty/truncated by a driver killed mid-save: ``--resume`` still works."""

from __future__ import annotations

import json
import os
import signal
import time

import optuna
import polars as pl
import pytest

from study.results import read_metrics, read_trials
from study.tune import snapshot
from study.tune.searcher import finished_count

State = optuna.trial.TrialState


# ----------------------------------------------------------------- the checks, no Ray run
def _state(tmp_path, searcher: bytes):
    import ray.cloudpickle as cloudpickle

    (tmp_path / "tuner.pkl").write_bytes(cloudpickle.dumps({"a": 1}))
    (tmp_path / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (tmp_path / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(cloudpickle.dumps([1]))
    (tmp_path / "searcher-state-2026-01-02_00-00-00.pkl").write_bytes(searcher)
    return tmp_path


def test_readable_state_is_not_broken(tmp_path):
    import ray.cloudpickle as cloudpickle

    assert snapshot.broken_state(_state(tmp_path, cloudpickle.dumps({"x": 2}))) == []


@pytest.mark.parametrize("cut", [0, 5])
def test_empty_or_truncated_newest_searcher_state_is_broken(tmp_path, cut):
    import ray.cloudpickle as cloudpickle

    data = cloudpickle.dumps({"x": list(range(50))})[:cut]
    exp = _state(tmp_path, data)
    assert snapshot.broken_state(exp) == ["searcher-state-2026-01-02_00-00-00.pkl"]
    aside = snapshot.set_aside(exp)
    assert sorted(p.name for p in exp.iterdir() if p.is_file()) == []
    assert len(list(aside.iterdir())) == 4


def test_missing_experiment_state_or_bad_json_is_broken(tmp_path):
    exp = _state(tmp_path, b"\x80")
    (exp / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_da')
    assert set(snapshot.broken_state(exp)) == {"experiment_state-2026-01-01_00-00-00.json",
                                               "searcher-state-2026-01-02_00-00-00.pkl"}
    snapshot.set_aside(exp)
    assert "experiment_state-*.json" in snapshot.broken_state(exp)
    assert "tuner.pkl" in snapshot.broken_state(exp)


def test_carried_count_round_trips(tmp_path):
    assert snapshot.carried(tmp_path) == 0
    snapshot.write_carried(tmp_path / "exp", 4)
    assert snapshot.carried(tmp_path / "exp") == 4


# ----------------------------------------------------------------- a killed study resumed
def _starts(path):
    if not path.is_file():
        return []
    return [ln.split()[0] for ln in path.read_text().splitlines()]


def _truncate_searcher_state(exp) -> int:
    files = list(exp.glob("searcher-state-*.pkl"))
    for f in files:
        f.write_bytes(b"")
    return len(files)


@pytest.mark.ray
def test_resume_after_truncated_searcher_state(fake_space, small_phantom, tmp_path, launch_bg):
    starts = tmp_path / "starts.log"
    space = fake_space(fake={"sleep": 0.4, "log_starts": str(starts)}, trials=6)
    args = ["--space", str(space), "--data", str(small_phantom), "--name", "k",
            "--out", str(tmp_path)]
    run, exp = tmp_path / "k", tmp_path / "k" / "ray" / "arterial"
    with open(tmp_path / "first.log", "wb") as log:
        proc = launch_bg(args, log)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                if (run / "trials.parquet").is_file() and read_trials(run).height >= 1 \
                        and list(exp.glob("searcher-state-*.pkl")):
                    break
                time.sleep(0.2)
            assert proc.poll() is None, "the study ended before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            time.sleep(1.0)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finished = set(read_trials(run)["trial"])
    n_before = len(_starts(starts))
    assert 1 <= len(finished) < 6
    assert snapshot.broken_state(exp) == []  # what Ray saved reads back
    assert _truncate_searcher_state(exp) >= 1  # as a kill during Ray's copy leaves it
    assert [n.split("-")[0] for n in snapshot.broken_state(exp)] == ["searcher"]
    url = f"sqlite:///{run}/optuna.db"
    # Tune tells Optuna before the recorder writes the row: a kill in between leaves a
    # trial Optuna scored and the tables never saw (it is not run again; a new one is)
    scored_before = finished_count(url, "k-arterial")
    assert len(finished) <= scored_before <= len(finished) + 2

    with open(tmp_path / "resume.log", "wb") as log:
        proc = launch_bg(["--name", "k", "--out", str(tmp_path), "--resume"], log)
        rc = proc.wait(timeout=300)
    out = (tmp_path / "resume.log").read_text()
    assert rc == 0, out[-3000:]
    said = [ln for ln in out.splitlines() if "saved state is unusable" in ln]
    assert len(said) == 1 and "searcher-state-" in said[0], said
    assert list((exp / snapshot.ASIDE_DIR).rglob("searcher-state-*.pkl"))

    trials = read_trials(run)
    assert trials.height == 6 and trials["trial"].n_unique() == 6
    assert finished <= set(trials["trial"])
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    again = set(_starts(starts)[n_before:])
    assert not again & finished  # no finished trial ran again
    m = read_metrics(run).filter(pl.col("split") == "val")
    assert set(m["trial"]) == set(trials["trial"])  # no rows of the trials that were lost
    study = optuna.load_study(study_name="k-arterial", storage=url)
    states = [t.state for t in study.trials]
    assert State.RUNNING not in states
    # the finished trials Optuna had, plus one per trial the new Tuner ran
    assert states.count(State.COMPLETE) + states.count(State.PRUNED) \
        == scored_before + 6 - len(finished)
    assert ("ended after the last save" in said[0]) == (scored_before > len(finished))
    assert json.loads((exp / snapshot.CARRIED_FILE).read_text()) == {"trials": len(finished)}

    # killed again after every trial was recorded, before the phase was marked done, and
    # the new Tuner's state truncated too: the phase is complete, nothing runs again
    (exp / ".phase-done").unlink()
    assert _truncate_searcher_state(exp) >= 1
    n_starts = len(_starts(starts))
    with open(tmp_path / "resume2.log", "wb") as log:
        proc = launch_bg(["--name", "k", "--out", str(tmp_path), "--resume"], log)
        rc = proc.wait(timeout=300)
    assert rc == 0, (tmp_path / "resume2.log").read_text()[-3000:]
    assert len(_starts(starts)) == n_starts
    assert (exp / ".phase-done").is_file()
    assert read_trials(run).sort("trial").equals(trials.sort("trial"))
