"""SIGKILL the study driver at several points of one two-phase study, ``--resume`` each time.

Kill points, one per invocation (then ``--resume``):

A. trials running, none finished yet (first phase);
B. some trials of the first phase finished, others running;
C. first phase done, second phase under way;
D. every trial finished: during the test evaluation / closing;
then a last ``--resume`` runs to the end (or, if a point was passed before the kill landed,
the next one is taken from there).

After every kill: the result tables still read (atomic writes), hold each trial at most
once, and every row recorded before the kill is unchanged (status, budget, scores, reason).
Every invocation that is not killed exits 0. At the end: every trial of both phases exactly
once in the parquet, none ERROR (the fake trainable never fails: an ERROR row could only
come from the kill), each with every evaluation it reached exactly once, and once as
COMPLETE/PRUNED in the Optuna storage (no RUNNING leftovers; a trial asked for just before
a kill and never run is FAIL); no trial that had been recorded before a kill started again.
``STUDY_KILL_REPEATS=N`` runs the whole sequence N times (default 1).
(tests/tune/test_resume.py covers one kill point; this covers several in a row.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import polars as pl
import pytest

from study.results import METRIC_KEY, read_metrics, read_trials

pytestmark = [pytest.mark.ray, pytest.mark.slow]
State = optuna.trial.TrialState
TRIALS = 4
PHASES = ("arterial", "portal")
KEYS = ("status", "budget", "best_val_dice", "final_val_dice", "stop_reason", "config")


def _popen(args, log):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "1",
           "RAY_USAGE_STATS_ENABLED": "0"}
    return subprocess.Popen([sys.executable, "-m", "study.launch", *map(str, args), "--cpus", "2",
                             "--no-report"], stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _trials(run: Path) -> pl.DataFrame:
    try:
        return read_trials(run) if (run / "trials.parquet").is_file() else pl.DataFrame()
    except Exception:  # noqa: BLE001 - a half-written table is exactly what must not happen
        raise AssertionError("trials.parquet unreadable after a kill") from None


def _starts(path: Path) -> list[tuple[str, int]]:
    if not path.is_file():
        return []
    return [(a, int(b)) for a, b in (ln.split() for ln in path.read_text().splitlines() if ln)]


def _count(run: Path, phase: str | None = None) -> int:
    """Recorded trials (of a phase) while the driver runs; -1 when the table cannot be read
    at this instant (a reader racing the writer's rename: not a corrupt file)."""
    try:
        t = _trials(run)
    except AssertionError:
        return -1
    if t.height == 0:
        return 0
    return t.height if phase is None else t.filter(pl.col("phase") == phase).height


def _none_finished(run, starts):
    return len(_starts(starts)) >= 1 and _count(run) == 0


def _first_phase_part_done(run, starts):
    return 1 <= _count(run, "arterial") < TRIALS


def _second_phase_under_way(run, starts):
    portal = run / "ray" / "portal"
    return _count(run, "arterial") == TRIALS and portal.is_dir() and \
        any(portal.glob("trial_*"))


def _all_done(run, starts):
    return _count(run) == TRIALS * len(PHASES)


POINTS = {
    "A: trials running, none finished": _none_finished,
    "B: first phase part-done": _first_phase_part_done,
    "C: second phase under way": _second_phase_under_way,
    "D: all trials done, closing": _all_done,
}


def _check_finished(rc: int, log_path: Path) -> None:
    assert rc == 0, log_path.read_text(errors="replace")[-3000:]


def _run_until(args, run, starts, cond, log_path, timeout=240) -> str:
    """Start the driver; SIGKILL it once ``cond`` holds. Returns 'killed' or 'finished'."""
    with open(log_path, "wb") as log:
        proc = _popen(args, log)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    _check_finished(proc.returncode, log_path)
                    return "finished"
                if cond(run, starts):
                    os.kill(proc.pid, signal.SIGKILL)  # the driver only
                    proc.wait(timeout=30)
                    return "killed"
                time.sleep(0.05)
            raise AssertionError(f"no kill point reached in {timeout} s: "
                                 f"{log_path.read_text()[-2000:]}")
        finally:
            time.sleep(0.5)
            try:  # then the Ray processes that driver started (its session)
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


@pytest.mark.parametrize("repeat", range(int(os.environ.get("STUDY_KILL_REPEATS", "1"))))
def test_sigkill_at_several_points_then_resume(small_phantom, fault_space, tmp_path, repeat):
    starts = tmp_path / "starts.log"
    space = fault_space(tmp_path / "kill.yaml", trials=TRIALS, iterations=30, eval_every=10,
                        grace=10, max_concurrent=2, phases=PHASES,
                        fake={"sleep": 0.3, "log_starts": str(starts)})
    run = tmp_path / "runs" / "k"
    first = ["--space", space, "--data", small_phantom, "--name", "k", "--out", tmp_path / "runs"]
    resume = ["--name", "k", "--out", tmp_path / "runs", "--resume"]
    outcomes: dict[str, str] = {}
    known: dict[str, dict] = {}  # trial -> its row when first seen recorded
    checkpoints: list[tuple[set[str], int]] = []  # (recorded trials, start-log length) per kill

    def unchanged(t: pl.DataFrame, when: str) -> None:
        for r in t.iter_rows(named=True):
            before = known.setdefault(r["trial"], r)
            assert {k: r[k] for k in KEYS} == {k: before[k] for k in KEYS}, \
                f"row of trial {r['trial']} rewritten {when}"

    for i, (label, cond) in enumerate(POINTS.items()):
        outcome = _run_until(first if i == 0 else resume, run, starts, cond,
                             tmp_path / f"run{i}.log")
        outcomes[label] = outcome
        t = _trials(run)
        if t.height:
            assert t["trial"].n_unique() == t.height, f"duplicate trial after {label}"
            unchanged(t, f"after {label}")
        checkpoints.append((set(known), len(_starts(starts))))
        if outcome == "finished":
            break
    if list(outcomes.values())[-1] == "killed":
        with open(tmp_path / "final.log", "wb") as log:
            rc = _popen(resume, log).wait(timeout=300)
        _check_finished(rc, tmp_path / "final.log")
        outcomes["final resume"] = "finished"
    kills = list(outcomes.values()).count("killed")
    assert kills >= 3, outcomes  # several real kill points

    # ---- the end state
    trials = read_trials(run)
    assert trials.height == TRIALS * len(PHASES) and trials["trial"].n_unique() == trials.height
    assert sorted(set(trials["phase"])) == sorted(PHASES)
    assert set(trials["status"]) <= {"TERMINATED", "STOPPED"}, \
        trials.filter(pl.col("status") == "ERROR").select("trial", "stop_reason").rows()
    unchanged(trials, "by the last resume")  # nothing recorded was lost or changed
    # a trial recorded before a kill never started again afterwards
    log = _starts(starts)
    for recorded, n_log in checkpoints:
        again = {tid for tid, _ in log[n_log:]} & recorded
        assert not again, f"recorded trial(s) {again} were run again after a resume"
    m = read_metrics(run)
    assert m.select(METRIC_KEY).is_duplicated().sum() == 0
    for r in trials.iter_rows(named=True):  # each trial has every evaluation it reached
        its = m.filter((pl.col("trial") == r["trial"]) & (pl.col("split") == "val")
                       & (pl.col("case") == "mean") & (pl.col("metric") == "dice"))
        assert sorted(its["iteration"]) == list(range(10, r["budget"] + 1, 10)), r["trial"]
    for phase in PHASES:
        study = optuna.load_study(study_name=f"k-{phase}", storage=f"sqlite:///{run}/optuna.db")
        states = [t.state for t in study.trials]
        rows = trials.filter(pl.col("phase") == phase)

        def n(status, rows=rows):
            return rows.filter(pl.col("status") == status).height

        # every finished trial once: COMPLETE = full budget, PRUNED = stopped by ASHA
        assert states.count(State.COMPLETE) == n("TERMINATED"), (phase, states)
        assert states.count(State.PRUNED) == n("STOPPED"), (phase, states)
        assert State.RUNNING not in states
        # the rest are Optuna trials asked for just before a kill and never run (marked
        # FAIL on resume; at most one per concurrent slot and kill)
        assert states.count(State.FAIL) == len(states) - TRIALS, (phase, states)
        assert states.count(State.FAIL) <= 2 * kills, (phase, states)
    meta = json.loads((run / "study.json").read_text())
    assert meta["finished"] and meta["resumes"] == len(outcomes) - 1
    print("kill points:", outcomes)
