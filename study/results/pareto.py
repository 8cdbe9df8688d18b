"""Dice against cost: the Pareto front of a run's trials, and the best model within a cost.

Which trials compete (`front_pool`): per phase, the trials that did not fail, have a finite
validation Dice and a recorded cost, at the highest budget any trial of that phase reached
(the full budget, unless a ``--time`` study stopped every trial before it): budget-aware, as
`study.results.ranked_trials` is, since a partial-budget Dice is not comparable.

The front (`pareto_front`) is computed by Optuna's public multi-objective routine
(``Study.best_trials`` of an in-memory study with the directions maximise Dice, minimise
cost; the trials are added with ``create_trial``): a trial is on it when no other trial has
at least its Dice at no more cost and is better in one of the two. It is ordered cheapest
first (then higher Dice, then trial id): ``front`` = 0 is the cheapest model of the front.
"""

from __future__ import annotations

import logging
import math

import polars as pl

from study.errors import ConfigError

#: the cost a front is drawn against, and its words
COSTS = {"infer_s": "inference seconds per volume", "params": "parameters",
         "infer_peak_mb": "peak inference memory (MB)"}
DEFAULT_COST = "infer_s"


def front_pool(trials: pl.DataFrame, cost: str = DEFAULT_COST) -> pl.DataFrame:
    """The trials that compete on the front of their phase (module docstring)."""
    _check_cost(cost)
    ok = trials.filter((pl.col("status") != "ERROR") & pl.col(cost).is_not_null()
                       & pl.col("final_val_dice").is_not_null()
                       & pl.col("final_val_dice").is_finite()
                       & pl.col(cost).cast(pl.Float64).is_finite())
    return ok.filter(pl.col("budget") == pl.col("budget").max().over("phase"))


def pareto_front(trials: pl.DataFrame, cost: str = DEFAULT_COST) -> pl.DataFrame:
    """Per phase, the trials of `front_pool` on the Pareto front of (Dice up, ``cost``
    down), cheapest first, with a ``front`` column (0, 1, ... within the phase)."""
    pool = front_pool(trials, cost)
    parts = []
    for _, group in pool.group_by(["phase"], maintain_order=True):
        on = _front_rows(group["final_val_dice"].to_list(),
                         [float(v) for v in group[cost].to_list()])
        parts.append(group[on])
    if not parts:
        return pool.head(0).with_columns(pl.lit(None, pl.Int64).alias("front"))
    front = pl.concat(parts).sort(["phase", cost, "final_val_dice", "trial"],
                                  descending=[False, False, True, False])
    return front.with_columns(pl.int_range(0, pl.len()).over("phase").cast(pl.Int64)
                              .alias("front"))


def _front_rows(dice: list[float], cost: list[float]) -> list[int]:
    """Indices of the non-dominated (dice max, cost min) points, by Optuna."""
    import optuna

    if not dice:
        return []
    logger = optuna.logging.get_logger("optuna")
    level = logger.level
    logger.setLevel(logging.WARNING)  # no "A new study created in memory" line
    try:
        study = optuna.create_study(directions=["maximize", "minimize"])
        study.add_trials([optuna.trial.create_trial(values=[d, c], user_attrs={"row": i})
                          for i, (d, c) in enumerate(zip(dice, cost, strict=True))])
        rows = [t.user_attrs["row"] for t in study.best_trials]
    finally:
        logger.setLevel(level)
    return sorted(rows)


def within_cost(trials: pl.DataFrame, *, max_params: int | None = None,
                max_seconds: float | None = None) -> pl.DataFrame:
    """Per phase, the best trial (budget-aware: highest budget reached, then Dice) among those
    within ``max_params`` parameters and ``max_seconds`` inference seconds per volume; a
    phase with no such trial is left out. Trials without a recorded cost never qualify."""
    from study.results.trials import ranked_trials

    cond = (pl.col("status") != "ERROR") & pl.col("final_val_dice").is_not_null()
    if max_params is not None:
        cond &= pl.col("params").is_not_null() & (pl.col("params") <= int(max_params))
    if max_seconds is not None:
        cond &= pl.col("infer_s").is_not_null() & (pl.col("infer_s") <= float(max_seconds))
    return ranked_trials(trials.filter(cond), 1, by=("phase",))


def cheapest(trials: pl.DataFrame, cost: str) -> float | None:
    """The smallest recorded ``cost`` of the trials (for messages), None if none has one."""
    vals = [float(v) for v in trials[cost].to_list() if v is not None
            and math.isfinite(float(v))]
    return min(vals) if vals else None


def _check_cost(cost: str) -> None:
    if cost not in COSTS:
        raise ConfigError(f"cost {cost!r}: use one of {', '.join(COSTS)}")
