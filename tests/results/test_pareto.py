"""The Pareto front of Dice against cost (`study.results.pareto`), on hand-made trials."""

from __future__ import annotations

import polars as pl
import pytest

from study.errors import ConfigError
from study.results import TRIAL_SCHEMA
from study.results.pareto import front_pool, pareto_front, within_cost


def _trials(rows) -> pl.DataFrame:
    """rows: (phase, trial, status, budget, dice, infer_s, params)."""
    out = []
    for phase, trial, status, budget, dice, seconds, params in rows:
        out.append({"study": "s", "trial": trial, "arch": "unet2d", "phase": phase,
                    "config": "{}", "budget": budget, "max_budget": 100, "status": status,
                    "stop_reason": None, "best_val_dice": dice, "wall_s": 1.0,
                    "final_val_dice": dice, "checkpoint": None, "node": None,
                    "params": params, "infer_s": seconds, "infer_peak_mb": 10.0,
                    "infer_device": "cpu"})
    return pl.DataFrame(out, schema=TRIAL_SCHEMA)


TRIALS = _trials([
    # phase, trial, status, budget, dice, s/volume, params
    ("arterial", "a", "TERMINATED", 100, 0.80, 1.0, 500),
    ("arterial", "b", "TERMINATED", 100, 0.70, 0.5, 100),   # cheapest: on the front
    ("arterial", "c", "TERMINATED", 100, 0.90, 3.0, 900),   # best: on the front
    ("arterial", "d", "TERMINATED", 100, 0.75, 2.0, 400),   # dominated by a
    ("arterial", "e", "TERMINATED", 100, 0.60, 0.6, 50),    # dominated by b (time)
    ("arterial", "f", "STOPPED", 50, 0.95, 0.1, 10),        # partial budget: not compared
    ("arterial", "g", "ERROR", 100, 0.99, 0.1, 10),         # failed
    ("arterial", "h", "TERMINATED", 100, 0.85, None, None),  # no cost recorded
    ("portal", "p", "TERMINATED", 100, 0.50, 2.0, 100),
    ("portal", "q", "TERMINATED", 100, 0.50, 1.0, 100),     # same Dice, cheaper: p dominated
])


def test_front_is_exact_and_cheapest_first():
    front = pareto_front(TRIALS)
    assert front.filter(pl.col("phase") == "arterial")["trial"].to_list() == ["b", "a", "c"]
    assert front.filter(pl.col("phase") == "arterial")["front"].to_list() == [0, 1, 2]
    assert front.filter(pl.col("phase") == "portal")["trial"].to_list() == ["q"]


def test_front_against_parameters():
    # by parameters: e (50) < b (100) < d (400) < a (500) < c (900); Dice 0.6, 0.7, 0.75,
    # 0.8, 0.9 rises with each, so all five are on the front
    front = pareto_front(TRIALS, cost="params").filter(pl.col("phase") == "arterial")
    assert front["trial"].to_list() == ["e", "b", "d", "a", "c"]


def test_equal_points_are_both_on_the_front():
    t = _trials([("a", "x", "TERMINATED", 100, 0.5, 1.0, 1),
                 ("a", "y", "TERMINATED", 100, 0.5, 1.0, 1)])
    assert pareto_front(t)["trial"].to_list() == ["x", "y"]


def test_pool_is_the_highest_budget_reached():
    # a --time study: nobody reached 100; the trials at 60 compete, those at 30 do not
    t = _trials([("a", "x", "STOPPED", 60, 0.5, 1.0, 1), ("a", "y", "STOPPED", 60, 0.4, 0.5, 1),
                 ("a", "z", "STOPPED", 30, 0.9, 0.1, 1)])
    assert sorted(front_pool(t)["trial"]) == ["x", "y"]
    assert pareto_front(t)["trial"].to_list() == ["y", "x"]


def test_no_cost_recorded_gives_an_empty_front():
    t = TRIALS.with_columns(pl.lit(None, pl.Float64).alias("infer_s"))
    front = pareto_front(t)
    assert front.is_empty() and "front" in front.columns


def test_best_within_a_cost():
    # within 1 s per volume: a (0.80) beats b (0.70) and e; f is faster and better but
    # stopped at half budget, and budget-aware selection keeps the full-budget trials first
    best = within_cost(TRIALS, max_seconds=1.0)
    assert dict(zip(best["phase"], best["trial"], strict=True)) == {"arterial": "a",
                                                                    "portal": "q"}
    assert within_cost(TRIALS, max_params=100).filter(
        pl.col("phase") == "arterial")["trial"].to_list() == ["b"]
    assert within_cost(TRIALS, max_params=100, max_seconds=0.55)["trial"].to_list() == ["b"]
    assert within_cost(TRIALS, max_params=5).is_empty()


def test_unknown_cost_is_a_config_error():
    with pytest.raises(ConfigError, match="cost 'watts'"):
        pareto_front(TRIALS, cost="watts")
