import math

import polars as pl
import pytest

from study.report import tables
from study.report.load import load_runs

COLS = ["study", "trial", "arch", "phase", "iteration", "split", "case", "metric", "value"]


def _frames(run_dir):
    runs = load_runs([run_dir])
    return runs[0].metrics, runs[0].trials


def test_case_table_means_equal_hand_computed(run_dir):
    metrics, trials = _frames(run_dir)
    wide = tables.case_table(tables.test_results(metrics, trials), tables.SEED_METRICS)
    assert wide.columns == ["run", "phase", "arch", "metric", "case_a", "case_b", "case_c", "mean"]
    assert wide.height == 2 * 2 * 3  # phases x archs x (P, R, Dice)

    def row(phase, arch, metric):
        return wide.filter((pl.col("phase") == phase) & (pl.col("arch") == arch)
                           & (pl.col("metric") == metric)).to_dicts()[0]

    r = row("arterial", "unet2d", "precision")
    assert (r["case_a"], r["case_b"], r["case_c"]) == (0.5, 0.25, 1.0)
    assert r["mean"] == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert row("portal", "hybrid", "precision")["mean"] == pytest.approx((0.9 + 0.3 + 0.0) / 3)
    assert row("portal", "hybrid", "dice")["mean"] == pytest.approx((0.9 + 0.3 + 0.0) / 1.5 / 3)
    # seed order of architectures (2D before hybrid) and of metrics (P, R, Dice)
    first = wide.head(3).to_dicts()
    assert [x["arch"] for x in first] == ["unet2d"] * 3
    assert [x["metric"] for x in first] == ["precision", "recall", "dice"]


def test_best_cells_per_column_and_lower_is_better_for_hd95(run_dir):
    metrics, trials = _frames(run_dir)
    res = tables.test_results(metrics, trials)
    wide = tables.case_table(res, ["precision", "hd95"])
    best = tables.best_cells(wide)
    flags = {(r["phase"], r["arch"], r["metric"]): r for r in best.to_dicts()}
    # arterial precision: unet2d (0.5, 0.25, 1.0) vs hybrid (0.75, 0.5, 0.5)
    assert flags[("arterial", "hybrid", "precision")]["case_a"]
    assert not flags[("arterial", "unet2d", "precision")]["case_a"]
    assert flags[("arterial", "unet2d", "precision")]["case_c"]
    # hd95 = 10p + 1: the smaller precision has the better (smaller) HD95
    assert flags[("arterial", "unet2d", "hd95")]["case_a"]
    assert not flags[("arterial", "hybrid", "hd95")]["case_a"]


def test_no_best_mark_without_a_rival(run_dir):
    metrics, trials = _frames(run_dir)
    res = tables.test_results(metrics, trials).filter(pl.col("arch") == "hybrid")
    best = tables.best_cells(tables.case_table(res, ["precision"]))
    assert not any(best.select(pl.exclude(tables.ROW_KEYS)).to_numpy().ravel())


def _long(rows):
    return pl.DataFrame(rows, schema=COLS, orient="row")


def test_test_results_picks_trial_by_validation_and_drops_non_finite():
    m = _long([
        ("s", "t1", "unet2d", "arterial", 10, "test", "c1", "dice", 0.9),
        ("s", "t2", "unet2d", "arterial", 10, "test", "c1", "dice", 0.2),
        ("s", "t2", "unet2d", "arterial", 20, "test", "c1", "dice", 0.4),  # later iteration wins
        ("s", "t2", "unet2d", "arterial", 20, "test", "c2", "hd95", math.inf),
        ("s", "t2", "unet2d", "arterial", 20, "test", "c3", "hd95", 4.0),
    ])
    t = pl.DataFrame({"run": ["r", "r"], "trial": ["t1", "t2"], "budget": [30, 30],
                      "best_val_dice": [0.1, 0.5]})
    m = m.with_columns(pl.lit("r").alias("run"))
    res = tables.test_results(m, t)
    assert set(res["trial"]) == {"t2"}  # chosen by validation Dice, not by test Dice
    dice = res.filter(pl.col("metric") == "dice")["value"].to_list()
    assert dice == [0.4]
    wide = tables.case_table(res, ["hd95"])
    assert wide["c2"][0] is None and wide["mean"][0] == pytest.approx(4.0)


def test_several_tested_trials_budget_aware_choice():
    m = _long([
        ("s", "full", "unet2d", "arterial", 30, "test", "c1", "dice", 0.3),
        ("s", "short", "unet2d", "arterial", 10, "test", "c1", "dice", 0.8),
        ("s", "full", "unet2d", "arterial", 30, "test", "mean", "dice", 0.3),  # aggregate row
    ]).with_columns(pl.lit("r").alias("run"))
    t = pl.DataFrame({"run": ["r", "r"], "trial": ["full", "short"], "budget": [30, 10],
                      "final_val_dice": [0.2, 0.9], "best_val_dice": [0.2, 0.9]})
    res = tables.test_results(m, t)
    assert res["trial"].to_list() == ["full"]  # the longer-trained trial, like results.best_trials
    assert res["case"].to_list() == ["c1"]  # "mean" rows are not a test case


def test_seed_comparison_has_seed_rows_and_our_means(run_dir):
    metrics, trials = _frames(run_dir)
    comp = tables.seed_comparison(tables.test_results(metrics, trials))
    seed = comp.filter(pl.col("source") == "seed report")
    assert seed.height == 6
    hyb = comp.filter((pl.col("phase") == "portal") & (pl.col("model") == "hybrid"))
    assert hyb["source"].to_list() == ["seed report", "demo"]
    assert hyb["dice"][0] == pytest.approx(0.4447)
    assert hyb["precision"][1] == pytest.approx(0.4)


def test_trials_view_flattens_config_and_sorts_best_first(run_dir):
    _, trials = _frames(run_dir)
    view = tables.trials_view(trials)
    art = view.filter(pl.col("phase") == "arterial")
    assert art["best_val_dice"].to_list() == sorted(art["best_val_dice"].to_list(), reverse=True)
    assert "lr=0.001" in art["config"][0] and "arch=" not in art["config"][0]
