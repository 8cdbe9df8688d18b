"""Assemble the report page from run directories."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

from study.errors import DataError
from study.io import ensure_writable_dir, write_text_atomic
from study.report.html import message, page
from study.report.load import Run, all_metrics, all_trials, label_of, load_runs
from study.report.section_cost import cost_section
from study.report.section_media import pictures_section, provenance_section
from study.report.section_results import results_section
from study.report.section_study import study_section
from study.report.section_use import use_section


def render(runs: Sequence[Run], *, max_cases: int = 3, generated: str | None = None) -> str:
    """The HTML text of the report for already-loaded runs."""
    generated = generated or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = ", ".join(r.name for r in runs)
    title = f"Study report: {names}"
    metrics, trials = all_metrics(runs), all_trials(runs)
    if all(r.empty for r in runs):
        empty = message("This study has no results yet: no trial has reported and no test case "
                        "was evaluated. Run the study (python -m study.launch) and build the "
                        "report again.")
        sections = [("results", "1. Test results", empty), ("study", "2. The study", empty),
                    ("pictures", "3. Pictures", empty),
                    ("provenance", "4. Provenance", provenance_section(runs, generated))]
    else:
        sections = [
            ("results", "1. Test results", results_section(runs, metrics, trials)),
            ("study", "2. The study", study_section(runs, metrics, trials)
             + cost_section(runs, trials)),
            ("pictures", "3. Pictures", pictures_section(runs, max_cases)),
            ("provenance", "4. Provenance", provenance_section(runs, generated)),
            ("use", "5. Use the models", use_section(runs)),
        ]
    phases = sorted({p for r in runs for p in (r.meta.get("phases") or [])})
    mri = "multi-phase MRI" if len(phases) > 1 else "MRI"
    subtitle = (f"{len(runs)} run(s) · {trials.height} trial(s) · {label_of(runs)} "
                f"segmentation, {mri} · generated {generated}")
    return page(title, subtitle, sections)


def build_report(run_dirs: Sequence[str | os.PathLike] | str | os.PathLike,
                 out_path: str | os.PathLike, *, max_cases: int = 3) -> Path:
    """Write the self-contained HTML report of ``run_dirs`` to ``out_path`` (atomically).

    Raises ``DataError`` when a run directory is missing or holds no results; a run that has
    results but no finished trial gives a page saying so.
    """
    if isinstance(run_dirs, str | os.PathLike):
        run_dirs = [run_dirs]
    out_path = Path(out_path)
    ensure_writable_dir(out_path.parent, f"report {out_path}: its folder", DataError)
    runs = load_runs(list(run_dirs))
    return write_text_atomic(Path(out_path), render(runs, max_cases=max_cases))
