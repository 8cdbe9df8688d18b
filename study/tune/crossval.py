"""Finalists by cross-validation, the Ray half: K finalists x F folds as Ray trials.

One Tune experiment per phase (``runs/NAME/ray/cv-PHASE``), on the same cluster and with
the same trainable and per-architecture resources as the search: each trial is one
finalist configuration trained at the full budget on one fold (``_cv`` in its config names
the finalist's rank and the fold; `study.tune.trainable` swaps the split for the fold's).
No search algorithm and no early stopping: every (finalist, fold) runs to the end. The
results go to ``finalists.parquet`` (`study.results.finalists`); a phase whose experiment finished
is not run again on ``--resume`` (an unfinished one starts over).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ray import tune

from study.results.finalists import fold_rows
from study.tune.cluster import gpu_requested
from study.tune.console import console_callbacks
from study.tune.settings import TrialSettings
from study.tune.trainable import POINT, ROWS_FILE, study_trainable, trial_dirname
from study.tune.tuner import DONE_MARKER, METRIC, MODE, Resources, StudyInterrupted

#: added to the trial seed of fold models, so they never share a seed with a search trial
SEED_OFFSET = 500


@dataclass
class CrossvalPlan:
    study: str
    phase: str
    run_dir: Path
    finalists: list[dict]  # {"rank", "trial", "arch", "config" (JSON of searched params)}
    folds: list[dict]  # {"train": [...], "val": [...]}
    run: TrialSettings  # the search's fixed trial settings for this phase
    resources: dict[str, dict[str, float]]
    max_concurrent: int
    max_failures: int = 0
    verbose: int = 0
    extra_callbacks: list = field(default_factory=list)

    @property
    def exp_dir(self) -> Path:
        return self.run_dir / "ray" / f"cv-{self.phase}"

    def points(self) -> list[dict]:
        """One trial config per (finalist, fold): the finalist's parameters plus ``_cv``."""
        return [{**json.loads(f["config"]), "_cv": {"rank": int(f["rank"]), "fold": k}}
                for f in self.finalists for k in range(len(self.folds))]


class CrossvalResources(Resources):
    """Resources of a fold trial: those of its finalist's architecture."""

    def __call__(self, config: dict) -> tune.PlacementGroupFactory:
        return super().__call__(config.get(POINT, config))


def crossval_done(plan: CrossvalPlan) -> bool:
    return (plan.exp_dir / DONE_MARKER).is_file()


def run_crossval(plan: CrossvalPlan) -> dict[tuple[int, int], str | None]:
    """Train every (finalist, fold); write their fold rows; return (rank, fold) -> the
    checkpoint of the fold model at its last evaluation (None where the trial failed)."""
    if plan.exp_dir.exists():  # an unfinished experiment of an earlier invocation
        shutil.rmtree(plan.exp_dir)
    run = plan.run.with_(folds=tuple(plan.folds), seed_offset=SEED_OFFSET)
    points = plan.points()
    trainable = tune.with_resources(tune.with_parameters(study_trainable, run=run),
                                    CrossvalResources(plan.resources, gpu_requested()))
    tuner = tune.Tuner(
        trainable,
        param_space={POINT: tune.grid_search(points)},
        tune_config=tune.TuneConfig(metric=METRIC, mode=MODE, num_samples=1,
                                    max_concurrent_trials=plan.max_concurrent,
                                    reuse_actors=True, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=plan.exp_dir.name, storage_path=str((plan.run_dir / "ray").resolve()),
            callbacks=[*console_callbacks(f"cv {plan.phase}", plan.run.iterations, plan.verbose),
                       *plan.extra_callbacks],
            failure_config=tune.FailureConfig(max_failures=plan.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=plan.verbose),
    )
    grid = tuner.fit()
    if grid.num_terminated + grid.num_errors < len(points):  # Ctrl-C: Tune stopped early
        raise StudyInterrupted(
            f"finalists {plan.phase}: {grid.num_terminated + grid.num_errors} of "
            f"{len(points)} fold trainings finished; continue with --resume --name "
            f"{plan.study} (the cross-validation of this phase starts over)")
    by_rank = {int(f["rank"]): f for f in plan.finalists}
    rows, checkpoints = [], {}
    for result in grid:
        cv = (result.config or {}).get(POINT, {}).get("_cv") or {}
        rank, fold = int(cv["rank"]), int(cv["fold"])
        f = by_rank[rank]
        metrics = result.metrics or {}
        ckpt = result.checkpoint.path if result.checkpoint and not result.error else None
        status = "ERROR" if result.error else (
            "TERMINATED" if int(metrics.get("iteration") or 0) >= plan.run.iterations
            else "STOPPED")
        per_case = []
        if ckpt and Path(ckpt, ROWS_FILE).is_file():
            per_case = json.loads(Path(ckpt, ROWS_FILE).read_text(encoding="utf-8"))["rows"]
        base = {"study": plan.study, "phase": plan.phase, "rank": rank, "trial": f["trial"],
                "arch": f["arch"], "config": f["config"]}
        rows += fold_rows(base, fold, {"iteration": metrics.get("iteration"),
                                       "status": status, "rows": per_case,
                                       "val_dice": None if result.error
                                       else metrics.get("val_dice")})
        checkpoints[(rank, fold)] = ckpt
    from study.results.finalists import add_rows

    add_rows(plan.run_dir, rows)
    (plan.exp_dir / DONE_MARKER).write_text("done\n")
    return checkpoints


def finished_checkpoints(plan: CrossvalPlan) -> dict[tuple[int, int], str | None]:
    """(rank, fold) -> checkpoint of a finished experiment, read back from Ray's folder."""
    out: dict[tuple[int, int], str | None] = {}
    for trial_dir in sorted(plan.exp_dir.glob("trial_*")):
        params = trial_dir / "params.json"
        if not params.is_file():
            continue
        cv = json.loads(params.read_text())[POINT]["_cv"]
        ckpts = sorted(trial_dir.glob("checkpoint_*"))
        out[(int(cv["rank"]), int(cv["fold"]))] = str(ckpts[-1]) if ckpts else None
    return out


def run_finalists(s, prep, phases: list[str], settings, resources: dict, *, resume: bool,
                  init_ray, log=print) -> dict:
    """``--finalists K --folds F`` after the search of study settings ``s``: per phase, the K
    best configurations on F folds, the winner's fold ensemble tested once. ``settings(phase)``
    gives the phase's `TrialSettings`. Returns what ``study.json`` records under
    ``finalists``."""
    import polars as pl

    from study.data.splits import load_or_write_folds
    from study.io import write_text_atomic
    from study.results import read_trials
    from study.results.finalists import FOLDER, select_finalists

    folds, path = load_or_write_folds(prep.split_path, prep.split, s.folds, s.split_seed)
    write_text_atomic(s.run_dir / FOLDER / "folds.json", json.dumps(folds, indent=1) + "\n")
    chosen = select_finalists(read_trials(s.run_dir).filter(pl.col("study") == s.name),
                              s.finalists)
    record = {"k": s.finalists, "folds": s.folds, "folds_file": str(path), "winners": {}}
    for phase in phases:
        mine = chosen.filter(pl.col("phase") == phase)
        if mine.is_empty():
            log(f"finalists {phase}: no finished trial to retrain")
            continue
        plan = CrossvalPlan(
            study=s.name, phase=phase, run_dir=s.run_dir, folds=folds,
            finalists=mine.select("rank", "trial", "arch", "config").to_dicts(),
            run=settings(phase), resources=resources,
            max_concurrent=s.max_concurrent, max_failures=s.space.max_failures,
            verbose=s.verbose)
        if resume and crossval_done(plan):
            checkpoints = finished_checkpoints(plan)
        else:
            log(f"finalists {phase}: {mine.height} configuration(s) x {len(folds)} folds of "
                f"{sum(len(f['val']) for f in folds)} cases at the full budget "
                f"({plan.run.iterations} iterations each)")
            init_ray()
            checkpoints = run_crossval(plan)
        win = test_winner(s, prep, plan, checkpoints, log)
        if win is not None:
            record["winners"][phase] = win
    return record


def test_winner(s, prep, plan: CrossvalPlan, checkpoints: dict, log) -> dict | None:
    """The phase's winner (None without one), its fold ensemble tested unless it was."""
    import polars as pl

    from study.results.finalists import add_rows, read_finalists, winners

    phase = plan.phase
    table = read_finalists(s.run_dir).filter((pl.col("study") == s.name)
                                             & (pl.col("phase") == phase))
    win = winners(table).get(phase)
    if win is None:
        log(f"finalists {phase}: no finalist finished every fold; no winner")
        return None
    record = {"rank": win["rank"], "trial": win["trial"], "arch": win["arch"],
              "mean_fold_dice": win["mean"]}
    if table.filter(pl.col("split") == "test").height:
        return record  # tested by an earlier invocation
    if s.space.trainable == "fake" or not prep.split["test"]:
        log(f"finalists {phase}: winner rank {win['rank']}; no test evaluation "
            f"({'fake trainable' if s.space.trainable == 'fake' else 'no test cases'})")
        return record
    ckpts = [checkpoints.get((int(win["rank"]), f)) for f in range(len(plan.folds))]
    add_rows(s.run_dir, evaluate_winner(s.run_dir, s.name, phase, win, ckpts, plan.folds, prep,
                                        list(prep.split["test"]), log=log))
    return record


def evaluate_winner(run_dir: Path, study: str, phase: str, winner: dict, checkpoints: list,
                    folds: list[dict], prep, test_cases: list[str], log=print) -> list[dict]:
    """Test the winner's fold ensemble once; returns the ``split == "test"`` rows."""
    from study.evaluation.native import choose_postprocessing_for, evaluate_predictions
    from study.evaluation.postprocess import RECORD_FILE, WORDS
    from study.evaluation.predictors import ensemble_predictor, model_predictor
    from study.io import write_text_atomic
    from study.results.finalists import FOLDER
    from study.train.checkpoint import load_model
    from study.train.engine import copy_checkpoint, resolve_device

    device = resolve_device(None)
    home = Path(run_dir) / FOLDER / phase
    members = []
    for f, ckpt in enumerate(checkpoints):
        members.append(load_model(copy_checkpoint(ckpt, home / f"fold{f}"), device=device))
    threshold = float(members[0][1].threshold)
    held_out = {c: f for f, fold in enumerate(folds) for c in fold["val"]}
    by_fold = [model_predictor(m, c, prep) for m, c in members]
    pp = choose_postprocessing_for(lambda case: by_fold[held_out[case]](case), threshold, prep,
                                   sorted(held_out))
    write_text_atomic(home / RECORD_FILE, json.dumps(pp, indent=1))
    log(f"finalists {phase}: winner rank {winner['rank']} ({winner['arch']}, trial "
        f"{winner['trial']}), mean fold Dice {winner['mean']:.4f}; postprocessing on "
        f"out-of-fold predictions: {WORDS[pp['chosen']]}; testing its {len(members)}-fold "
        f"ensemble on {len(test_cases)} case(s)")
    rows = evaluate_predictions(ensemble_predictor(members, prep), threshold, prep, test_cases,
                                out_dir=Path(run_dir) / "predictions" / phase / "cv-ensemble",
                                postprocessing=pp["chosen"])
    base = {"study": study, "phase": phase, "rank": winner["rank"], "trial": winner["trial"],
            "arch": winner["arch"], "config": winner["config"], "fold": None,
            "iteration": None, "status": None, "split": "test"}
    return [{**base, **r} for r in rows]
