"""Section 2: the study — summary, optimization history, importances, parallel coordinates,
learning curves with ASHA stops, and the trials table, per run and phase."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from study.report import figures, tables
from study.report.html import cell, esc, figure, fmt, message, note, table
from study.report.load import Run
from study.report.section_results import expected_phases


def summary_html(trials: pl.DataFrame) -> str:
    """Per run and phase: trials by status and the best validation Dice with its arch."""
    if trials.is_empty():
        return ""
    best = (trials.filter(pl.col("best_val_dice").is_finite())
            .sort("best_val_dice", descending=True)
            .unique(subset=["run", "phase"], keep="first")
            .select("run", "phase", pl.col("arch").alias("best_arch"), "best_val_dice"))
    counts = trials.group_by(["run", "phase"]).agg(
        pl.len().alias("trials"),
        (pl.col("status") == "TERMINATED").sum().alias("full"),
        (pl.col("status") == "STOPPED").sum().alias("stopped"),
        (pl.col("status") == "ERROR").sum().alias("error"),
        pl.col("wall_s").sum().alias("wall_s"),
    )
    df = counts.join(best, on=["run", "phase"], how="left").sort(["run", "phase"])
    headers = ["Run", "Phase", "Trials", "Full budget", "Stopped (ASHA)", "Error",
               "Best val Dice (any trial)", "Its architecture", "Trial time (s, sum)"]
    rows = [[cell(esc(r["run"]), "k"), cell(esc(r["phase"]), "k"), cell(fmt(r["trials"])),
             cell(fmt(r["full"])), cell(fmt(r["stopped"])), cell(fmt(r["error"])),
             cell(fmt(r["best_val_dice"])), cell(esc(r["best_arch"] or "–"), "k"),
             cell(fmt(r["wall_s"], "wall_s"))] for r in df.to_dicts()]
    return table(headers, rows)


def trials_table_html(trials: pl.DataFrame) -> str:
    view = tables.trials_view(trials)
    headers = ["Trial", "Architecture", "Status", "Budget reached", "Max budget",
               "Best val Dice", "Val Dice at budget", "Wall time (s)", "Stop reason", "Configuration"]
    rows = []
    for r in view.to_dicts():
        rows.append([
            cell(esc(r["trial"]), "k"), cell(esc(r["arch"]), "k"), cell(esc(r["status"]), "k"),
            cell(fmt(r["budget"])), cell(fmt(r["max_budget"])), cell(fmt(r["best_val_dice"])),
            cell(fmt(r["final_val_dice"])), cell(fmt(r["wall_s"], "wall_s")), cell(esc(r["stop_reason"] or ""), "k"),
            cell(f"<pre>{esc(r['config'])}</pre>", "k"),
        ])
    return table(headers, rows)


def phase_block(run: Run, phase: str, metrics: pl.DataFrame, trials: pl.DataFrame) -> str:
    ptrials = trials.filter((pl.col("run") == run.name) & (pl.col("phase") == phase))
    pmetrics = metrics.filter((pl.col("run") == run.name) & (pl.col("phase") == phase))
    label = f"{run.name} · {phase}"
    if ptrials.is_empty() and pmetrics.filter(pl.col("split") == "val").is_empty():
        return f"<h3>{esc(label)}</h3>" + message(f"phase {phase}: no trial reported yet")
    parts = [f"<h3>{esc(label)}</h3>"]
    hist = figures.history_data(ptrials)
    curves = figures.curves_data(pmetrics, ptrials)
    study, source = figures.phase_study(run, phase)
    pdata, dists = figures.parallel_data(study)
    grid = [
        figure(figures.history_figure(hist, f"Optimization history — {label}")
               if hist["value"].is_not_null().any() else None,
               "no trial with a validation result: no optimization history"),
        figure(figures.curves_figure(curves, f"Learning curves — {label}") if not curves.is_empty() else None,
               "no validation results yet: no learning curves"),
        figure(figures.importance_figure(study, f"Parameter importances — {label}"),
               "parameter importances need at least two finished trials that differ in a searched parameter"),
        figure(figures.parallel_figure(pdata, dists, f"Configurations — {label}"),
               "no finished trial with searched parameters: no parallel coordinates"),
    ]
    parts.append(f'<div class="grid">{"".join(grid)}</div>')
    parts.append(note(
        f"History: one dot per trial (open = ended before the full budget), the line is the best "
        f"so far. Learning curves: mean validation Dice per evaluation; X = stopped by ASHA, "
        f"dot = full budget. Importances and configurations: Optuna study {source}."
    ))
    if not ptrials.is_empty():
        parts.append("<h4>Trials</h4>" + trials_table_html(ptrials))
    return "".join(parts)


def study_section(runs: Sequence[Run], metrics: pl.DataFrame, trials: pl.DataFrame) -> str:
    parts = []
    if trials.is_empty():
        parts.append(message("No trial has finished in these runs yet: the study plots appear "
                             "once trials report results."))
    parts.append(summary_html(trials))
    for run in runs:
        phases = expected_phases(run)
        if not phases:
            parts.append(f"<h3>{esc(run.name)}</h3>" + message("this run has no trials yet"))
        for phase in phases:
            parts.append(phase_block(run, phase, metrics, trials))
    return "".join(parts)
