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
the others, and compare the answered curve with its own at the rungs and the end; with
``method="rbf"`` it measures a thin-plate RBF surrogate (scipy.interpolate.RBFInterpolator
over `features`) the same way, for comparison.

Measured on the first table (64 grid points, one seed; ``python -m benchmarks.hpo_replay
lookup --table benchmarks/data/hpo_replay_curves.parquet``), mean absolute Dice error at
iterations 160 / 480 / 800 (the cpu schedule's rungs and the end): nearest 0.050 / 0.071 /
0.065, RBF (no smoothing) 0.042 / 0.019 / 0.026, the mean of the other configurations
0.050 / 0.078 / 0.077 (final Dice range 0.19-0.56, sd 0.11). On the grid the nearest
configuration is a factor 3 away in lr and barely beats the mean: between recorded points
the nearest landscape is far from the true one, and a surrogate is 2.5x closer. The replay
still uses nearest, because it keeps the replay's truth well defined (every answer, and so
the true best and the 95 / 99 % targets, is a recorded curve; a surrogate's best is an
extrapolation, and its curves are smoothed) - to be revisited on the v2 table, whose Sobol
points are denser in lr (the same command on it prints both and the seeds' noise floor).

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


def features(curves: dict[str, dict], scales: dict) -> np.ndarray:
    """One row per recorded configuration: the ``scales`` columns in the unit cube (log
    scale; a switch-only one is 1, the top of its range, where the configuration does not
    switch), the categoricals one-hot but for their first value (all 0: the polynomial
    part of the RBF holds it; a switch-only one all 0 without a switch); columns that are
    the same for every configuration are left out."""
    from study.tune.fake import SWITCH_ONLY

    params = [c["params"] for c in curves.values()]
    cols = []
    for name in params[0]:
        active = [name not in SWITCH_ONLY or _switch(p) for p in params]
        if name in scales:
            lo, hi = (math.log(v) for v in scales[name])
            cols.append([(math.log(float(p[name])) - lo) / (hi - lo) if a else 1.0
                         for p, a in zip(params, active, strict=True)])
            continue
        for value in sorted({str(p[name]) for p in params})[1:]:  # the first: all 0
            cols.append([float(a and str(p[name]) == value)
                         for p, a in zip(params, active, strict=True)])
    x = np.asarray(cols, dtype=float).T
    return x[:, x.std(axis=0) > 0]


def _switch(params: dict) -> bool:
    step = params.get("switch_step", "never")
    return step not in ("never", None) and float(step) < 1.0


def _predict(method: str, curves: dict, name: str, scales: dict, at: list[int],
             x: np.ndarray, smoothing: float) -> tuple[str | None, list[float]]:
    """The held-out configuration ``name``'s values at ``at`` from the others: the nearest
    one's (its name returned), or a thin-plate RBF (scipy) fitted on the others' values."""
    from study.tune.fake import nearest_id

    rest = {k: v for k, v in curves.items() if k != name}
    if method == "nearest":
        got = nearest_id(rest, curves[name]["params"], scales)
        return got, [rest[got]["dice"][it] for it in at]
    from scipy.interpolate import RBFInterpolator

    names = list(curves)
    i = names.index(name)
    keep = [j for j in range(len(names)) if j != i]
    y = np.asarray([[curves[names[j]]["dice"][it] for it in at] for j in keep])
    fit = RBFInterpolator(x[keep], y, kernel="thin_plate_spline", smoothing=smoothing)
    return None, [float(v) for v in fit(x[i:i + 1])[0]]


def held_out_error(table, scales: dict, at: list[int] | None = None,
                   method: str = "nearest", smoothing: float = 0.0) -> dict:
    """Leave-one-configuration-out error of the lookup: for every recorded configuration,
    the answer from the *other* configurations (``method`` "nearest": the nearest one's
    mean curve, what the replay uses; "rbf": a thin-plate RBF over `features` with
    ``smoothing``, for comparison) against its own mean curve; per evaluation in ``at``
    (default `rung_iterations`): mean absolute error (``mae``), its median and maximum,
    and, for scale, the error of answering with the mean of all other configurations
    (``mae_mean_model``)."""
    from study.tune.fake import mean_curves

    curves = mean_curves(table)
    iterations = sorted(set(table["iteration"].to_list()))
    at = list(at or rung_iterations(iterations[-1], iterations[0]))
    x = features(curves, scales) if method == "rbf" else None
    errs: dict[int, list[float]] = {it: [] for it in at}
    base: dict[int, list[float]] = {it: [] for it in at}
    per = []
    for name, entry in curves.items():
        got, values = _predict(method, curves, name, scales, at, x, smoothing)
        for it, v in zip(at, values, strict=True):
            errs[it].append(abs(v - entry["dice"][it]))
            base[it].append(abs(np.mean([c["dice"][it] for k, c in curves.items()
                                         if k != name]) - entry["dice"][it]))
        per.append({"config": name, "nearest": got,
                    "error": {str(it): errs[it][-1] for it in at}})
    out = {"configurations": len(curves), "at": at, "method": method, "per_config": per,
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
