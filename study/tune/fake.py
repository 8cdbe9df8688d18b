"""A fake trainable with the engine's calling convention, for fast tuner tests.

``train(kw, ...)`` walks the iterations like ``study.train.engine.train``: it reports at every
``eval_every`` with a checkpoint directory (``state.json``), resumes from one, and its
validation Dice depends only on the config and the iteration:

- ``x = (log10(lr) + 5) / 3`` clipped to [0, 1] (lr 1e-5 -> 0, lr 1e-2 -> 1);
- plain: ``dice(f) = q(x) * (1 - exp(-4 f))`` with ``f = iteration / iterations`` and
  ``q`` peaking at x = 0.6;
- ``misleading: true``: ``dice(f) = x (0.8 (1 - exp(-20 f)) - 0.6 f) + (1 - x) 0.7 f``:
  a high lr leads early and ends worst, so partial-budget scores mislead.

Options (``fake:`` in the search-space YAML): ``misleading``, ``sleep`` (seconds per
evaluation interval), ``crash_lr_above`` (raise RuntimeError), ``nan_lr_below`` (raise
FloatingPointError like a NaN loss), ``log_starts`` (append "trial start_iteration" lines
to that file: tests use it to prove no finished trial is run twice), ``replay`` (a parquet
table of recorded learning curves, `replay_curve`: the trial reports the recorded
validation Dice of its configuration instead of the formula; the HPO replay benchmark),
``checkpoints`` (default true; false: report without a checkpoint, as an evaluation with
nothing to save would: the replay's speed), ``cost`` (known model costs, `cost`: ``{ARCH or
default: {params, infer_s, infer_peak_mb}}``, a number or ``{per_lr: X}`` = X * lr / 1e-3
each; recorded as the trial's cost columns).

Replay of a table recorded over a continuous space (issue 29; `replay_entry`): ``replay``
may be a mapping ``{table: PATH, nearest: ..., time_scale: ..., log_events: ...}`` (the
space's ``fake:`` keys are fixed, so the new options live under ``replay``; `replay_options`):
``nearest: {COLUMN: [low, high], ...}`` answers a proposed point with the *nearest recorded
configuration* (`nearest_id`: categoricals matched exactly where any record has them,
distance in the unit cube of the named columns, log scale) instead of an exact match; a
table with a ``seed`` column is answered with the mean over its training seeds (`mean_curves`).
``time_scale: S`` sleeps S x the recorded seconds of each evaluation before reporting it
(mean over seeds), so that trials running side by side report in the order their recorded
costs give; ``log_events: FILE`` appends one JSON line ``{trial, iteration, t}`` per
evaluation just before it is reported (the order of events when trials run side by side).
"""

from __future__ import annotations

import json
import math
import time
from functools import lru_cache
from pathlib import Path

from study.errors import ConfigError

#: columns of a replay table that are not parameters of the configuration
REPLAY_VALUES = ("config", "iteration", "val_dice", "val_precision", "val_recall",
                 "train_loss", "seconds", "design", "seed")
#: parameters the engine uses only when the learning rate switches (study.tune.searcher's)
SWITCH_ONLY = ("lr_after_switch", "lrdehl")


def curve(lr: float, frac: float, misleading: bool) -> float:
    x = min(1.0, max(0.0, (math.log10(lr) + 5.0) / 3.0))
    if misleading:
        return x * (0.8 * (1 - math.exp(-20 * frac)) - 0.6 * frac) + (1 - x) * 0.7 * frac
    q = 0.05 + 0.85 * math.exp(-(((x - 0.6) / 0.35) ** 2))
    return q * (1 - math.exp(-4 * frac))


@lru_cache(maxsize=4)
def _replay_table(path: str):
    import polars as pl

    if not Path(path).is_file():
        raise ConfigError(f"fake.replay: no table at {path}; record one with "
                          f"python -m benchmarks.hpo_replay record")
    return pl.read_parquet(path)


def _table_value(column: str, kw: dict):
    """The trial's value of a replay-table parameter column, as the table writes it."""
    if column == "switch_step":  # the table keeps the fraction of the budget (or never)
        step = kw.get("switch_step")
        return "never" if step is None else f"{int(step) / int(kw['iterations']):g}"
    if column not in kw:
        raise ConfigError(f"fake.replay: the table has parameter {column!r}, which the space "
                          f"does not set")
    return kw[column]


def replay_curve(path: str | Path, kw: dict) -> dict[int, float]:
    """Recorded validation Dice by iteration of the table's configuration equal to ``kw``'s
    parameters (floats compared to 1e-9, relative); a ConfigError when there is none or the
    budget differs from the recorded one."""
    return _exact(path, kw)[0]


def _exact(path: str | Path, kw: dict) -> tuple[dict[int, float], dict[int, float]]:
    """`replay_curve`'s Dice by iteration and the recorded seconds (means over seeds)."""
    import polars as pl

    table = _replay_table(str(path))
    cond = pl.lit(True)
    for column in (c for c in table.columns if c not in REPLAY_VALUES):
        value = _table_value(column, kw)
        if isinstance(value, float):
            cond &= ((pl.col(column) - value).abs() <= 1e-9 * abs(value))
        else:
            cond &= pl.col(column) == value
    rows = table.filter(cond).sort("iteration")
    if rows.is_empty():
        raise ConfigError(f"fake.replay: no configuration of {path} has "
                          f"{ {c: _table_value(c, kw) for c in table.columns if c not in REPLAY_VALUES} }")
    if "seconds" not in rows.columns:
        rows = rows.with_columns(seconds=pl.lit(0.0))
    if "seed" in table.columns:  # several training seeds: their mean
        rows = rows.group_by("iteration").agg(pl.col("val_dice").mean(),
                                              pl.col("seconds").mean()).sort("iteration")
    curve_ = dict(zip(rows["iteration"].to_list(), rows["val_dice"].to_list(), strict=True))
    if max(curve_) != int(kw["iterations"]):
        raise ConfigError(f"fake.replay: {path} was recorded to {max(curve_)} iterations; set the "
                          f"budget's iterations to that (it is {kw['iterations']})")
    return curve_, dict(zip(rows["iteration"].to_list(), rows["seconds"].to_list(), strict=True))


def _switches(step) -> bool:
    return step not in ("never", None) and float(step) < 1.0


def record_id(row: dict) -> str:
    """A recorded configuration's name: ``DESIGN:CONFIG`` (``CONFIG`` without a design)."""
    return f"{row['design']}:{row['config']}" if row.get("design") is not None \
        else str(row["config"])


def mean_curves(table) -> dict[str, dict]:
    """Recorded configuration (`record_id`) -> ``{"params": {column: value}, "dice": {it:
    mean val Dice}, "seconds": {it: mean seconds}}``, means over the training seeds (a table
    without a ``seed`` column has one curve per configuration: its values as recorded)."""
    import polars as pl

    keys = [c for c in ("design", "config") if c in table.columns]
    params = [c for c in table.columns if c not in REPLAY_VALUES]
    if "seconds" not in table.columns:
        table = table.with_columns(seconds=pl.lit(0.0))
    agg = table.group_by([*keys, *params, "iteration"]).agg(
        pl.col("val_dice").mean(), pl.col("seconds").mean()).sort([*keys, "iteration"])
    out: dict[str, dict] = {}
    for row in agg.iter_rows(named=True):
        entry = out.setdefault(record_id(row), {"params": {c: row[c] for c in params},
                                                "dice": {}, "seconds": {}})
        entry["dice"][int(row["iteration"])] = float(row["val_dice"])
        entry["seconds"][int(row["iteration"])] = float(row["seconds"])
    return out


@lru_cache(maxsize=4)
def _mean_curves(path: str) -> dict[str, dict]:
    return mean_curves(_replay_table(path))


def table_point(kw: dict, columns) -> dict:
    """A trial's values of the table's parameter ``columns``, as the table writes them; the
    switch-only ones are left out when the trial does not switch (the engine ignores them)."""
    switch = _table_value("switch_step", kw) if "switch_step" in columns else "never"
    return {c: _table_value(c, kw) for c in columns
            if c not in SWITCH_ONLY or _switches(switch)}


def _unit(v: float, bounds) -> float:
    lo, hi = (math.log(float(b)) for b in bounds[:2])
    return (math.log(float(v)) - lo) / (hi - lo)


def nearest_id(curves: dict[str, dict], point: dict, scales: dict) -> str:
    """The recorded configuration nearest to ``point`` (table form, `table_point`).

    Nearest first by the number of categorical parameters that differ (0 wherever some
    record has the point's categoricals: they then match exactly), then by the Euclidean
    distance over the ``scales`` columns (``{column: [low, high]}``) in the unit cube, log
    scale; ties go to the first record. A switch-only parameter counts only when both the
    point and the record switch (the engine ignores it otherwise)."""
    def key(item):
        rec = item[1]["params"]
        both = _switches(point.get("switch_step", "never")) and \
            _switches(rec.get("switch_step", "never"))
        use = [c for c in rec if c in point and (c not in SWITCH_ONLY or both)]
        miss = sum(rec[c] != point[c] for c in use if c not in scales)
        dist = sum((_unit(rec[c], scales[c]) - _unit(point[c], scales[c])) ** 2
                   for c in use if c in scales)
        return (miss, dist)

    if not curves:
        raise ConfigError("fake.replay: the table has no recorded configuration")
    return min(curves.items(), key=key)[0]


def replay_options(options: dict) -> dict:
    """``options`` with a mapping ``replay`` flattened: ``replay`` becomes its ``table`` and
    its other keys (``nearest``, ``time_scale``, ``log_events``) options of their own."""
    replay = options.get("replay")
    if not isinstance(replay, dict):
        return options
    if "table" not in replay:
        raise ConfigError("fake.replay: a mapping needs table: PATH (the recorded curves)")
    return {**options, **replay, "replay": replay["table"]}


def replay_entry(options: dict, kw: dict) -> dict:
    """``{"dice": {it: v}, "seconds": {it: s}}`` answering the trial ``kw`` from
    ``options["replay"]``: the nearest recorded configuration's mean curve with
    ``options["nearest"]``, else the exact match (`replay_curve`; seconds 0 where the
    table has none)."""
    options = replay_options(options)
    path = str(options["replay"])
    if not options.get("nearest"):
        dice, seconds = _exact(path, kw)
        return {"dice": dice, "seconds": seconds}
    curves = _mean_curves(path)
    columns = next(iter(curves.values()))["params"] if curves else {}
    entry = curves[nearest_id(curves, table_point(kw, columns), options["nearest"])]
    if max(entry["dice"]) != int(kw["iterations"]):
        raise ConfigError(f"fake.replay: {path} was recorded to {max(entry['dice'])} "
                          f"iterations; set the budget's iterations to that "
                          f"(it is {kw['iterations']})")
    return entry


def _pause(options: dict, seconds: dict, it: int, every: int) -> None:
    """The recorded cost of the evaluation at ``it`` times ``time_scale`` (else ``sleep``)."""
    scale = float(options.get("time_scale") or 0.0)
    if scale and it in seconds:
        time.sleep(max(0.0, scale * (seconds[it] - seconds.get(it - every, 0.0))))
    else:
        time.sleep(float(options.get("sleep", 0.0)))


def _log_event(options: dict, trial_id: str, it: int) -> None:
    if options.get("log_events"):
        with open(options["log_events"], "a", encoding="utf-8") as f:
            f.write(json.dumps({"trial": trial_id, "iteration": it, "t": time.time()}) + "\n")


def case_rows(score: float, cases: list[str]) -> list[dict]:
    """Per-case metrics whose dice mean is ``score`` (case offsets sum to zero)."""
    n = len(cases)
    rows = []
    for i, case in enumerate(cases):
        d = min(1.0, max(0.0, score + 0.02 * (i - (n - 1) / 2)))
        rows += [{"case": case, "metric": "dice", "value": d},
                 {"case": case, "metric": "precision", "value": min(1.0, d + 0.1)},
                 {"case": case, "metric": "recall", "value": max(0.0, d - 0.1)}]
    return rows


def _mean(rows: list[dict], metric: str) -> float:
    vals = [r["value"] for r in rows if r["metric"] == metric]
    return sum(vals) / len(vals) if vals else float("nan")


def train(kw: dict, options: dict, val_cases: list[str], on_report, *, resume_from: Path | None,
          workdir: Path, trial_id: str = "") -> dict:
    lr, iterations, every = float(kw["lr"]), int(kw["iterations"]), int(kw["eval_every"])
    options = replay_options(options)
    start = 0
    if resume_from is not None:
        start = int(json.loads((Path(resume_from) / "state.json").read_text())["iteration"])
    if options.get("log_starts"):
        with open(options["log_starts"], "a", encoding="utf-8") as f:
            f.write(f"{trial_id} {start}\n")
    misleading = bool(options.get("misleading", False))
    entry = replay_entry(options, kw) if options.get("replay") else None
    recorded = entry["dice"] if entry is not None else None
    metrics: dict = {}
    for it in range(start + every, iterations + 1, every):
        _pause(options, entry["seconds"] if entry is not None else {}, it, every)
        if options.get("crash_lr_above") is not None and lr > options["crash_lr_above"]:
            raise RuntimeError(f"fake crash: lr {lr:.3g} above {options['crash_lr_above']}")
        if options.get("nan_lr_below") is not None and lr < options["nan_lr_below"]:
            raise FloatingPointError(f"NaN loss at iteration {it - every + 1}")
        if recorded is not None and it not in recorded:
            raise ConfigError(f"fake.replay: no recorded evaluation at iteration {it}; set "
                              f"eval_every to the table's ({min(recorded)})")
        score = recorded[it] if recorded is not None else curve(lr, it / iterations, misleading)
        rows = case_rows(score, val_cases)
        metrics = {"iteration": it, "val_dice": _mean(rows, "dice"),
                   "val_precision": _mean(rows, "precision"),
                   "val_recall": _mean(rows, "recall"), "train_loss": 1.0 - it / iterations,
                   "per_case": rows, "nan_loss": False}
        _log_event(options, trial_id, it)
        if not options.get("checkpoints", True):
            on_report(it, metrics, None)
            continue
        ckpt = Path(workdir) / f"checkpoint-{it}"
        ckpt.mkdir(parents=True, exist_ok=True)
        (ckpt / "state.json").write_text(json.dumps({"iteration": it, "lr": lr, "score": score}))
        (ckpt / "config.json").write_text(json.dumps(kw, default=list))
        on_report(it, metrics, ckpt)
    return metrics


def evaluate(kw: dict, options: dict, checkpoint_dir: Path, cases: list[str]) -> list[dict]:
    """Test rows of a fake checkpoint: the curve at the iteration it holds."""
    state = json.loads((Path(checkpoint_dir) / "state.json").read_text())
    if "score" in state:
        return case_rows(float(state["score"]), cases)
    score = curve(float(state["lr"]), state["iteration"] / int(kw["iterations"]),
                  bool(options.get("misleading", False)))
    return case_rows(score, cases)


COST_FIELDS = ("params", "infer_s", "infer_peak_mb")


def cost(kw: dict, options: dict) -> dict:
    """The trial's known cost from ``fake.cost`` (module docstring); {} when not given."""
    table = options.get("cost") or {}
    spec = table.get(kw.get("arch"), table.get("default"))
    if not spec:
        return {}
    out: dict = {"infer_device": "fake"}
    for name in COST_FIELDS:
        v = spec.get(name)
        if isinstance(v, dict):
            v = float(v["per_lr"]) * float(kw["lr"]) / 1e-3
        if v is not None:
            out[name] = int(round(v)) if name == "params" else float(v)
    return out
