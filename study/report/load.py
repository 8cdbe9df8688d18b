"""Reading run directories (``runs/NAME/``) for the report.

The results layer (issue 5) writes the tables; they are read with its readers
(``study.results.read_metrics`` / ``read_trials``: corrupt file -> DataError, missing file ->
empty frame) and then checked here: a table that lacks a contract column is refused with a
DataError rather than shown as blanks. A run directory must exist and hold at least one of
``study.json``, ``metrics.parquet``, ``trials.parquet``; otherwise :class:`DataError`. Missing
tables read as empty frames, so a study that has not finished a trial still gives a page.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from study import results
from study.errors import DataError
from study.io import read_json_object

METRIC_SCHEMA = results.METRIC_SCHEMA  # one schema: the results layer's
TRIAL_SCHEMA = results.TRIAL_SCHEMA
OPTIONAL_TRIAL_COLUMNS = ("stop_reason", "wall_s", "max_budget", "config",
                          *sorted(results.OPTIONAL))  # older tables may lack these
TRIAL_DIR = re.compile(r"trial_(\d+)_([A-Za-z0-9]+)")  # Ray trial folders: trial_0003_5c1e0a2b
RUN_FILES = ("study.json", results.METRICS_FILE, results.TRIALS_FILE)


@dataclass
class Run:
    """One run directory, read."""

    path: Path
    name: str
    meta: dict  # study.json ({} when absent)
    metrics: pl.DataFrame  # long table, METRIC_SCHEMA columns (+ "run")
    trials: pl.DataFrame  # trials table, TRIAL_SCHEMA columns (+ "run")
    notes: list[str] = field(default_factory=list)  # problems worth showing on the page
    finalists: pl.DataFrame = field(default_factory=pl.DataFrame)  # study.results.finalists.SCHEMA + run

    @property
    def optuna_db(self) -> Path | None:
        db = self.path / "optuna.db"
        return db if db.is_file() else None

    @property
    def empty(self) -> bool:
        return self.metrics.is_empty() and self.trials.is_empty()


def _columns(path: Path) -> list[str]:
    try:
        return list(pl.read_parquet_schema(path))
    except Exception as exc:  # polars raises several types for a corrupt file
        raise DataError(
            f"{path}: cannot be read as parquet ({exc}); the run was probably interrupted "
            f"while writing it: rerun the study with --resume, or delete the file"
        ) from None


def _read_table(path: Path, schema: dict[str, pl.DataType], reader) -> pl.DataFrame:
    if not path.is_file():
        return pl.DataFrame(schema=schema)
    required = [c for c in schema if c not in OPTIONAL_TRIAL_COLUMNS]
    missing = [c for c in required if c not in _columns(path)]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; expected the results table of "
            f"docs/CONTRACTS.md (study/results.py); was it written by another version of study?"
        )
    try:
        df = reader(path.parent)
    except pl.exceptions.PolarsError as exc:
        raise DataError(f"{path}: column types do not match the results contract ({exc})") from None
    for c, t in schema.items():
        if c not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=t).alias(c))
    return df.select([pl.col(c).cast(t, strict=False) for c, t in schema.items()])


def _read_meta(path: Path) -> tuple[dict, list[str]]:
    if not path.is_file():
        return {}, [f"{path.name} is missing: no provenance recorded"]
    meta = read_json_object(path, DataError, "restore or delete it", "the study's provenance")
    return meta, []


def with_trial_numbers(trials: pl.DataFrame, run_dir: Path) -> pl.DataFrame:
    """Add ``number``: the order in which the tuner created each trial, from the counter in
    its Ray folder name (``trial_0003_<id>``, in its checkpoint path or under ``ray/``);
    null where unknown. Ray's trial ids are random hex, so they cannot give the order."""
    numbers: dict[str, int] = {}
    ray = run_dir / "ray"
    if ray.is_dir():
        for d in ray.glob("*/trial_*"):
            m = TRIAL_DIR.fullmatch(d.name)
            if m:
                numbers[m.group(2)] = int(m.group(1))
    for trial, ckpt in zip(trials["trial"], trials["checkpoint"], strict=True):
        m = TRIAL_DIR.search(ckpt or "")
        if m and m.group(2) == trial:
            numbers[trial] = int(m.group(1))
    return trials.with_columns(
        pl.col("trial").replace_strict(numbers, default=None, return_dtype=pl.Int64).alias("number")
    )


def load_run(run_dir: str | os.PathLike, name: str | None = None) -> Run:
    """Read one run directory; raise DataError if it is missing or holds no results."""
    path = Path(run_dir)
    if not path.is_dir():
        raise DataError(
            f"{path}: run directory not found; pass a directory written by "
            f"`python -m study.launch` (e.g. runs/NAME)"
        )
    if not any((path / f).is_file() for f in RUN_FILES):
        raise DataError(
            f"{path}: no results in this directory (none of {', '.join(RUN_FILES)}); "
            f"pass a run directory (runs/NAME) of a study that has started"
        )
    meta, notes = _read_meta(path / "study.json")
    run_name = name or str(meta.get("name") or path.resolve().name)
    metrics = _read_table(path / results.METRICS_FILE, METRIC_SCHEMA, results.read_metrics)
    trials = _read_table(path / results.TRIALS_FILE, TRIAL_SCHEMA, results.read_trials)
    metrics = metrics.with_columns(pl.lit(run_name).alias("run"))
    trials = with_trial_numbers(trials, path).with_columns(pl.lit(run_name).alias("run"))
    from study.results.finalists import read_finalists

    finalists = read_finalists(path).with_columns(pl.lit(run_name).alias("run"))
    return Run(path=path, name=run_name, meta=meta, metrics=metrics, trials=trials, notes=notes,
               finalists=finalists)


def load_runs(run_dirs: Sequence[str | os.PathLike]) -> list[Run]:
    """Read several run directories; names are made unique (``NAME``, ``NAME (2)``)."""
    if not run_dirs:
        raise DataError("no run directory given; pass at least one runs/NAME")
    runs: list[Run] = []
    seen: dict[str, int] = {}
    for d in run_dirs:
        run = load_run(d)
        if run.name in seen:
            seen[run.name] += 1
            run.name = name = f"{run.name} ({seen[run.name]})"
            run.metrics = run.metrics.with_columns(pl.lit(name).alias("run"))
            run.trials = run.trials.with_columns(pl.lit(name).alias("run"))
            run.finalists = run.finalists.with_columns(pl.lit(name).alias("run"))
        else:
            seen[run.name] = 1
        runs.append(run)
    return runs


def all_metrics(runs: Sequence[Run]) -> pl.DataFrame:
    frames = [r.metrics for r in runs]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema={**METRIC_SCHEMA, "run": pl.String})


def all_trials(runs: Sequence[Run]) -> pl.DataFrame:
    frames = [r.trials for r in runs]
    empty = pl.DataFrame(schema={**TRIAL_SCHEMA, "number": pl.Int64, "run": pl.String})
    return pl.concat(frames, how="vertical") if frames else empty


def label_of(runs: Sequence[Run]) -> str:
    """The label the runs segment (study.json "label"), e.g. "liver"; "tumor" when unknown;
    several labels joined with " / "."""
    labels = []
    for r in runs:
        lab = str(r.meta.get("label") or "tumor")
        if lab not in labels:
            labels.append(lab)
    return " / ".join(labels) or "tumor"
