"""Trials that fail in every way a trial can, in a real `python -m study.launch` subprocess.

The injector (``injector/sitecustomize.py``, loaded by the driver and every Ray worker)
makes trial 1 raise, trial 2 run out of (GPU) memory, trial 3 be SIGKILLed like the OOM
killer does, trial 4 report NaN validation Dice; trials 5 and 6 are healthy. The study must
finish (exit 0), record each failure with its reason, choose its best among healthy trials,
evaluate that one on test and build the report. A second study whose every trial fails
must still finish and give a report that says there are no results.
(tests/tune covers a fake trainable's own crash / NaN-loss options in-process.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import polars as pl
import pytest

pytestmark = pytest.mark.ray

PLAN = {1: "raise", 2: "oom", 3: "killed", 4: "nan_metric"}
HEALTHY = (5, 6)


def _launch(space, data, out, name, env, run_module):
    return run_module("study.launch", "--space", space, "--data", data, "--name", name,
                      "--out", out, "--cpus", "2", env=env, timeout=480)


def _index_of(run: Path) -> dict[str, int]:
    """Ray trial id -> trial counter, from the trial folder names trial_NNNN_<id>."""
    out = {}
    for d in (run / "ray").rglob("trial_*_*"):
        m = re.fullmatch(r"trial_(\d+)_([0-9a-f]+)", d.name)
        if m and d.is_dir():
            out[m.group(2)] = int(m.group(1))
    return out


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, small_phantom, fault_space, fault_env, run_module):
    tmp = tmp_path_factory.mktemp("trial_faults")
    space = fault_space(tmp / "faulty.yaml", trials=6, iterations=30, eval_every=10,
                        grace=30, max_concurrent=2)
    log = tmp / "injected.log"
    proc = _launch(space, small_phantom, tmp / "runs", "f", fault_env(PLAN, log), run_module)
    run = tmp / "runs" / "f"
    trials = pl.read_parquet(run / "trials.parquet") if (run / "trials.parquet").exists() else None
    by_index = {}
    if trials is not None:
        idx = _index_of(run)
        by_index = {idx[r["trial"]]: r for r in trials.iter_rows(named=True)}
    return proc, run, log, trials, by_index


def test_every_fault_was_injected_and_the_study_finished(faulty):
    proc, run, log, trials, _ = faulty
    assert proc.returncode == 0, proc.stderr[-3000:]
    injected = sorted(log.read_text().split("\n")[:-1])
    assert injected == sorted(f"{i} {f}" for i, f in PLAN.items())
    assert "== study f: finished" in proc.stdout
    meta = json.loads((run / "study.json").read_text())
    assert meta["finished"]
    assert trials.height == 6 and trials["trial"].n_unique() == 6
    assert (run / "report.html").is_file()


@pytest.mark.parametrize("index, reason", [
    (1, "RuntimeError: injected fault in trial 1"),
    (2, "OutOfMemoryError: CUDA out of memory"),
    (3, "worker process has died"),
])
def test_failed_trial_recorded_with_reason(faulty, index, reason):
    proc, run, _, _, by_index = faulty
    row = by_index[index]
    assert row["status"] == "ERROR"
    assert reason in row["stop_reason"]
    assert row["budget"] == 10  # the first evaluation was recorded, the second failed
    assert f"failed {row['trial']}: " in proc.stdout  # the closing note names it


def test_nan_metric_trial_recorded_as_failed(faulty):
    _, _, _, _, by_index = faulty
    row = by_index[4]
    assert row["status"] == "ERROR" and "nan" in row["stop_reason"].lower()


def test_healthy_trials_and_best_choice_unaffected(faulty):
    proc, run, _, trials, by_index = faulty
    for i in HEALTHY:
        assert by_index[i]["status"] == "TERMINATED" and by_index[i]["budget"] == 30
    healthy_ids = {by_index[i]["trial"] for i in HEALTHY}
    test = pl.read_parquet(run / "metrics.parquet").filter(pl.col("split") == "test")
    assert test.height > 0 and set(test["trial"]) <= healthy_ids
    # NaN never reaches the results as a value of the chosen trial
    assert test["value"].is_nan().sum() == 0


def test_optuna_storage_marks_the_failures(faulty):
    _, run, _, trials, by_index = faulty
    study = optuna.load_study(study_name="f-arterial", storage=f"sqlite:///{run}/optuna.db")
    State = optuna.trial.TrialState
    states = [t.state for t in study.trials]
    assert len(states) == 6
    assert trials.filter(pl.col("status") == "ERROR").height == len(PLAN)
    assert states.count(State.FAIL) == len(PLAN)  # 4: raise, oom, killed, NaN metric
    assert states.count(State.COMPLETE) == len(HEALTHY)  # 2, none PRUNED (grace = budget)
    # trial by trial (matched by the sampled lr): FAIL exactly where the row says ERROR
    by_lr = {t.params["lr"]: t for t in study.trials}
    for i, row in by_index.items():
        t = by_lr[json.loads(row["config"])["lr"]]
        assert t.state == (State.FAIL if i in PLAN else State.COMPLETE), (i, t.state)


# ----------------------------------------------------------------- zero finished trials


@pytest.fixture(scope="module")
def all_failed(tmp_path_factory, small_phantom, fault_space, fault_env, run_module):
    tmp = tmp_path_factory.mktemp("all_failed")
    space = fault_space(tmp / "doomed.yaml", trials=2, iterations=20, eval_every=10,
                        grace=20, max_concurrent=2)
    proc = _launch(space, small_phantom, tmp / "runs", "z",
                   fault_env({1: "raise", 2: "oom"}), run_module)
    return proc, tmp / "runs" / "z", tmp


def test_study_with_zero_finished_trials_finishes(all_failed):
    proc, run, _ = all_failed
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = pl.read_parquet(run / "trials.parquet")
    assert trials.height == 2 and set(trials["status"]) == {"ERROR"}
    assert "0 full budget" in proc.stdout and "2 failed" in proc.stdout
    assert "(no test results)" in proc.stdout
    assert not (run / "predictions").exists() or not any((run / "predictions").rglob("*.nii.gz"))


def test_report_of_zero_finished_trials(all_failed, run_module):
    _, run, tmp = all_failed
    out = tmp / "report" / "zero.html"
    proc = run_module("study.report", run, "-o", out, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    html = re.sub(r"<script[^>]*>.*?</script>", "", out.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    assert "no test results" in text.lower()
    assert "injected fault in trial 1" in text  # the failures and their reasons are shown
