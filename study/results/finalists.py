"""Finalists by cross-validation (``--finalists K --folds F``): the Ray-free half.

After the search, the K best configurations of each phase (budget-aware, across the
architectures the space searched: `select_finalists`) are retrained at the full budget on
F folds of train + validation (`study.data.splits.make_folds`; the Ray experiment is
`study.tune.crossval`). Each fold model is scored on its held-out fold at its last
evaluation; the winner of a phase is the finalist with the best mean fold Dice (a finalist
with a failed fold cannot win; ties go to the better search rank). The test cases are then
evaluated once, with the winner's F-fold ensemble (mean of the fold models' probability
maps), on the study grid and the native grid, with the postprocessing chosen on the
out-of-fold predictions of the train + validation cases (as nnU-Net does).

``finalists.parquet`` (long, `SCHEMA`): ``split == "cv"`` rows are fold scores (per held-out
case and ``case == "mean"``, study grid, ``fold`` set); ``split == "test"`` rows are the
winner ensemble's test metrics (``fold`` null). The winner's fold models are copied to
``runs/NAME/finalists/PHASE/foldF/``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from study.results.trials import ranked_trials, read_table, write_parquet_atomic

FILE = "finalists.parquet"
FOLDER = "finalists"
SCHEMA: dict[str, pl.DataType] = {
    "study": pl.String, "phase": pl.String, "rank": pl.Int64, "trial": pl.String,
    "arch": pl.String, "config": pl.String, "fold": pl.Int64, "iteration": pl.Int64,
    "status": pl.String, "split": pl.String, "case": pl.String, "metric": pl.String,
    "value": pl.Float64, "grid": pl.String, "postprocessing": pl.String,
}
KEY = ["study", "phase", "rank", "fold", "split", "grid", "postprocessing", "case", "metric"]


def read_finalists(run_dir: str | Path) -> pl.DataFrame:
    return read_table(Path(run_dir) / FILE, SCHEMA)


def add_rows(run_dir: str | Path, rows: list[dict]) -> None:
    """Merge ``rows`` into ``finalists.parquet`` (last write wins on `KEY`), atomically."""
    if not rows:
        return
    new = pl.DataFrame([{k: r.get(k) for k in SCHEMA} for r in rows], schema=SCHEMA,
                       strict=False)
    both = pl.concat([read_finalists(run_dir), new], how="vertical_relaxed")
    write_parquet_atomic(both.unique(subset=KEY, keep="last", maintain_order=True),
                         Path(run_dir) / FILE)


def select_finalists(trials: pl.DataFrame, k: int) -> pl.DataFrame:
    """The ``k`` best trials of each phase across its architectures, with a ``rank`` column:
    the budget-aware rule of `study.results.ranked_trials` (failed trials left out, highest
    budget reached first, then final validation Dice, then trial id) within the phase."""
    return ranked_trials(trials, k, by=("phase",))


def fold_scores(table: pl.DataFrame) -> pl.DataFrame:
    """One row per (study, phase, rank, fold): the fold's mean held-out Dice (null if failed)."""
    cv = table.filter((pl.col("split") == "cv") & (pl.col("case") == "mean")
                      & (pl.col("metric") == "dice"))
    return cv.select("study", "phase", "rank", "trial", "arch", "config", "fold", "iteration",
                     "status", pl.col("value").fill_nan(None).alias("dice")).sort(
        "study", "phase", "rank", "fold")


def summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per finalist: fold Dice list, mean, standard deviation, min, max, and ``winner``."""
    folds = fold_scores(table)
    if folds.is_empty():
        return pl.DataFrame()
    out = folds.group_by("study", "phase", "rank", maintain_order=True).agg(
        pl.col("trial").first(), pl.col("arch").first(), pl.col("config").first(),
        pl.col("dice").alias("folds"), pl.col("dice").null_count().alias("failed"),
        pl.col("dice").mean().alias("mean"), pl.col("dice").std().alias("sd"),
        pl.col("dice").min().alias("min"), pl.col("dice").max().alias("max"))
    out = out.with_columns(pl.when(pl.col("failed") > 0).then(None).otherwise(pl.col("mean"))
                           .alias("mean"))
    best = (out.filter(pl.col("mean").is_not_null())
            .sort("mean", "rank", descending=[True, False], nulls_last=True)
            .unique(subset=["study", "phase"], keep="first").select("study", "phase", "rank")
            .with_columns(pl.lit(True).alias("winner")))
    return out.join(best, on=["study", "phase", "rank"], how="left").with_columns(
        pl.col("winner").fill_null(False))


def winners(table: pl.DataFrame) -> dict[str, dict]:
    """phase -> the winning finalist's summary row (phases without a winner left out)."""
    s = summary(table)
    if s.is_empty():
        return {}
    return {r["phase"]: r for r in s.filter(pl.col("winner")).iter_rows(named=True)}


def fold_rows(base: dict, fold: int, result: dict) -> list[dict]:
    """``split == "cv"`` rows of one fold model: ``result`` has ``iteration``, ``status``,
    ``val_dice`` (mean) and ``rows`` (per held-out case, study grid)."""
    common = {**base, "fold": fold, "iteration": result.get("iteration"),
              "status": result.get("status"), "split": "cv", "grid": "study",
              "postprocessing": "none"}
    dice = result.get("val_dice")
    dice = float(dice) if dice is not None and math.isfinite(float(dice)) else None
    out = [{**common, "case": "mean", "metric": "dice", "value": dice}]
    out += [{**common, "case": str(r["case"]), "metric": str(r["metric"]),
             "value": float(r["value"]) if r.get("value") is not None else None}
            for r in result.get("rows") or []]
    return out


def test_cases_table(table: pl.DataFrame) -> pl.DataFrame:
    """The winner ensembles' test rows as shown: native grid when measured there, with the
    postprocessing chosen on the out-of-fold predictions."""
    from study.results import chosen_postprocessing

    test = table.filter(pl.col("split") == "test")
    if test.is_empty():
        return test
    native = (pl.col("grid") == "native").any().over("study", "phase")
    test = test.filter(pl.col("grid") == pl.when(native).then(pl.lit("native"))
                       .otherwise(pl.lit("study")))
    return chosen_postprocessing(test, ["study", "phase"])


def format_summary(table: pl.DataFrame) -> str:
    """Plain-text fold table and the winners' test means, for the closing note."""
    s = summary(table)
    if s.is_empty():
        return "finalists: no fold finished"
    lines = []
    for r in s.iter_rows(named=True):
        folds = " ".join("  -   " if v is None else f"{v:.4f}" for v in r["folds"])
        mean = "failed fold(s)" if r["mean"] is None else \
            f"mean {r['mean']:.4f} sd {r['sd'] or 0.0:.4f}"
        lines.append(f"  {r['phase']} #{r['rank']} {r['arch']:<12} trial {r['trial']}: folds "
                     f"{folds}  {mean}{'  <- winner' if r['winner'] else ''}")
    test = test_cases_table(table)
    for phase in sorted(set(test["phase"].to_list())):
        d = test.filter((pl.col("phase") == phase) & (pl.col("metric") == "dice"))
        vals = [v for v in d["value"].to_list() if v is not None and math.isfinite(v)]
        if vals:
            lines.append(f"  {phase}: winner's fold ensemble, test Dice "
                         f"{float(np.mean(vals)):.4f} over {len(vals)} case(s) "
                         f"({d['grid'][0]} grid)")
    return "\n".join(["finalists by cross-validation (held-out fold Dice):", *lines])
