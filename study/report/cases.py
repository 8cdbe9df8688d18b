"""The per-case table of test metrics (the seed's Table 1 layout) as HTML: used by the
results section and the finalists section."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from study.report import tables
from study.report.html import cell, esc, fmt, message, table


def case_table_html(wide: pl.DataFrame, best: pl.DataFrame, show_run: bool, *,
                    cis: pl.DataFrame | None = None, flags: pl.DataFrame | None = None) -> str:
    """Rows (run, phase, arch, metric); one column per case ("1" + id) and the mean.
    ``cis`` (tables.mean_cis) adds the 95% CI under each mean; ``flags`` (tables.budget_flags)
    marks an architecture whose tested trial stopped before the full budget (†)."""
    ci = {} if cis is None else {(r["run"], r["phase"], r["arch"], r["metric"]): r
                                 for r in cis.to_dicts()}
    short = {} if flags is None else {(r["run"], r["phase"], r["arch"]): r
                                      for r in flags.filter(pl.col("full") == False).to_dicts()}  # noqa: E712
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
            cut = short.get(akey)
            mark = "" if cut is None else (f'<br><small class="flag">† {cut["budget"]} of '
                                           f'{cut["max_budget"]} iterations</small>')
            tds.append(cell(esc(r["arch"]) + mark, "k", group_len[akey],
                            title="" if cut is None else "the tested trial did not reach the "
                            "full budget"))
        tds.append(cell(esc(tables.METRIC_LABELS.get(r["metric"], r["metric"])), "k"))
        for col in [*cases, "mean"]:
            v = r.get(col)
            cls = "best" if f.get(col) else ("na" if v is None else "")
            text = fmt(v, r["metric"])
            c = ci.get((r["run"], r["phase"], r["arch"], r["metric"])) if col == "mean" else None
            if c is not None and c["ci_low"] is not None:
                text += (f'<br><small class="ci">[{fmt(c["ci_low"], r["metric"])}, '
                         f'{fmt(c["ci_high"], r["metric"])}]</small>')
            tds.append(cell(text, cls, title="not evaluated" if v is None else ""))
        rows.append(tds)
    return table(headers, rows, header_html=True)



def case_block(results: pl.DataFrame, metrics: Sequence[str], show_run: bool,
           trials: pl.DataFrame | None = None) -> str:
    wide = tables.case_table(results, metrics)
    if wide.is_empty():
        return message("none of these metrics in the test results")
    flags = None if trials is None else tables.budget_flags(results, trials)
    return case_table_html(wide, tables.best_cells(wide), show_run,
                           cis=tables.mean_cis(results, metrics), flags=flags)
