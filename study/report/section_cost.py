"""Report: Dice against cost per run and phase, and the projected against the actual wall time
(issue 23)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from study.report import figures
from study.report.html import cell, esc, figure, fmt, message, note, table
from study.report.load import Run
from study.report.section_results import expected_phases

NOTE = ("Each dot is a trial at the highest budget reached in the phase (the full budget, "
        "unless a time budget stopped every trial earlier): its validation Dice against the "
        "seconds its final model takes to predict one volume on the study grid (measured once "
        "per trial with the study's own inference, on the trial's device). On the Pareto front "
        "(ringed) no other trial is at least as good for less. Use a front model with "
        "python -m study.apply.predict RUN --model pareto:N (or study.apply.export), or the "
        "best within a cost with --max-params / --max-seconds.")


def projection_html(run: Run) -> str:
    p = run.meta.get("projection") or {}
    if not p:
        return ""
    actual = p.get("actual_s") or run.meta.get("wall_s")
    took = f"; it took {fmt(float(actual) / 60, 'wall_s')} min " \
           f"({float(actual) / float(p['mid_s']) - 1:+.0%} of the median)" if actual else \
        "; the study has not finished"
    return note(f"Run {run.name}: projected {fmt(p['low_s'] / 60, 'wall_s')}–"
                f"{fmt(p['high_s'] / 60, 'wall_s')} min before the first trial (median "
                f"{fmt(p['mid_s'] / 60, 'wall_s')} min, from a measured warm-up and the "
                f"schedule){took}.")


def front_table(data: pl.DataFrame) -> str:
    front = data.filter(pl.col("front").is_not_null()).sort("front")
    headers = ["--model", "Trial", "Architecture", "Val Dice", "Seconds per volume",
               "Parameters", "Peak memory (MB)", "Measured on", "Budget"]
    rows = [[cell(esc(f"pareto:{r['front']}"), "k"), cell(esc(r["trial"]), "k"),
             cell(esc(r["arch"]), "k"), cell(fmt(r["final_val_dice"])),
             cell(f"{r['infer_s']:.3g}"),
             cell(f"{r['params']:,}" if r["params"] is not None else "–"),
             cell(fmt(r["infer_peak_mb"], "wall_s")), cell(esc(r["infer_device"] or "–"), "k"),
             cell(fmt(r["budget"]))] for r in front.to_dicts()]
    return table(headers, rows)


def cost_section(runs: Sequence[Run], trials: pl.DataFrame) -> str:
    """The "Dice against cost" blocks of every run and phase ("" when no run has costs nor a
    projection)."""
    parts = []
    for run in runs:
        t = trials.filter(pl.col("run") == run.name)
        if t.filter(pl.col("infer_s").is_not_null()).is_empty() and not run.meta.get(
                "projection"):
            continue
        parts.append(projection_html(run))
        for phase in expected_phases(run):
            data = figures.cost_data(t.filter(pl.col("phase") == phase))
            label = f"{run.name} · {phase}"
            parts.append(f"<h4>Dice against cost — {esc(label)}</h4>")
            if data.is_empty():
                parts.append(message(f"phase {phase}: no finished trial with a measured cost"))
                continue
            parts.append(figure(figures.cost_figure(data, f"Dice against cost — {label}")))
            parts.append(front_table(data))
    if not parts:
        return ""
    return "<h3>Dice against cost</h3>" + note(NOTE) + "".join(parts)
