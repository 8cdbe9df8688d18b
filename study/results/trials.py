"""The results store of a run directory: two parquet tables, written atomically.

``metrics.parquet`` (long): one row per (study, trial, arch, phase, iteration, split, case,
metric, value). Validation rows come at every evaluation: one per case and metric, plus
``case == "mean"`` rows for the means the trainable reported (``val_dice``, ...) and
``split == "train"`` for ``train_loss``. Test rows (``split == "test"``) hold the
whole-volume metrics of the best trial per (phase, arch) on each test case.

The ``postprocessing`` column names the postprocessing applied before scoring (test rows
only, `study.evaluation.postprocess`): ``"none"`` = the raw prediction (always stored), else the
candidate chosen on validation for that (phase, arch); tables show the chosen one.

The ``grid`` column says where a number was measured: ``"study"`` (the resampled study
grid the models train on: every validation row) or ``"native"`` (the probability map
resampled back to the case's source NIfTI grid and compared with the original label
file: what a clinician, nnU-Net or MONAI user measures). Test rows come on both grids;
tables and reports show the native ones (`displayed_test`). Files written before the column
existed read as ``"study"``.

``trials.parquet``: one row per trial: config (JSON), budget (iterations reached),
max_budget, status (TERMINATED = full budget, STOPPED = stopped early by ASHA, ERROR),
stop_reason, best_val_dice (max over its evaluations), wall_s; extensions: final_val_dice
(value at the budget reached: what budget-aware selection compares), checkpoint (path of
its latest checkpoint), node (hostname/ip of the node that ran it last); cost (issue 23):
params, infer_s (seconds per volume on the study grid), infer_peak_mb, infer_device.

Appending across resumes never duplicates: metrics dedupe on (study, trial, iteration,
split, case, metric), trials on (study, trial); the last write wins.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from study.errors import DataError
from study.io import atomic_path

METRIC_SCHEMA: dict[str, pl.DataType] = {
    "study": pl.String, "trial": pl.String, "arch": pl.String, "phase": pl.String,
    "iteration": pl.Int64, "split": pl.String, "case": pl.String, "metric": pl.String,
    "value": pl.Float64, "grid": pl.String, "postprocessing": pl.String,
}
TRIAL_SCHEMA: dict[str, pl.DataType] = {
    "study": pl.String, "trial": pl.String, "arch": pl.String, "phase": pl.String,
    "config": pl.String, "budget": pl.Int64, "max_budget": pl.Int64, "status": pl.String,
    "stop_reason": pl.String, "best_val_dice": pl.Float64, "wall_s": pl.Float64,
    "final_val_dice": pl.Float64, "checkpoint": pl.String, "node": pl.String,
    # cost of the trial's model (issue 23, `study.train.cost`): parameters, seconds to predict
    # one volume on the study grid, peak memory of that prediction (MB), the device measured on
    "params": pl.Int64, "infer_s": pl.Float64, "infer_peak_mb": pl.Float64,
    "infer_device": pl.String,
}
COST_COLUMNS = ("params", "infer_s", "infer_peak_mb", "infer_device")
OPTIONAL = {"final_val_dice", "checkpoint", "node", "grid", "postprocessing",
            *COST_COLUMNS}  # rows may omit
METRIC_KEY = ["study", "trial", "iteration", "split", "grid", "postprocessing", "case", "metric"]
GRIDS = ("study", "native")  # where a metric was measured (module docstring)
TRIAL_KEY = ["study", "trial"]
STATUSES = ("TERMINATED", "STOPPED", "ERROR")
METRICS_FILE, TRIALS_FILE = "metrics.parquet", "trials.parquet"


def _frame(rows: Iterable[dict], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    rows = list(rows)
    if not rows:
        return pl.DataFrame(schema=schema)
    missing = sorted({k for r in rows for k in schema if k not in r} - OPTIONAL)
    if missing:
        raise ValueError(f"result rows lack column(s) {', '.join(missing)}")
    df = pl.DataFrame([{k: r.get(k) for k in schema} for r in rows], schema=schema,
                      strict=False)
    return _default_grid(df)


def _default_grid(df: pl.DataFrame) -> pl.DataFrame:
    if "grid" in df.columns:
        df = df.with_columns(pl.col("grid").fill_null("study"))
    if "postprocessing" in df.columns:
        df = df.with_columns(pl.col("postprocessing").fill_null("none"))
    return df


def read_table(path: Path, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    if not path.is_file():
        return pl.DataFrame(schema=schema)
    try:
        df = pl.read_parquet(path)
    except Exception as exc:  # corrupt/truncated file: polars raises several types
        raise DataError(f"{path}: cannot be read as parquet ({exc}); delete it and rerun "
                        f"with --resume to rebuild it from the Ray experiment") from None
    for name, dtype in schema.items():  # older files may lack extension columns
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, dtype=dtype).alias(name))
    return _default_grid(df.select([pl.col(n).cast(t) for n, t in schema.items()]))


def write_parquet_atomic(df: pl.DataFrame, path: str | os.PathLike) -> Path:
    with atomic_path(path, suffix=".parquet") as tmp:
        df.write_parquet(tmp)
    return Path(path)


def read_metrics(run_dir: str | os.PathLike) -> pl.DataFrame:
    return read_table(Path(run_dir) / METRICS_FILE, METRIC_SCHEMA)


def read_trials(run_dir: str | os.PathLike) -> pl.DataFrame:
    return read_table(Path(run_dir) / TRIALS_FILE, TRIAL_SCHEMA)


def _merge(old: pl.DataFrame, new: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    if new.is_empty():
        return old
    both = pl.concat([old, new], how="vertical_relaxed")
    return both.unique(subset=key, keep="last", maintain_order=True)


class ResultsStore:
    """Buffered writer for one run directory; ``flush()`` merges, dedupes, writes atomically."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self._metrics: list[dict] = []
        self._trials: list[dict] = []

    def add_metrics(self, rows: Iterable[dict]) -> None:
        self._metrics.extend(rows)

    def add_trial(self, row: dict) -> None:
        if row["status"] not in STATUSES:
            raise ValueError(f"trial status {row['status']!r} not in {STATUSES}")
        self._trials.append(row)

    @property
    def pending(self) -> int:
        return len(self._metrics) + len(self._trials)

    def flush(self) -> None:
        if self._metrics:
            merged = _merge(read_metrics(self.run_dir), _frame(self._metrics, METRIC_SCHEMA),
                            METRIC_KEY)
            write_parquet_atomic(merged, self.run_dir / METRICS_FILE)
            self._metrics.clear()
        if self._trials:
            merged = _merge(read_trials(self.run_dir), _frame(self._trials, TRIAL_SCHEMA),
                            TRIAL_KEY)
            write_parquet_atomic(merged, self.run_dir / TRIALS_FILE)
            self._trials.clear()


def drop_phase(run_dir: str | os.PathLike, study: str, phase: str) -> None:
    """Remove a phase's rows (its Ray experiment is gone and it starts over)."""
    run_dir = Path(run_dir)
    keep = ~((pl.col("study") == study) & (pl.col("phase") == phase))
    for name, reader in ((METRICS_FILE, read_metrics), (TRIALS_FILE, read_trials)):
        if (run_dir / name).is_file():
            write_parquet_atomic(reader(run_dir).filter(keep), run_dir / name)


def best_trials(trials: pl.DataFrame) -> pl.DataFrame:
    """Budget-aware best trial per (phase, arch).

    Among the trials that did not fail, keep those that reached the highest budget (rung)
    any trial of that (phase, arch) reached, then take the highest ``final_val_dice``
    (falling back to ``best_val_dice`` where it is missing). A trial stopped early by
    ASHA never wins over one that trained longer, whatever its partial score.
    """
    return ranked_trials(trials, 1).drop("rank")


#: trial columns a hand-built or older table may lack (ranked_trials adds them as nulls)
OPTIONAL_TRIAL_COLUMNS = ("final_val_dice", "checkpoint", "node", "params", "infer_s",
                          "infer_peak_mb", "infer_device")


def ranked_trials(trials: pl.DataFrame, top: int,
                  by: tuple[str, ...] = ("phase", "arch")) -> pl.DataFrame:
    """The ``top`` best trials per ``by`` group (default (phase, arch)), budget-aware, with a
    ``rank`` column (1 = `best_trials`' choice): failed trials left out, then the highest
    budget reached first, then the highest ``final_val_dice`` (else ``best_val_dice``), then
    trial id."""
    missing = [n for n in OPTIONAL_TRIAL_COLUMNS if n not in trials.columns]  # older tables
    trials = trials.with_columns(pl.lit(None, TRIAL_SCHEMA[n]).alias(n) for n in missing)
    ok = trials.filter(pl.col("status") != "ERROR").with_columns(
        pl.coalesce("final_val_dice", "best_val_dice").fill_nan(None).alias("_score"))
    if ok.is_empty():
        return ok.select(list(TRIAL_SCHEMA)).with_columns(pl.lit(None, pl.Int64).alias("rank"))
    ranked = ok.sort([*by, "budget", "_score", "trial"],
                     descending=[False] * len(by) + [True, True, False], nulls_last=True)
    ranked = ranked.with_columns(pl.int_range(1, pl.len() + 1).over(*by)
                                 .cast(pl.Int64).alias("rank"))
    return ranked.filter(pl.col("rank") <= top).select([*TRIAL_SCHEMA, "rank"])


TABLE_METRICS = ("precision", "recall", "dice")


def displayed_grid(metrics: pl.DataFrame) -> str | None:
    """The grid the test results of ``metrics`` are shown on: native when measured there."""
    grids = set(metrics.filter(pl.col("split") == "test")["grid"].fill_null("study").to_list())
    return "native" if "native" in grids else ("study" if grids else None)


def displayed_test(metrics: pl.DataFrame) -> pl.DataFrame:
    """The test rows to show: those on the native grid when there are any, else the study
    grid's (runs made before native-grid evaluation); per trial, with the postprocessing
    chosen on validation when one was (rows other than ``"none"``), else the raw ones."""
    grid = displayed_grid(metrics)
    test = metrics.filter((pl.col("split") == "test")
                          & (pl.col("grid").fill_null("study") == (grid or "study")))
    return chosen_postprocessing(test, ["study", "trial"])


def chosen_postprocessing(test: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    """Per group ``by`` (a trial), the postprocessed rows when there are any, else "none"."""
    if "postprocessing" not in test.columns:
        return test
    pp = pl.col("postprocessing").fill_null("none")
    has = (pp != "none").any().over(by)
    return test.filter(pl.when(has).then(pp != "none").otherwise(pp == "none"))
