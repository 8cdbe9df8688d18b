"""One phase study: Ray Tune + budget-aware Optuna TPE + ASHA, new or restored.

``run_phase(plan)`` runs (or, with ``plan.resume``, continues via ``Tuner.restore``) the
experiment ``runs/NAME/ray/PHASE`` whose Optuna study is ``NAME-PHASE`` in
``runs/NAME/optuna.db``. Results go to the run's parquet tables through
:class:`study.tune.recorder.Recorder`; afterwards every Ray trial is reconciled into
``trials.parquet`` and Optuna trials left RUNNING by a killed driver are marked FAIL.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from ray import tune

from study.errors import UserError
from study.results import ResultsStore, drop_phase, read_trials
from study.tune import snapshot
from study.tune.cluster import gpu_requested
from study.tune.console import console_callbacks, phase_line, quiet
from study.tune.dists import Dist
from study.tune.recorder import Recorder, trial_row
from study.tune.sampler import make_sampler
from study.tune.scheduler import ResumableASHA
from study.tune.searcher import (
    BudgetAwareOptunaSearch,
    DefineByRun,
    fail_orphans,
    finished_count,
    prune_reported,
)
from study.tune.settings import TrialSettings
from study.tune.trainable import study_trainable, trial_dirname

METRIC, MODE = "val_dice", "max"


class StudyInterrupted(UserError):
    """The study stopped before every trial finished; ``--resume`` continues it."""

    exit_code = 130
DONE_MARKER = ".phase-done"


@dataclass
class PhasePlan:
    study: str  # run name
    phase: str
    run_dir: Path
    params: dict[str, Dist]
    per_arch: dict[str, dict[str, Dist]]
    resources: dict[str, dict[str, float]]  # arch -> {"cpu", "gpu"}
    run: TrialSettings  # fixed settings handed to every trial (see trainable.py)
    iterations: int
    trials: int
    max_concurrent: int
    grace_period: int
    reduction_factor: int
    seed: int = 0
    max_failures: int = 0
    resume: bool = False
    verbose: int = 0  # console: 0 = our one-liners (console.py), 1-2 = Ray's, -1 = none
    flush_every_s: float = 5.0
    extra_callbacks: list = field(default_factory=list)
    start_with: list[dict] = field(default_factory=list)  # Optuna-named params, asked first
    time_budget_s: float | None = None  # Ray Tune's time_budget_s for this phase
    sampler: dict | None = None  # the space's sampler: (study.tune.space); None = TPE
    early_stopping: bool = True  # ASHA; False: every trial runs the full budget
    expect: dict | None = None  # the projection of this phase, for the console's ETA

    @property
    def exp_dir(self) -> Path:
        return self.run_dir / "ray" / self.phase

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{(self.run_dir / 'optuna.db').resolve()}"

    @property
    def optuna_study(self) -> str:
        return f"{self.study}-{self.phase}"


class Resources:
    """Picklable per-trial resources: CPUs and GPU fraction for the trial's architecture."""

    def __init__(self, per_arch: dict[str, dict[str, float]], use_gpu: bool):
        self.per_arch, self.use_gpu = per_arch, use_gpu

    def __call__(self, config: dict) -> tune.PlacementGroupFactory:
        res = self.per_arch.get(config.get("arch"), {"cpu": 1.0, "gpu": 0.0})
        bundle = {"CPU": float(res.get("cpu", 1.0))}
        if self.use_gpu and res.get("gpu", 0.0) > 0:
            bundle["GPU"] = float(res["gpu"])
        return tune.PlacementGroupFactory([bundle])


def make_trainable(plan: PhasePlan):
    bound = tune.with_parameters(study_trainable, run=plan.run)
    # $STUDY_USE_GPU, else whether the cluster has a GPU now (autoscaling: see cluster.py)
    return tune.with_resources(bound, Resources(plan.resources, gpu_requested()))


def _new_tuner(plan: PhasePlan, trainable, trials: int | None = None) -> tune.Tuner:
    searcher = BudgetAwareOptunaSearch(
        space=DefineByRun(plan.params, plan.per_arch), metric=METRIC, mode=MODE,
        sampler=make_sampler(plan.sampler, plan.seed),
        study_name=plan.optuna_study,
        storage=optuna.storages.RDBStorage(plan.optuna_url),
        max_iterations=plan.iterations, start_with=plan.start_with,
    )
    scheduler = ResumableASHA(
        time_attr="iteration", metric=METRIC, mode=MODE, max_t=plan.iterations,
        grace_period=plan.grace_period, reduction_factor=plan.reduction_factor,
        run_dir=plan.run_dir, study=plan.study, phase=plan.phase,
    ) if plan.early_stopping else None  # None: Tune's FIFO, every trial to the end
    deadline = time.time() + plan.time_budget_s if plan.time_budget_s else None
    recorder = Recorder(plan.run_dir, plan.study, plan.phase, plan.iterations,
                        flush_every_s=plan.flush_every_s, deadline=deadline)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler,
            num_samples=plan.trials if trials is None else trials,
            max_concurrent_trials=plan.max_concurrent, reuse_actors=True,
            trial_dirname_creator=trial_dirname, time_budget_s=plan.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=plan.phase, storage_path=str((plan.run_dir / "ray").resolve()),
            callbacks=[recorder, *console_callbacks(plan.phase, plan.iterations, plan.verbose,
                                                    schedule=_schedule(plan)),
                       *plan.extra_callbacks],
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
            # 1: Ray deletes checkpoint N when it registers N+1, before its next experiment
            # snapshot; a kill in between is repaired on resume (snapshot.repair_checkpoints)
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            verbose=max(plan.verbose, 0),
        ),
    )


def _schedule(plan: PhasePlan) -> dict:
    """What the console's ETA needs of the phase (`study.tune.console.Eta`)."""
    return {"trials": plan.trials, "max_concurrent": plan.max_concurrent,
            "grace": plan.grace_period, "rf": plan.reduction_factor,
            "asha": plan.early_stopping, "time_budget_s": plan.time_budget_s,
            **(plan.expect or {})}


def phase_done(plan: PhasePlan) -> bool:
    return (plan.exp_dir / DONE_MARKER).is_file()


def run_phase(plan: PhasePlan) -> tune.ResultGrid | None:
    """Run or continue one phase study; returns the ResultGrid (None if already done)."""
    if plan.resume and phase_done(plan):
        return None
    if plan.verbose == 0:
        print(phase_line(plan), flush=True)
    with quiet(plan.verbose):  # Optuna's and Ray's own start-of-phase lines: -v only
        return _run_phase(plan)


def _run_phase(plan: PhasePlan) -> tune.ResultGrid | None:
    # experiment state is saved at most this often (s): a driver killed right after a trial
    # finished then restarts at most this much work
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")
    # num_to_keep forces a snapshot at each checkpoint: wanted here (resume), not a problem
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    trainable = make_trainable(plan)
    done = snapshot.recorded_trials(plan.run_dir, plan.study, plan.phase) if plan.resume else set()
    if len(done) >= plan.trials > 0:  # every trial recorded: nothing left to run
        fail_orphans(plan.optuna_url, plan.optuna_study)
        plan.exp_dir.mkdir(parents=True, exist_ok=True)
        (plan.exp_dir / DONE_MARKER).write_text("done\n")
        return None
    bad = snapshot.broken_state(plan.exp_dir) if plan.resume else []
    if plan.resume and tune.Tuner.can_restore(str(plan.exp_dir)) and not bad:
        for fix in snapshot.repair_checkpoints(plan.exp_dir):
            print(f"phase {plan.phase}: trial {fix} (the saved state named a checkpoint "
                  f"replaced after it was saved)", flush=True)
        tuner = tune.Tuner.restore(str(plan.exp_dir), trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    elif done:  # Ray's state unusable (driver killed mid-save): keep what finished
        snapshot.set_aside(plan.exp_dir)
        snapshot.drop_unrecorded_metrics(plan.run_dir, plan.study, plan.phase, done)
        snapshot.write_carried(plan.exp_dir, len(done))
        # Tune tells the searcher before the recorder: a kill between them leaves a trial
        # Optuna scored but the tables never recorded (its rows and checkpoint are lost)
        lost = finished_count(plan.optuna_url, plan.optuna_study) - len(done)
        extra = (f"; {lost} trial(s) ended after the last save: Optuna keeps their scores "
                 f"for sampling, their rows and checkpoints are lost") if lost > 0 else ""
        print(f"phase {plan.phase}: Ray's saved state is unusable ({', '.join(bad)}); "
              f"{len(done)} finished trials and the Optuna history are kept, a new Tuner "
              f"runs the other {plan.trials - len(done)}{extra}", flush=True)
        tuner = _new_tuner(plan, trainable, plan.trials - len(done))
    else:
        if plan.exp_dir.exists():  # killed before Ray saved any state: start the phase over
            shutil.rmtree(plan.exp_dir)
            drop_phase(plan.run_dir, plan.study, plan.phase)
        tuner = _new_tuner(plan, trainable)
    started = time.time()
    grid = tuner.fit()
    finished = snapshot.carried(plan.exp_dir) + grid.num_terminated + grid.num_errors
    timed_out = plan.time_budget_s is not None and \
        time.time() - started >= plan.time_budget_s - 1.0
    if timed_out:  # Tune stopped at the time budget: what ran is recorded, the rest never will
        print(f"phase {plan.phase}: time budget of {plan.time_budget_s:.0f} s reached after "
              f"{finished} trial(s); running trials stopped at the iteration they reached",
              flush=True)
    elif finished < plan.trials:
        # Ctrl-C (Tune stops gracefully and saves its state) or Tune gave up
        raise StudyInterrupted(
            f"phase {plan.phase}: {finished} of {plan.trials} "
            f"trials finished; continue with --resume --name {plan.study}")
    reconcile(plan, grid, stopped_by="the time budget" if timed_out else "ASHA")
    if timed_out:
        prune_reported(plan.optuna_url, plan.optuna_study)
    fail_orphans(plan.optuna_url, plan.optuna_study)
    (plan.exp_dir / DONE_MARKER).write_text("done\n")
    return grid


def reconcile(plan: PhasePlan, grid: tune.ResultGrid, stopped_by: str = "ASHA") -> int:
    """Add a trials row for any finished Ray trial the callback did not record (trials
    Tune stopped at the time budget end there: ``stopped_by`` says so)."""
    trials = read_trials(plan.run_dir)
    mine = trials.filter((trials["study"] == plan.study) & (trials["phase"] == plan.phase))
    have = set(mine["trial"].to_list())
    store = ResultsStore(plan.run_dir)
    added = 0
    for result in grid:
        metrics = result.metrics or {}
        if metrics.get("iteration") is None and result.error is None:
            continue  # no evaluation before the time budget ended: nothing to record
        trial_id = metrics.get("trial_id") or Path(str(result.path)).name
        if trial_id in have:
            continue
        best = None
        df = result.metrics_dataframe
        if df is not None and METRIC in getattr(df, "columns", []):
            best = df[METRIC].max()
        store.add_trial(trial_row(
            study=plan.study, phase=plan.phase, trial_id=trial_id, config=result.config or {},
            last=metrics, max_budget=plan.iterations, best=best,
            checkpoint=result.checkpoint.path if result.checkpoint else None,
            error=str(result.error) if result.error else None, stopped_by=stopped_by))
        added += 1
    store.flush()
    return added
