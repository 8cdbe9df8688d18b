"""study.evaluation.table: the text test table (layout, CIs, grid shown)."""

from __future__ import annotations

import polars as pl

from study.evaluation.table import format_test_table
from study.results import METRIC_SCHEMA


def _m(trial, it, case, metric, value, split="val", phase="arterial", arch="hybrid"):
    return {"study": "s", "trial": trial, "arch": arch, "phase": phase, "iteration": it,
            "split": split, "case": case, "metric": metric, "value": value}


def test_format_test_table_layout():
    rows = [_m("a", 40, c, m, v, split="test")
            for c, (p, r, d) in {"c1": (1.0, 0.5, 2 / 3), "c2": (0.5, 0.5, 0.5)}.items()
            for m, v in (("precision", p), ("recall", r), ("dice", d))]
    rows.append(_m("a", 40, "c1", "dice", 0.99))  # validation rows are not in the table
    text = format_test_table(pl.DataFrame(rows, schema=METRIC_SCHEMA))
    lines = text.splitlines()
    assert lines[0].startswith("(study grid")  # rows without a grid are study-grid rows
    assert lines[1].split() == ["phase", "arch", "metric", "c1", "c2", "mean", "95%", "CI"]
    # 2 cases: resampled means are the low value, the midpoint or the high value with
    # chances 1/4, 1/2, 1/4, so the percentile interval spans the two values
    assert lines[2].split() == ["arterial", "hybrid", "precision", "1.0000", "0.5000", "0.7500",
                                "[0.5000,", "1.0000]"]
    assert lines[3].split()[-2:] == ["[0.5000,", "0.5000]"]  # recall 0.5 and 0.5
    assert lines[4].split() == ["arterial", "hybrid", "dice", "0.6667", "0.5000", "0.5833",
                                "[0.5000,", "0.6667]"]
    assert format_test_table(pl.DataFrame(schema=METRIC_SCHEMA)) == "(no test results)"


def test_format_test_table_shows_the_native_grid_when_measured():
    rows = [{**_m("a", 40, c, "dice", v, split="test"), "grid": g}
            for c, v, g in (("c1", 0.5, "study"), ("c2", 0.7, "study"),
                            ("c1", 0.25, "native"), ("c2", 0.75, "native"))]
    lines = format_test_table(pl.DataFrame(rows, schema=METRIC_SCHEMA)).splitlines()
    assert lines[0].startswith("(native grid")
    assert lines[4].split()[:6] == ["arterial", "hybrid", "dice", "0.2500", "0.7500", "0.5000"]
