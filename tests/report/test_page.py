import json
import re

import polars as pl
import pytest

from study.report import build_report
from study.report.html import esc, fmt

from .conftest import write_run


def _outside_scripts(page: str) -> str:
    """The page without the inlined plotly.js and figure scripts."""
    return re.sub(r"<script[^>]*>.*?</script>", "", page, flags=re.S)


def test_full_page_is_self_contained(tmp_path, run_dir):
    out = build_report([run_dir], tmp_path / "r.html")
    page = out.read_text(encoding="utf-8")
    assert page.count("<script") >= 4 * 2  # plotly.js once + 4 figures per phase
    assert page.count("Plotly.newPlot") == 8 + 1  # 4 per phase + test means vs seed
    assert len(re.findall(r"<script type=\"text/javascript\">/\*\*\s*\n?\s*\* plotly.js", page)) <= 1
    rest = _outside_scripts(page)
    assert "http://" not in rest and "https://" not in rest
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=\"(?!data:|#)", page)
    assert "case_a" in rest and "0.5833" in rest  # table content
    assert rest.count('<img src="data:image/png;base64,') == 2 * 3 * 2 * 2  # phases x cases x archs x views
    assert out.stat().st_size < 15e6


def test_user_strings_are_escaped(tmp_path, dataset):
    evil = "<script>alert(1)</script>"
    run = write_run(tmp_path / "evil", study="<b>study</b>", data=dataset)
    m = pl.read_parquet(run / "metrics.parquet").with_columns(
        pl.col("case").replace({"case_a": evil}), pl.col("arch").replace({"hybrid": "hy<i>brid"}))
    m.write_parquet(run / "metrics.parquet")
    meta = json.loads((run / "study.json").read_text())
    meta["space"] = {"lr": "</pre><script>bad()</script>"}
    (run / "study.json").write_text(json.dumps(meta))
    page = build_report([run], tmp_path / "e.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page and "bad()</script>" not in page
    assert "&lt;b&gt;study&lt;/b&gt;" in page and "<b>study</b>" not in page
    assert "hy<i>brid" not in page


def test_empty_study_gives_a_page_saying_so(tmp_path):
    run = write_run(tmp_path / "empty", with_tables=False)
    page = build_report(run, tmp_path / "empty.html").read_text(encoding="utf-8")
    assert "no results yet" in page
    assert "abc123" in page  # provenance still shown
    # empty parquet tables (study started, nothing finished) read the same way
    run2 = write_run(tmp_path / "empty2")
    for f in ("metrics.parquet", "trials.parquet"):
        pl.read_parquet(run2 / f).head(0).write_parquet(run2 / f)
    page = build_report(run2, tmp_path / "empty2.html").read_text(encoding="utf-8")
    assert "no results yet" in page


def test_partial_study_missing_phase_and_no_pictures(tmp_path, dataset):
    run = write_run(tmp_path / "partial", data=dataset)
    meta = json.loads((run / "study.json").read_text())
    meta["phases"] = ["arterial", "portal", "delay"]
    del meta["data"]  # predictions exist, but the data set is unknown: no pictures
    (run / "study.json").write_text(json.dumps(meta))
    m = pl.read_parquet(run / "metrics.parquet")
    m.filter(~((pl.col("phase") == "portal") & (pl.col("split") == "test"))).write_parquet(
        run / "metrics.parquet")
    page = build_report(run, tmp_path / "p.html").read_text(encoding="utf-8")
    assert "phase portal: no test results yet" in page
    assert "phase delay: no test results yet" in page
    assert "phase delay: no trial reported yet" in page
    assert "study.json has no &quot;data&quot;" in page
    assert "phase delay: no predictions under predictions/delay/" in page


def test_escape_and_format_helpers():
    assert esc('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    assert fmt(None) == "–" and fmt(float("nan")) == "–"
    assert fmt(0.123456) == "0.1235" and fmt(12.345, "hd95") == "12.35"
    assert fmt(float("inf")) == "∞"


def test_two_runs_side_by_side(tmp_path, run_dir):
    import shutil

    shutil.copytree(run_dir, tmp_path / "again")
    page = build_report([run_dir, tmp_path / "again"], tmp_path / "two.html").read_text(encoding="utf-8")
    assert "demo (2)" in page
    assert "<th>Run</th>" in page  # Table 1 gets a run column when runs are side by side
    assert page.count("Plotly.newPlot") == 2 * (8 + 1)  # per run: 4 x 2 phases + test means


@pytest.mark.parametrize("case", ["trials_only", "metrics_only", "all_errors"])
def test_degenerate_studies_give_pages(tmp_path, case):
    run = write_run(tmp_path / case)
    if case == "trials_only":
        (run / "metrics.parquet").unlink()
    elif case == "metrics_only":
        (run / "trials.parquet").unlink()
    else:
        t = pl.read_parquet(run / "trials.parquet").with_columns(
            pl.lit("ERROR").alias("status"), pl.lit(None, pl.Float64).alias("best_val_dice"),
            pl.lit(None, pl.Float64).alias("final_val_dice"))
        t.write_parquet(run / "trials.parquet")
        m = pl.read_parquet(run / "metrics.parquet")
        m.filter(pl.col("split") == "train").write_parquet(run / "metrics.parquet")
    page = build_report(run, tmp_path / f"{case}.html").read_text(encoding="utf-8")
    assert "4. Provenance" in page
    if case != "metrics_only":
        assert "no test results yet" in page
    if case == "all_errors":
        assert "no validation results yet: no learning curves" in page
        assert "no trial with a validation result: no optimization history" in page
        assert "parameter importances need at least two finished trials" in page


def test_dash_means_not_evaluated_never_an_empty_prediction(run_dir):
    """Issue 13: the note said '– = undefined (e.g. no tumor predicted)', but an empty
    prediction scores precision 0 (study.evaluation.metrics); a dash is only a missing value."""
    from study.report.load import load_runs
    from study.report.section_results import results_section

    runs = load_runs([run_dir])
    m = runs[0].metrics
    html = results_section(runs, m, runs[0].trials)
    assert "no tumor predicted) or not evaluated" not in html
    assert "– = not evaluated." in html and "no tumor predicted scores precision 0" in html
    assert 'class="na"' not in html  # every case of the fixture is evaluated
    # drop one value: that cell, and only it, is a dash
    gone = m.filter(~((m["split"] == "test") & (m["case"] == "case_c") & (m["metric"] == "dice")
                      & (m["phase"] == "portal") & (m["arch"] == "hybrid")))
    html = results_section(runs, gone, runs[0].trials)
    assert html.count('title="not evaluated"') == 1


def test_exception_text_config_trial_ids_and_phases_are_escaped(tmp_path, dataset):
    # every string the tune layer writes into the tables can hold markup: a stop reason is
    # an exception's last line, a config holds user YAML values, phases come from the
    # data set's channel names
    reason = "RuntimeError: bad <img src=x onerror=alert(2)>"
    value = "<svg onload=alert(3)>"
    tid = "t<b>1</b>"
    phase = "arterial</h3><script>alert(4)</script>"
    run = write_run(tmp_path / "evil", data=dataset)
    trials = pl.read_parquet(run / "trials.parquet")
    first = trials["trial"][0]
    trials = trials.with_columns(
        pl.when(pl.col("trial") == first).then(pl.lit(tid)).otherwise("trial").alias("trial"),
        pl.when(pl.col("trial") == first).then(pl.lit("ERROR")).otherwise("status")
        .alias("status"),
        pl.when(pl.col("trial") == first).then(pl.lit(reason)).otherwise("stop_reason")
        .alias("stop_reason"),
        pl.col("config").str.replace('"loss": "sqdice"', json.dumps({"x": value})[1:-1]
                                     .replace('"x": ', '"loss": ')),
        pl.col("phase").replace({"arterial": phase}))
    trials.write_parquet(run / "trials.parquet")
    m = pl.read_parquet(run / "metrics.parquet").with_columns(
        pl.col("trial").replace({first: tid}), pl.col("phase").replace({"arterial": phase}))
    m.write_parquet(run / "metrics.parquet")
    meta = json.loads((run / "study.json").read_text())
    meta["phases"] = [phase if p == "arterial" else p for p in meta["phases"]]
    (run / "study.json").write_text(json.dumps(meta))
    assert value in "".join(trials["config"].to_list())  # the evil value is in a config
    page = build_report([run], tmp_path / "e.html").read_text(encoding="utf-8")
    for raw in (reason, value, tid, phase, "<script>alert(4)"):  # nowhere, scripts included
        assert raw not in page, raw
    rest = _outside_scripts(page)
    for raw in ("<img src=x", "<svg", "<b>1</b>", "</h3><script>"):
        assert raw not in rest, raw
    assert "RuntimeError: bad &lt;img src=x onerror=alert(2)&gt;" in rest  # shown, escaped
    assert "t&lt;b&gt;1&lt;/b&gt;" in rest
    assert "&lt;svg onload=alert(3)&gt;" in rest
    assert "arterial&lt;/h3&gt;&lt;script&gt;alert(4)&lt;/script&gt;" in rest
