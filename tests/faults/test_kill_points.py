"""SIGKILL the study driver at several points of one two-phase study, ``--resume`` each time.

Kill points, one per invocation (then ``--resume``):

A. trials running, none finished yet (first phase);
B. some trials of the first phase finished, others running;
C. first phase done, second phase under way;
D. every trial finished: during the test evaluation / closing;
then a last ``--resume`` runs to the end (or, if a point was passed before the kill landed,
the next one is taken from there).

After every kill: the result tables still read (atomic writes) and hold each trial at most
once. Rows recorded before a kill should stay unchanged; the ways they were seen to change
(and two Ray restore failures) are known issues reported to the tune layer: the test
checks everything else, then ends as xfail naming them. At the end: every trial of
both phases exactly once in the parquet and once as COMPLETE/PRUNED in the Optuna storage
(no RUNNING leftovers; a trial asked for just before a kill and never run is FAIL),
no validation row twice, and no trial that had finished before a kill started again.
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


RESTORE_BUG = ("known bug (reported to the tune layer): a driver killed while Ray Tune writes "
               "its experiment state leaves an empty searcher-state-*.pkl; every later "
               "--resume then fails to restore that phase ('Failed to restore the run state', "
               "EOFError) and exits 130 although all its trials are recorded")


LOST_CHECKPOINT_BUG = ("known bug (reported to the tune layer): a trial running when the "
                       "driver is killed can come back as ERROR 'Could not recover from "
                       "checkpoint as it does not exist on storage anymore' (checkpoint "
                       "num_to_keep=1 deleted the one the last experiment snapshot names)")


ERROR_HEALED_BUG = ("known issue (reported to the tune layer): a trial recorded ERROR in "
                    "trials.parquet around a kill was resumed by Ray after --resume and its row "
                    "became TERMINATED: the parquet said 'failed' for a trial that was not")


ROW_CHANGED_BUG = ("known issue (reported to the tune layer): a trial row recorded before a "
                   "kill (e.g. STOPPED at 10) was rewritten after --resume (STOPPED at 20) "
                   "without the trial being started again")


def _check_finished(rc: int, log_path: Path) -> None:
    text = log_path.read_text(errors="replace")
    if rc != 0 and "Failed to restore the run state" in text:
        pytest.xfail(RESTORE_BUG)
    assert rc == 0, text[-3000:]


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


def test_sigkill_at_several_points_then_resume(small_phantom, fault_space, tmp_path):
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
    keys = ("status", "budget", "best_val_dice")
    healed: set[str] = set()
    changed: list[tuple] = []  # recorded rows that a later invocation rewrote
    for i, (label, cond) in enumerate(POINTS.items()):
        outcome = _run_until(first if i == 0 else resume, run, starts, cond,
                             tmp_path / f"run{i}.log")
        outcomes[label] = outcome
        t = _trials(run)
        if t.height:
            assert t["trial"].n_unique() == t.height, f"duplicate trial after {label}"
        for r in t.iter_rows(named=True):
            before = known.get(r["trial"])
            if before is not None and before["status"] == "ERROR" and r["status"] != "ERROR":
                healed.add(r["trial"])  # see ERROR_HEALED_BUG
                known[r["trial"]] = r
            elif before is not None and {k: r[k] for k in keys} != {k: before[k] for k in keys}:
                changed.append((r["trial"], {k: before[k] for k in keys}, {k: r[k] for k in keys}))
                known[r["trial"]] = r
            known.setdefault(r["trial"], r)
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
    for tid, row in known.items():  # nothing recorded was lost or changed
        r = trials.filter(pl.col("trial") == tid).row(0, named=True)
        if row["status"] == "ERROR" and r["status"] != "ERROR":
            healed.add(tid)
        elif {k: r[k] for k in keys} != {k: row[k] for k in keys}:
            changed.append((tid, {k: row[k] for k in keys}, {k: r[k] for k in keys}))
    # a trial recorded as finished before a kill never started again afterwards
    log = _starts(starts)
    for recorded, n_log in checkpoints:
        again = {tid for tid, _ in log[n_log:]} & recorded
        assert not again, f"finished trial(s) {again} were run again after a resume"
    # a trial still running at a kill must resume, not fail
    errors = trials.filter(pl.col("status") == "ERROR")
    known_bugs = []
    for r in errors.iter_rows(named=True):
        if "does not exist on storage anymore" in r["stop_reason"]:
            known_bugs.append(LOST_CHECKPOINT_BUG)
        else:
            raise AssertionError(f"trial {r['trial']} failed after a resume: {r['stop_reason']}")
    m = read_metrics(run)
    assert m.select(METRIC_KEY).is_duplicated().sum() == 0
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
        # the rest are FAIL: failed trials, and Optuna trials asked for just before a kill
        # and never run (marked FAIL on resume; at most one per concurrent slot and kill)
        assert states.count(State.FAIL) == len(states) - n("TERMINATED") - n("STOPPED")
        assert 0 <= states.count(State.FAIL) - n("ERROR") <= 2 * kills, (phase, states)
    meta = json.loads((run / "study.json").read_text())
    assert meta["finished"] and meta["resumes"] == len(outcomes) - 1
    print("kill points:", outcomes)
    if healed:
        known_bugs.append(ERROR_HEALED_BUG)
    if changed:
        known_bugs.append(f"{ROW_CHANGED_BUG}: {changed}")
    if known_bugs:
        pytest.xfail("; ".join(sorted(set(known_bugs))))
