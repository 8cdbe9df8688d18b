"""The test table as text (the report's Table 1 layout), printed by `study.launch` and
`study.train`: per (phase, arch, metric) one column per case, the mean and its 95% CI."""

from __future__ import annotations

import polars as pl

from study.evaluation.postprocess import WORDS
from study.evaluation.stats import bootstrap_ci
from study.results import TABLE_METRICS, displayed_grid, displayed_test

GRID_WORDS = {"native": "native grid: predictions resampled to each case's source image, "
                        "compared with the original label file",
              "study": "study grid: the resampled training grid, not the source images"}


def format_test_table(metrics: pl.DataFrame) -> str:
    """The report's Table 1 layout as text: per (phase, arch, metric), one column per case,
    the mean and its 95% bootstrap CI (`study.evaluation.stats.bootstrap_ci`, as the report). The first
    line says which grid the numbers are on."""
    test = displayed_test(metrics).filter(pl.col("metric").is_in(list(TABLE_METRICS)))
    if test.is_empty():
        return "(no test results)"
    cases = sorted(test["case"].unique().to_list())
    head = ["phase", "arch", "metric", *cases, "mean", "95% CI"]
    lines = []
    for (phase, arch), g in test.sort("phase", "arch").group_by("phase", "arch",
                                                                  maintain_order=True):
        for metric in TABLE_METRICS:
            m = g.filter(pl.col("metric") == metric)
            vals = dict(zip(m["case"].to_list(), m["value"].to_list(), strict=True))
            cells = [f"{vals[c]:.4f}" if c in vals and vals[c] is not None else "-"
                     for c in cases]
            mean = m["value"].drop_nans().mean() if m.height else None
            ci = bootstrap_ci(m["value"].drop_nulls().to_list())
            lines.append([phase, arch, metric, *cells, "-" if mean is None else f"{mean:.4f}",
                          "-" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"])
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    where = GRID_WORDS[displayed_grid(test) or "study"]
    out = [f"({where})", *(fmt.format(*r) for r in [head, *lines])]
    pp = test.select("phase", "arch", pl.col("postprocessing").fill_null("none")).unique()
    if "postprocessing" in test.columns and (pp["postprocessing"] != "none").any():
        out.append("postprocessing (chosen on validation): " + "; ".join(
            f"{r['phase']}/{r['arch']}: {WORDS.get(r['postprocessing'], r['postprocessing'])}"
            for r in pp.sort("phase", "arch").iter_rows(named=True)))
    return "\n".join(out)
