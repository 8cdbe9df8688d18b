"""How well the replay's lookup answers a point that was not recorded (issue 29).

A replay over the continuous space proposes points that were never trained; the fake
trainable answers each with the curve of the **nearest recorded configuration**
(`study.tune.fake.nearest_id`: categoricals matched exactly wherever some record has them,
then the Euclidean distance in the unit cube of lr, L2 and the lr factor after the switch, log
scale), averaged over the configuration's training seeds (`study.tune.fake.mean_curves`).

Why nearest and not a surrogate (e.g. an RBF interpolator per evaluation): the replayed
study then sees only curves that were really trained, with their real shapes (curves that
cross, early leaders that end worse: what ASHA is tested on) and the noise of real
training, and the lookup has no fitted hyperparameters (kernel, smoothing) that would shape
the landscape the samplers search. The price is a piecewise-constant landscape: a small
move in lr may change nothing, or jump to another curve. `held_out_error` measures what the
lookup costs: leave one recorded configuration out (all its seeds), answer its point from
the others, and compare the answered curve with its own at the rungs and the end.

Seeds: the trainable reports the mean over the training seeds (not one seed drawn per
trial): the replay's "true best" is then the configuration with the best expected curve,
and a seed's luck is not part of what the policies compete on. `noise_floor` gives the part
of the held-out error the seeds alone would make.
"""

from __future__ import annotations

import math

import numpy as np


def rung_iterations(iterations: int, every: int, grace: float = 0.2,
                    reduction_factor: int = 3) -> list[int]:
    """The evaluations at which ASHA judges (grace x rf^k of the budget, snapped up to an
    evaluation) and the budget: 160, 480, 800 for the cpu schedule at 800 / 80."""
    out, rung = [], grace * iterations
    while rung < iterations:
        out.append(min(iterations, int(math.ceil(rung / every - 1e-9)) * every))
        rung *= reduction_factor
    return sorted(set(out + [iterations]))


def held_out_error(table, scales: dict, at: list[int] | None = None) -> dict:
    """Leave-one-configuration-out error of the nearest-configuration lookup: for every
    recorded configuration, the mean curve of the nearest *other* one against its own mean
    curve; per evaluation in ``at`` (default `rung_iterations`): mean absolute error
    (``mae``), its median and maximum, and, for scale, the error of answering with the mean
    of all other configurations (``mae_mean_model``)."""
    from study.tune.fake import mean_curves, nearest_id

    curves = mean_curves(table)
    iterations = sorted(set(table["iteration"].to_list()))
    at = list(at or rung_iterations(iterations[-1], iterations[0]))
    errs: dict[int, list[float]] = {it: [] for it in at}
    base: dict[int, list[float]] = {it: [] for it in at}
    per = []
    for name, entry in curves.items():
        rest = {k: v for k, v in curves.items() if k != name}
        got = nearest_id(rest, entry["params"], scales)
        for it in at:
            errs[it].append(abs(rest[got]["dice"][it] - entry["dice"][it]))
            base[it].append(abs(np.mean([c["dice"][it] for c in rest.values()])
                                - entry["dice"][it]))
        per.append({"config": name, "nearest": got,
                    "error": {str(it): errs[it][-1] for it in at}})
    out = {"configurations": len(curves), "at": at, "per_config": per,
           "mae": {str(it): float(np.mean(errs[it])) for it in at},
           "median": {str(it): float(np.median(errs[it])) for it in at},
           "max": {str(it): float(np.max(errs[it])) for it in at},
           "mae_mean_model": {str(it): float(np.mean(base[it])) for it in at}}
    out["noise_floor"] = noise_floor(table, at)
    return out


def noise_floor(table, at: list[int]) -> dict | None:
    """Per evaluation: the mean absolute difference between two training seeds of the same
    configuration, divided by sqrt(2): the expected absolute difference of two 2-seed
    means whose configurations score the same (the seeds' share of `held_out_error`);
    None for a table with one seed per configuration."""
    import polars as pl

    if "seed" not in table.columns:
        return None
    keys = [c for c in ("design", "config") if c in table.columns]
    out = {}
    for it in at:
        g = table.filter(pl.col("iteration") == it).group_by(keys).agg(
            pl.col("val_dice").sort_by("seed").alias("v"))
        gaps = [abs(v[0] - v[1]) for v in g["v"].to_list() if len(v) >= 2]
        if not gaps:
            return None
        out[str(it)] = float(np.mean(gaps) / math.sqrt(2))
    return out
