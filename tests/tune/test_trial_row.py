"""``trial_row``: the status and stop reason a finished Ray trial is recorded with."""

from __future__ import annotations

import math

import pytest

from study.tune.recorder import trial_row


def _row(last: dict, error: str | None = None, best=None) -> dict:
    return trial_row(study="s", phase="arterial", trial_id="t1",
                     config={"arch": "hybrid", "lr": 1e-3, "hybrid.lr": 1e-3}, last=last,
                     max_budget=40, best=best, checkpoint=None, error=error)


def test_full_budget_finite_dice_is_terminated():
    row = _row({"iteration": 40, "val_dice": 0.5}, best=0.625)
    assert (row["status"], row["stop_reason"]) == ("TERMINATED", "full budget")
    assert row["best_val_dice"] == 0.625 and row["final_val_dice"] == 0.5


def test_early_end_is_stopped_by_asha():
    row = _row({"iteration": 10, "val_dice": 0.25})
    assert (row["status"], row["stop_reason"]) == ("STOPPED",
                                                   "stopped by ASHA at iteration 10")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_last_dice_is_an_error(bad):
    row = _row({"iteration": 40, "val_dice": bad}, best=bad)
    assert row["status"] == "ERROR"
    assert row["stop_reason"] == f"non-finite validation Dice ({bad}) at iteration 40"
    assert row["best_val_dice"] is None and row["final_val_dice"] is None


def test_no_dice_reported_is_not_an_error():
    assert _row({"iteration": 40})["status"] == "TERMINATED"


def test_ray_error_wins_over_the_dice():
    row = _row({"iteration": 5, "val_dice": math.nan},
               error="Traceback ...\nFloatingPointError: NaN loss at iteration 5\n")
    assert row["status"] == "ERROR"
    assert row["stop_reason"] == "FloatingPointError: NaN loss at iteration 5"
