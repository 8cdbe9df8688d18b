"""Finalists by cross-validation, the Ray-free parts: selection, fold summary, winner."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from study.results.finalists import (
    add_rows,
    fold_rows,
    format_summary,
    read_finalists,
    select_finalists,
    summary,
    winners,
)


def _trial(trial, arch, budget, dice, status="TERMINATED", phase="arterial"):
    return {"study": "s", "trial": trial, "arch": arch, "phase": phase,
            "config": json.dumps({"arch": arch, "lr": 1e-3}), "budget": budget,
            "max_budget": 40, "status": status, "stop_reason": "", "best_val_dice": dice,
            "wall_s": 1.0, "final_val_dice": dice, "checkpoint": None, "node": None,
            "params": None, "infer_s": None, "infer_peak_mb": None, "infer_device": None}


def test_finalists_are_ranked_across_architectures_budget_first():
    trials = pl.DataFrame([
        _trial("a", "unet2d", 40, 0.70), _trial("b", "hybrid", 40, 0.80),
        _trial("c", "hybrid", 20, 0.95, "STOPPED"),  # higher score, shorter training
        _trial("d", "unet2d", 40, 0.99, "ERROR"),  # failed: never a finalist
        _trial("e", "unet2d", 40, 0.75), _trial("f", "hybrid", 40, 0.60, phase="portal"),
    ])
    got = select_finalists(trials, 3)
    art = got.filter(pl.col("phase") == "arterial")
    assert art["trial"].to_list() == ["b", "e", "a"] and art["rank"].to_list() == [1, 2, 3]
    assert got.filter(pl.col("phase") == "portal")["trial"].to_list() == ["f"]


def _folds(rank, values, phase="arterial"):
    rows = []
    for fold, v in enumerate(values):
        rows += fold_rows({"study": "s", "phase": phase, "rank": rank, "trial": f"t{rank}",
                           "arch": "unet2d", "config": "{}"}, fold,
                          {"iteration": 40, "status": "TERMINATED", "val_dice": v,
                           "rows": [{"case": f"c{fold}", "metric": "dice", "value": v}]})
    return rows


def test_winner_is_the_best_mean_over_folds_and_a_failed_fold_disqualifies(tmp_path):
    add_rows(tmp_path, _folds(1, [0.6, 0.7, 0.8]) + _folds(2, [0.9, 0.5, 0.85])
             + _folds(3, [0.99, float("nan"), 0.99]))
    table = read_finalists(tmp_path)
    s = summary(table).sort("rank")
    assert s["mean"].to_list()[:2] == pytest.approx([0.7, 0.75])
    assert s["sd"][0] == pytest.approx(0.1)  # sample standard deviation of 0.6, 0.7, 0.8
    assert s["mean"][2] is None and s["failed"][2] == 1  # the NaN fold failed
    assert s["min"][1] == pytest.approx(0.5) and s["max"][1] == pytest.approx(0.9)
    assert s["winner"].to_list() == [False, True, False]
    assert winners(table)["arterial"]["rank"] == 2
    text = format_summary(table)
    assert "#2 unet2d" in text and "mean 0.7500" in text and "<- winner" in text
    assert "failed fold(s)" in text
    # per-case held-out rows are kept, one per fold, beside the mean
    cv = table.filter((pl.col("case") != "mean") & (pl.col("rank") == 1))
    assert cv.sort("fold")["case"].to_list() == ["c0", "c1", "c2"]


def test_ties_go_to_the_better_search_rank_and_rows_merge(tmp_path):
    add_rows(tmp_path, _folds(2, [0.8, 0.8]) + _folds(1, [0.8, 0.8]))
    assert winners(read_finalists(tmp_path))["arterial"]["rank"] == 1
    add_rows(tmp_path, _folds(1, [0.1, 0.1]))  # a rerun replaces the rows, never duplicates
    table = read_finalists(tmp_path)
    assert table.height == 8 and winners(table)["arterial"]["rank"] == 2
    assert math.isclose(summary(table).filter(pl.col("rank") == 1)["mean"][0], 0.1)
