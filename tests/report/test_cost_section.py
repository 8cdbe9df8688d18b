"""The report's "Dice against cost" blocks: the front of each phase and the projection."""

from __future__ import annotations

import json
import re

import polars as pl

from study.report import build_report
from study.report.figures.cost import cost_data

from .conftest import write_run

COSTS = {  # (phase, arch) of the full-budget trial -> (val Dice, seconds per volume, params)
    ("arterial", "unet2d"): (0.45, 2.0, 1000), ("arterial", "hybrid"): (0.40, 1.0, 500),
    ("portal", "unet2d"): (0.45, 1.0, 1000), ("portal", "hybrid"): (0.40, 2.0, 500),
}


def _with_costs(run):
    rows = pl.read_parquet(run / "trials.parquet").to_dicts()
    for r in rows:
        full = r["status"] == "TERMINATED"
        dice, seconds, params = COSTS[(r["phase"], r["arch"])] if full else \
            (r["final_val_dice"], 0.1, 10)
        r.update(final_val_dice=dice, infer_s=seconds, params=params, infer_peak_mb=25.0,
                 infer_device="cpu")
    pl.DataFrame(rows).write_parquet(run / "trials.parquet")
    meta = json.loads((run / "study.json").read_text())
    meta.update(projection={"low_s": 1500.0, "mid_s": 1800.0, "high_s": 2100.0,
                            "actual_s": 1980.0}, wall_s=1980.0)
    (run / "study.json").write_text(json.dumps(meta))
    return run


def test_front_per_phase_cheapest_first(tmp_path, dataset):
    run = _with_costs(write_run(tmp_path / "demo", data=dataset, predictions=False))
    trials = pl.read_parquet(run / "trials.parquet").with_columns(pl.lit("demo").alias("run"))
    art = cost_data(trials.filter(pl.col("phase") == "arterial"))
    # the trials stopped at 10 of 30 iterations do not compete, however cheap
    assert art.sort("infer_s")["trial"].to_list() == ["arterial_hybrid_00000",
                                                       "arterial_unet2d_00000"]
    assert art.sort("infer_s")["front"].to_list() == [0, 1]
    por = cost_data(trials.filter(pl.col("phase") == "portal")).sort("infer_s")
    assert por["front"].to_list() == [0, None]  # the hybrid is slower and worse


def test_page_shows_the_front_and_projection(tmp_path, dataset):
    run = _with_costs(write_run(tmp_path / "demo", data=dataset, predictions=False))
    page = build_report(run, tmp_path / "r.html").read_text()
    assert "Dice against cost — demo · arterial" in page
    assert "projected 25.00–35.00 min before the first trial (median 30.00 min" in page
    assert "it took 33.00 min (+10% of the median)" in page
    rows = re.findall(r"<td class=\"k\">pareto:(\d)</td><td class=\"k\">([a-z_0-9]+)</td>", page)
    assert rows == [("0", "arterial_hybrid_00000"), ("1", "arterial_unet2d_00000"),
                    ("0", "portal_unet2d_00000")]


def test_no_costs_no_section(tmp_path, dataset, run_dir):
    page = build_report(run_dir, tmp_path / "r.html").read_text()
    assert "Dice against cost" not in page
