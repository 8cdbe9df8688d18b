"""Section 1: the seed's Table 1 generated (per-case test metrics), beyond-seed metrics and
the seed's published means as a reference block."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from study.report import figures, tables
from study.report.html import cell, esc, figure, fmt, message, note, table
from study.report.load import Run


# Every metric is defined for every case (study.metrics.case_metrics never gives NaN), so a
# dash can only mean a missing value.
DASH_NOTE = ("– = not evaluated. Every metric is defined for every case: a case with no tumor "
             "predicted scores precision 0 (recall 0, Dice 0), and 1 when the truth is empty too.")


def expected_phases(run: Run) -> list[str]:
    """Phases of a run: study.json "phases" first, then any seen in its tables."""
    phases = [str(p) for p in (run.meta.get("phases") or []) if isinstance(p, str | int)]
    for df in (run.trials, run.metrics):
        for p in df.get_column("phase").drop_nulls().unique().sort().to_list():
            if p not in phases:
                phases.append(p)
    return phases


def case_table_html(wide: pl.DataFrame, best: pl.DataFrame, show_run: bool) -> str:
    """Rows (run, phase, arch, metric); one column per case ("1" + id) and the mean."""
    cases = [c for c in tables.value_columns(wide) if c != "mean"]
    headers = (["Run"] if show_run else []) + ["Phase", "Model", "Metric"]
    headers = [esc(h) for h in headers]
    headers += [f"{i}<br><small>{esc(c)}</small>" for i, c in enumerate(cases, 1)] + ["Mean"]
    recs = wide.to_dicts()
    flags = best.to_dicts()
    group_len: dict[tuple, int] = {}
    for r in recs:
        for key in ((r["run"], r["phase"]), (r["run"], r["phase"], r["arch"])):
            group_len[key] = group_len.get(key, 0) + 1
    rows, seen = [], set()
    for r, f in zip(recs, flags, strict=True):
        tds = []
        pkey, akey = (r["run"], r["phase"]), (r["run"], r["phase"], r["arch"])
        if pkey not in seen:
            seen.add(pkey)
            if show_run:
                tds.append(cell(esc(r["run"]), "k", group_len[pkey]))
            tds.append(cell(esc(r["phase"]), "k", group_len[pkey]))
        if akey not in seen:
            seen.add(akey)
            tds.append(cell(esc(r["arch"]), "k", group_len[akey]))
        tds.append(cell(esc(tables.METRIC_LABELS.get(r["metric"], r["metric"])), "k"))
        for c in [*cases, "mean"]:
            v = r.get(c)
            cls = "best" if f.get(c) else ("na" if v is None else "")
            tds.append(cell(fmt(v, r["metric"]), cls, title="not evaluated" if v is None else ""))
        rows.append(tds)
    return table(headers, rows, header_html=True)


def seed_table_html(comp: pl.DataFrame) -> str:
    headers = ["Phase", "Model (seed)", "Source", "Architecture", "Precision", "Recall", "Dice"]
    rows, classes = [], []
    for r in comp.to_dicts():
        rows.append([cell(esc(r["phase"]), "k"), cell(esc(r["model"]), "k"), cell(esc(r["source"]), "k"),
                     cell(esc(r["arch"]), "k")] + [cell(fmt(r[m], m)) for m in tables.SEED_METRICS])
        classes.append("seed" if r["source"] == "seed report" else "")
    return table(headers, rows, row_classes=classes)


def _block(results: pl.DataFrame, metrics: Sequence[str], show_run: bool) -> str:
    wide = tables.case_table(results, metrics)
    if wide.is_empty():
        return message("none of these metrics in the test results")
    return case_table_html(wide, tables.best_cells(wide), show_run)


def _grid_words(grids: dict[str, str]) -> str:
    native = sorted(r for r, g in grids.items() if g == "native")
    study = sorted(r for r, g in grids.items() if g != "native")
    words = []
    if native:
        words.append("Measured on the native grid: each prediction resampled to its case's "
                     "source image and compared with the original label file at its voxel "
                     "spacing" + (f" (runs {', '.join(native)})" if study else "") + ".")
    if study:
        words.append("Measured on the study grid (the resampled training grid, not the source "
                     "images)" + (f": runs {', '.join(study)}" if native else "") + ".")
    return " ".join(words) or "No test results."


def results_section(runs: Sequence[Run], metrics: pl.DataFrame, trials: pl.DataFrame) -> str:
    results = tables.test_results(metrics, trials)
    parts = [note(
        "Test set, one column per test case (number and case id), the mean over the row's cases "
        "last. Each row block is the best trial (by validation Dice) of one architecture for one "
        "phase. Highlighted: the best value of each column among the architectures of a phase "
        "(lowest for HD95, highest otherwise). " + DASH_NOTE
    )]
    parts.append(note(_grid_words(tables.test_grids(metrics))))
    for run in runs:
        have = set(results.filter(pl.col("run") == run.name).get_column("phase").unique().to_list())
        for phase in expected_phases(run):
            if phase not in have:
                parts.append(message(f"run {run.name}, phase {phase}: no test results yet "
                                     f"(no trial of this phase finished, or the test evaluation did not run)"))
    if results.is_empty():
        parts.append(message("No test results in these runs: nothing to tabulate yet."))
        return "".join(parts)
    show_run = len(runs) > 1
    parts.append("<h3>Table 1 of the seed: precision, recall, Dice per test case</h3>")
    parts.append(_block(results, tables.SEED_METRICS, show_run))
    parts.append("<h3>Beyond the seed: HD95, lesion detection, z-continuity</h3>")
    parts.append(note("HD95: 95th percentile Hausdorff distance in mm (lower is better). Lesion "
                      "recall / precision: fraction of true / predicted connected lesions that "
                      "overlap the other mask. z-continuity: agreement of the prediction between "
                      "neighbouring axial slices (higher is smoother)."))
    parts.append(_block(results, tables.EXTRA_METRICS, show_run))
    parts.append("<h3>Reference: the seed's published means (Table 1 of the report)</h3>")
    parts.append(note("Seed rows (italic) are the course report's means over its 8 test cases; the "
                      "rows below each are this study's means for the corresponding architectures "
                      "(its own data and test cases, so only roughly comparable). The seed's 3D rows "
                      "are identical for both phases, probably a copy error in the report."))
    parts.append(seed_table_html(tables.seed_comparison(results)))
    means = figures.test_means_data(results)
    for run in runs:
        fig = figures.test_means_figure(means.filter(pl.col("run") == run.name),
                                        f"Test means vs the seed — {run.name}")
        if fig is not None:
            parts.append(figure(fig))
    return "".join(parts)
