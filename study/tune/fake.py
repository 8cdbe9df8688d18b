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
                 "train_loss", "seconds")


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
    curve_ = dict(zip(rows["iteration"].to_list(), rows["val_dice"].to_list(), strict=True))
    if max(curve_) != int(kw["iterations"]):
        raise ConfigError(f"fake.replay: {path} was recorded to {max(curve_)} iterations; set the "
                          f"budget's iterations to that (it is {kw['iterations']})")
    return curve_


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
    start = 0
    if resume_from is not None:
        start = int(json.loads((Path(resume_from) / "state.json").read_text())["iteration"])
    if options.get("log_starts"):
        with open(options["log_starts"], "a", encoding="utf-8") as f:
            f.write(f"{trial_id} {start}\n")
    misleading = bool(options.get("misleading", False))
    recorded = replay_curve(options["replay"], kw) if options.get("replay") else None
    metrics: dict = {}
    for it in range(start + every, iterations + 1, every):
        time.sleep(float(options.get("sleep", 0.0)))
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
