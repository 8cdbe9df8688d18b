"""Section 1: the seed's Table 1 generated (per-case test metrics), beyond-seed metrics and
the seed's published means as a reference block."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from study.report import figures, tables
from study.report.cases import case_block
from study.report.html import cell, esc, figure, fmt, message, note, table
from study.report.load import Run, label_of
from study.report.section_finalists import finalists_section

# Every metric is defined for every case (study.evaluation.metrics.case_metrics never gives NaN), so a
# dash can only mean a missing value.
DASH_NOTE = ("– = not evaluated. Every metric is defined for every case: a case with no {label} "
             "predicted scores precision 0 (recall 0, Dice 0), and 1 when the truth is empty too.")
SEED_PHASES = ("arterial", "portal")


def seed_comparable(runs: Sequence[Run]) -> str | None:
    """None when the seed's published means apply (a tumor label on arterial / portal
    phases), else why they do not."""
    label = label_of(runs)
    phases = {p for r in runs for p in (r.meta.get("phases") or [])}
    if label != "tumor":
        return (f"The seed's published means are for tumor segmentation; this study segments "
                f"{label}, so they are not shown.")
    if not phases & set(SEED_PHASES):
        return (f"The seed's published means are for the arterial and portal phases; this study "
                f"has {', '.join(sorted(phases)) or 'no phases'}, so they are not shown.")
    return None


def expected_phases(run: Run) -> list[str]:
    """Phases of a run: study.json "phases" first, then any seen in its tables."""
    phases = [str(p) for p in (run.meta.get("phases") or []) if isinstance(p, str | int)]
    for df in (run.trials, run.metrics):
        for p in df.get_column("phase").drop_nulls().unique().sort().to_list():
            if p not in phases:
                phases.append(p)
    return phases


def seed_table_html(comp: pl.DataFrame) -> str:
    headers = ["Phase", "Model (seed)", "Source", "Architecture", "Precision", "Recall", "Dice"]
    rows, classes = [], []
    for r in comp.to_dicts():
        rows.append([cell(esc(r["phase"]), "k"), cell(esc(r["model"]), "k"), cell(esc(r["source"]), "k"),
                     cell(esc(r["arch"]), "k")] + [cell(fmt(r[m], m)) for m in tables.SEED_METRICS])
        classes.append("seed" if r["source"] == "seed report" else "")
    return table(headers, rows, row_classes=classes)


CI_NOTE = (f"Under each mean: its 95% bootstrap confidence interval over the test cases "
           f"(percentile method, scipy.stats.bootstrap, {tables.BOOTSTRAP_RESAMPLES:,} resamples, "
           f"seed {tables.BOOTSTRAP_SEED}); none with fewer than two cases. With a handful of "
           f"test cases these intervals are wide: a difference between means inside them is "
           f"usually noise.")


def paired_table_html(tests: pl.DataFrame, show_run: bool) -> str:
    """The paired Wilcoxon tests (tables.paired_tests) as a table, the verdict in words."""
    headers = (["Run"] if show_run else []) + [
        "Compared", "Within", "A", "B", "Cases (non-zero differences)",
        "Median Dice difference (A − B)", "p-value", "Result"]
    rows = []
    for r in tests.to_dicts():
        p = r["p_value"]
        rows.append(([cell(esc(r["run"]), "k")] if show_run else []) + [
            cell(esc(r["compare"]), "k"), cell(esc(r["within"]), "k"), cell(esc(r["a"])),
            cell(esc(r["b"])), cell(f"{r['n']} ({r['n_effective']})"),
            cell(fmt(r["median_diff"], "dice")),
            cell("–" if p is None else f"{p:.4f}"), cell(esc(r["verdict"]))])
    return table(headers, rows)


def paired_section(results: pl.DataFrame, show_run: bool) -> str:
    tests = tables.paired_tests(results, "dice")
    parts = ["<h3>Paired comparisons: Wilcoxon signed-rank on per-case Dice</h3>"]
    if tests.is_empty():
        return "".join(parts) + message("only one architecture and one phase tested: nothing "
                                        "to compare")
    parts.append(note(
        "Each pair of architectures tested on a phase, and each pair of phases of an "
        "architecture, compared case by case on the same test cases (scipy.stats.wilcoxon, "
        "two-sided). Median difference = median over cases of A − B. 'not distinguishable at "
        "5%' means p ≥ 0.05: the test cases do not show that one is better. The test drops "
        "cases whose difference is exactly zero (scipy's default), so its effective n is the "
        "number of non-zero differences, shown in brackets. With n effective pairs the "
        "smallest possible p is 2 / 2^n (0.25 with 3, 0.0625 with 5, 0.0078 with 8): below 6 "
        "p < 0.05 is impossible, and the result says so."))
    parts.append(paired_table_html(tests, show_run))
    return "".join(parts)


def postprocessing_words(metrics: pl.DataFrame) -> str:
    """Which postprocessing the shown test numbers include, per (run, phase, arch)."""
    from study.evaluation.postprocess import WORDS

    shown = tables.shown_grid(metrics)
    if "postprocessing" not in shown.columns or shown.is_empty():
        return ""
    rows = shown.select("run", "phase", "arch", "postprocessing").unique().sort(
        "run", "phase", "arch").to_dicts()
    if all((r["postprocessing"] or "none") == "none" for r in rows):
        return ("Postprocessing: none (no candidate beat the raw prediction on the validation "
                "cases, or none was tried).")
    return ("Postprocessing chosen on the validation cases and applied to these test numbers "
            "(the raw ones are in metrics.parquet, postprocessing = none): " + "; ".join(
                f"{r['phase']}/{r['arch']}: {WORDS.get(r['postprocessing'], r['postprocessing'])}"
                for r in rows) + ".")


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
        "(lowest for HD95, highest otherwise). " + DASH_NOTE.format(label=label_of(runs))
    )]
    parts.append(note(_grid_words(tables.test_grids(metrics))))
    pp = postprocessing_words(metrics)
    if pp:
        parts.append(note(pp))
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
    parts.append(note(CI_NOTE))
    flags = tables.budget_flags(results, trials)
    if flags.filter(pl.col("full") == False).height:  # noqa: E712
        parts.append(note("† = the tested trial of that architecture stopped before the full "
                          "budget (ASHA or the time limit stopped every trial of it): the "
                          "numbers come from a shorter training, with the iterations it reached."))
    parts.append(case_block(results, tables.SEED_METRICS, show_run, trials))
    parts.append(paired_section(results, show_run))
    parts.append(finalists_section(runs, trials))
    parts.append("<h3>Beyond the seed: HD95, lesion detection, z-continuity</h3>")
    parts.append(note("HD95: 95th percentile Hausdorff distance in mm (lower is better). Lesion "
                      "recall / precision: fraction of true / predicted connected lesions that "
                      "overlap the other mask. z-continuity: agreement of the prediction between "
                      "neighbouring axial slices (higher is smoother)."))
    parts.append(case_block(results, tables.EXTRA_METRICS, show_run, trials))
    parts.append("<h3>Reference: the seed's published means (Table 1 of the report)</h3>")
    why_not = seed_comparable(runs)
    if why_not:
        parts.append(message(why_not))
        return "".join(parts)
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
