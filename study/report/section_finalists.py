"""Report: finalists by cross-validation (``--finalists K --folds F``), when a run has them."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from study.report import figures, tables
from study.report.cases import case_block
from study.report.html import cell, esc, figure, fmt, message, note, table
from study.report.load import Run

NOTE = ("After the search, the {k} best configuration(s) of each phase (budget-aware, across "
        "the architectures searched) were trained again at the full budget on each of {f} "
        "folds of the train + validation cases (grouped by case, seeded; folds file beside the "
        "split). Each fold model is scored on its held-out cases (mean Dice, study grid: the "
        "grid the search ranks on). The winner of a phase has the best mean over folds; a "
        "finalist with a failed fold cannot win. Its {f} fold models, averaged, are tested "
        "once, with the postprocessing chosen on the out-of-fold predictions.")


def fold_table_html(summary: pl.DataFrame, trials: pl.DataFrame, show_run: bool) -> str:
    folds = max(len(f) for f in summary["folds"].to_list())
    numbers = {(r["run"], r["trial"]): r for r in trials.select(
        "run", "trial", "number", "final_val_dice").to_dicts()} if "number" in trials.columns \
        else {}
    headers = (["Run"] if show_run else []) + [
        "Phase", "Rank", "Architecture", "Trial", "Search val Dice",
        *[f"Fold {i + 1}" for i in range(folds)], "Mean", "SD", "Min – max", ""]
    rows = []
    for r in summary.to_dicts():
        t = numbers.get((r["run"], r["trial"]), {})
        trial = f"#{t['number']}" if t.get("number") is not None else r["trial"]
        vals = list(r["folds"]) + [None] * (folds - len(r["folds"]))
        rows.append(([cell(esc(r["run"]), "k")] if show_run else []) + [
            cell(esc(r["phase"]), "k"), cell(str(r["rank"])), cell(esc(r["arch"]), "k"),
            cell(esc(trial)), cell(fmt(t.get("final_val_dice"), "dice")),
            *[cell(fmt(v, "dice"), "na" if v is None else "") for v in vals],
            cell(fmt(r["mean"], "dice"), "best" if r["winner"] else ""),
            cell(fmt(r["sd"], "dice")),
            cell(f"{fmt(r['min'], 'dice')} – {fmt(r['max'], 'dice')}"),
            cell("winner" if r["winner"] else ("failed fold" if r["failed"] else ""), "k")])
    return table(headers, rows)


def test_results(table_: pl.DataFrame) -> pl.DataFrame:
    """The winners' test rows shaped like `tables.test_results` (arch names the ensemble)."""
    from study.results.finalists import test_cases_table

    test = test_cases_table(table_).filter(pl.col("case") != "mean")
    if test.is_empty():
        return pl.DataFrame()
    return test.select(
        "run", "phase", pl.format("{} ({}-fold ensemble, finalist #{})", "arch",
                                  pl.col("fold_count"), "rank").alias("arch"),
        "trial", "case", "metric",
        pl.when(pl.col("value").is_finite()).then(pl.col("value")).alias("value"))


def finalists_section(runs: Sequence[Run], trials: pl.DataFrame) -> str:
    """The fold scores with their spread, a figure, and the winners' test table; "" if no run
    cross-validated finalists."""
    from study.results.finalists import summary

    have = [r for r in runs if not r.finalists.is_empty()]
    if not have:
        return ""
    show_run = len(runs) > 1
    parts = ["<h3>Finalists by cross-validation</h3>"]
    for run in have:
        fin = run.meta.get("finalists") or {}
        parts.append(note(NOTE.format(k=fin.get("k", "K"), f=fin.get("folds", "F"))))
        s = summary(run.finalists).with_columns(pl.lit(run.name).alias("run"))
        if s.is_empty():
            parts.append(message(f"run {run.name}: no fold model finished"))
            continue
        parts.append(fold_table_html(s, trials, show_run))
        parts.append(figure(figures.folds_figure(figures.folds_data(run.finalists),
                                                 f"Held-out fold Dice per finalist — {run.name}")))
        folds = run.finalists.filter(pl.col("split") == "cv")["fold"].n_unique()
        test = test_results(run.finalists.with_columns(pl.lit(folds).alias("fold_count")))
        if test.is_empty():
            parts.append(message(f"run {run.name}: the winners were not tested (no test cases, "
                                 f"or the fake trainable)"))
            continue
        parts.append(f"<h4>The winners' fold ensembles on the test set ({esc(run.name)})</h4>")
        parts.append(case_block(test, tables.SEED_METRICS, show_run))
    return "".join(parts)
