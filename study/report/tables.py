"""Data functions (polars only) for the report's tables: the seed's Table 1 and beyond.

Layout of :func:`case_table`: one row per (run, phase, arch, metric), one column per test case
(in natural case-id order) and ``mean`` (over that row's finite values). This is the seed
report's Table 1: for each phase, for each architecture, rows Precision / Recall / Dice.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

import polars as pl

from study.evaluation.stats import (  # noqa: F401  (the report's statistics, re-exported)
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    CONFIDENCE,
    bootstrap_ci,
    min_p_value,
    wilcoxon_pair,
)
from study.names import ARCH_NAMES

SEED_METRICS = ("precision", "recall", "dice")
EXTRA_METRICS = ("hd95", "lesion_recall", "lesion_precision", "z_continuity")
LOWER_IS_BETTER = frozenset({"hd95", "fp", "fn"})
METRIC_LABELS = {
    "precision": "Precision",
    "recall": "Recall",
    "dice": "Dice",
    "hd95": "HD95 (mm)",
    "lesion_recall": "Lesion recall",
    "lesion_precision": "Lesion precision",
    "z_continuity": "z-continuity",
}
ROW_KEYS = ["run", "phase", "arch", "metric"]

# Table 1 of the seed report (SCIENCE.md, "Results to reproduce"): mean over 8 test cases.
SEED_TABLE1 = [
    # phase, seed model, archs of this project that correspond, precision, recall, dice
    ("arterial", "3D", ("unet3d", "simplified3d"), 0.5364, 0.1803, 0.2451),
    ("arterial", "2D", ("unet2d",), 0.6760, 0.2003, 0.2782),
    ("arterial", "hybrid", ("hybrid",), 0.7554, 0.2870, 0.3647),
    ("portal", "3D", ("unet3d", "simplified3d"), 0.5364, 0.1803, 0.2451),
    ("portal", "2D", ("unet2d",), 0.6743, 0.1570, 0.2423),
    ("portal", "hybrid", ("hybrid",), 0.5980, 0.3854, 0.4447),
]


ARCH_ORDER = ARCH_NAMES  # the seed's order: 3D, 2D, 2.5D (study.names)


def natural_key(text: str) -> list:
    """Sort key: ``case2`` before ``case10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(text))]


def natural_str(text: str) -> str:
    """:func:`natural_key` as a string (numbers zero-padded), for sorting polars columns."""
    return "".join(f"{t:020d}" if isinstance(t, int) else t for t in natural_key(text))


def arch_key(arch: str) -> str:
    """Sort key for architectures: the seed's order first, then others naturally."""
    rank = ARCH_ORDER.index(arch) if arch in ARCH_ORDER else len(ARCH_ORDER)
    return f"{rank:03d}" + natural_str(arch)


def best_trials(metrics: pl.DataFrame, trials: pl.DataFrame) -> pl.DataFrame:
    """The trial whose test rows represent each (run, phase, arch).

    Normally only the best trial of a (phase, arch) has test rows. When several do, the
    rule of ``study.results.best_trials`` decides (budget-aware, validation only): the highest
    budget reached, then the highest ``final_val_dice`` (else ``best_val_dice``).
    Columns: run, phase, arch, trial.
    """
    test = metrics.filter(pl.col("split") == "test").select("run", "phase", "arch", "trial").unique()
    if test.is_empty():
        return test
    score = [c for c in ("final_val_dice", "best_val_dice") if c in trials.columns]
    val = trials.select(
        "run", "trial", pl.col("budget").fill_null(-1).alias("_budget"),
        (pl.coalesce(*score).fill_nan(None) if score else pl.lit(None, pl.Float64)).alias("_score"),
    ).unique(subset=["run", "trial"])
    ranked = test.join(val, on=["run", "trial"], how="left").with_columns(
        pl.col("_budget").fill_null(-1), pl.col("_score").fill_null(-math.inf)
    )
    return (
        ranked.sort(["_budget", "_score", "trial"], descending=[True, True, False])
        .unique(subset=["run", "phase", "arch"], keep="first", maintain_order=True)
        .select("run", "phase", "arch", "trial")
    )


def shown_grid(metrics: pl.DataFrame) -> pl.DataFrame:
    """Test rows on the grid the report shows: per run, the native grid when the run measured
    there (`study.evaluation.native`), else the study grid (runs made before native evaluation); per
    trial, with the postprocessing chosen on validation (`study.evaluation.postprocess`) when any."""
    test = metrics.filter(pl.col("split") == "test")
    if "grid" not in test.columns:
        return test
    from study.results import chosen_postprocessing

    native = (pl.col("grid") == "native").any().over("run")
    test = test.filter(pl.col("grid") == pl.when(native).then(pl.lit("native"))
                       .otherwise(pl.lit("study")))
    return chosen_postprocessing(test, ["run", "trial"])


def test_grids(metrics: pl.DataFrame) -> dict[str, str]:
    """Run name -> grid its test numbers are shown on ("native" or "study")."""
    shown = shown_grid(metrics).select("run", "grid").unique()
    return dict(zip(shown["run"].to_list(), shown["grid"].to_list(), strict=True))


def test_results(metrics: pl.DataFrame, trials: pl.DataFrame) -> pl.DataFrame:
    """Test rows of the chosen trial per (run, phase, arch); the last iteration per case.

    Columns: run, phase, arch, trial, case, metric, value (non-finite values become null).
    Aggregate rows (``case == "mean"``) are left out: the tables compute their own means.
    """
    chosen = best_trials(metrics, trials)
    test = shown_grid(metrics).filter(pl.col("case") != "mean").join(
        chosen, on=["run", "phase", "arch", "trial"], how="inner"
    )
    return (
        test.sort("iteration", nulls_last=False)
        .group_by(["run", "phase", "arch", "trial", "case", "metric"], maintain_order=True)
        .agg(pl.col("value").last())
        .with_columns(
            pl.when(pl.col("value").is_finite()).then(pl.col("value")).otherwise(None).alias("value")
        )
    )


def case_order(results: pl.DataFrame) -> list[str]:
    return sorted(results.get_column("case").unique().drop_nulls().to_list(), key=natural_key)


def case_table(results: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """Wide table: ROW_KEYS + one column per case + ``mean`` (of that row's finite values).

    Rows are ordered run, phase, arch (as first seen in natural order), then ``metrics`` order.
    Empty when no result has one of ``metrics``.
    """
    rows = results.filter(pl.col("metric").is_in(list(metrics)))
    cases = case_order(rows)
    if rows.is_empty():
        return pl.DataFrame(schema={**{k: pl.String for k in ROW_KEYS}, "mean": pl.Float64})
    wide = rows.pivot(on="case", index=ROW_KEYS, values="value", aggregate_function="first")
    for c in cases:
        if c not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    wide = wide.select(ROW_KEYS + cases).with_columns(
        pl.mean_horizontal([pl.col(c) for c in cases]).alias("mean") if cases else pl.lit(None)
    )
    order = {m: i for i, m in enumerate(metrics)}
    return (
        wide.with_columns(
            pl.col("metric").replace_strict(order, default=len(order)).alias("_m"),
            pl.col("arch").map_elements(arch_key, return_dtype=pl.String).alias("_a"),
        )
        .sort(["run", "phase", "_a", "_m"])
        .drop("_m", "_a")
    )


def value_columns(wide: pl.DataFrame) -> list[str]:
    return [c for c in wide.columns if c not in ROW_KEYS]


def best_cells(wide: pl.DataFrame) -> pl.DataFrame:
    """Boolean frame (same value columns as ``wide``): the best value of each column among the
    architectures of one (run, phase, metric); lower is better for HD95, higher otherwise.
    A value without a rival (one architecture only) is not marked.
    """
    if wide.is_empty():
        return wide.select(ROW_KEYS)
    group = ["run", "phase", "metric"]
    lower = pl.col("metric").is_in(list(LOWER_IS_BETTER))
    exprs = []
    for c in value_columns(wide):
        target = pl.when(lower).then(pl.col(c).min().over(group)).otherwise(pl.col(c).max().over(group))
        rivals = pl.col(c).is_not_null().sum().over(group) >= 2  # nothing to compare: no mark
        exprs.append(((pl.col(c) == target) & pl.col(c).is_not_null() & rivals).fill_null(False).alias(c))
    return wide.select(*[pl.col(k) for k in ROW_KEYS], *exprs)


def seed_comparison(results: pl.DataFrame) -> pl.DataFrame:
    """The seed's published means next to this study's means for the same phase and model.

    Columns: phase, model, source ("seed report" or run name), arch, precision, recall, dice.
    Seed rows come first in each (phase, model) block; archs without a seed counterpart and
    phases the seed did not report are left out (they are in the per-case table).
    """
    means = (
        results.filter(pl.col("metric").is_in(list(SEED_METRICS)))
        .group_by(["run", "phase", "arch", "metric"])
        .agg(pl.col("value").mean())
    )
    out = []
    for phase, model, archs, p, r, d in SEED_TABLE1:
        out.append({"phase": phase, "model": model, "source": "seed report", "arch": "/".join(archs),
                    "precision": p, "recall": r, "dice": d})
        mine = means.filter((pl.col("phase") == phase) & pl.col("arch").is_in(list(archs)))
        for (run, arch), grp in sorted(mine.group_by(["run", "arch"]), key=lambda g: g[0]):
            vals = dict(zip(grp.get_column("metric"), grp.get_column("value"), strict=True))
            out.append({"phase": phase, "model": model, "source": run, "arch": arch,
                        **{m: vals.get(m) for m in SEED_METRICS}})
    schema = {"phase": pl.String, "model": pl.String, "source": pl.String, "arch": pl.String,
              **{m: pl.Float64 for m in SEED_METRICS}}
    return pl.DataFrame(out, schema=schema)


def _config_text(config: str | None, skip: Sequence[str] = ("arch", "phases", "phase")) -> str:
    if not config:
        return ""
    try:
        cfg = json.loads(config)
    except (json.JSONDecodeError, TypeError):
        return str(config)
    if not isinstance(cfg, dict):
        return str(cfg)
    parts = []
    for k in sorted(cfg):
        if k in skip:
            continue
        v = cfg[k]
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def trials_view(trials: pl.DataFrame) -> pl.DataFrame:
    """The trials table for display: best first within each (run, phase)."""
    cols = ["run", "phase", "trial", "arch", "status", "budget", "max_budget", "best_val_dice",
            "final_val_dice", "wall_s", "stop_reason"]
    if "final_val_dice" not in trials.columns:
        trials = trials.with_columns(pl.lit(None, pl.Float64).alias("final_val_dice"))
    if trials.is_empty():
        return trials.select(*cols, pl.lit("").alias("config"))
    return trials.with_columns(
        pl.col("config").map_elements(_config_text, return_dtype=pl.String).alias("config")
    ).sort(["run", "phase", "best_val_dice"], descending=[False, False, True], nulls_last=True).select(
        *cols, "config"
    )


# ---------------------------------------------------------------------------------------------
# Uncertainty (issue 13): bootstrap CIs of the means of Table 1, paired Wilcoxon tests between
# the architectures of a phase and between the phases of an architecture, budget flags.

ALPHA = 0.05
CI_SCHEMA = {"run": pl.String, "phase": pl.String, "arch": pl.String, "metric": pl.String,
             "n": pl.Int64, "mean": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64}


def mean_cis(results: pl.DataFrame, metrics: Sequence[str] = SEED_METRICS) -> pl.DataFrame:
    """One row per (run, phase, arch, metric) of :func:`test_results`: ``n`` (finite values),
    ``mean`` and its 95% bootstrap CI ``ci_low``/``ci_high`` (null when n < 2)."""
    rows = results.filter(pl.col("metric").is_in(list(metrics)))
    out = []
    for key, grp in rows.group_by(["run", "phase", "arch", "metric"], maintain_order=True):
        vals = [v for v in grp.get_column("value").to_list() if v is not None and math.isfinite(v)]
        ci = bootstrap_ci(vals)
        out.append({"run": key[0], "phase": key[1], "arch": key[2], "metric": key[3],
                    "n": len(vals), "mean": sum(vals) / len(vals) if vals else None,
                    "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None})
    return pl.DataFrame(out, schema=CI_SCHEMA)


PAIRED_SCHEMA = {"run": pl.String, "compare": pl.String, "within": pl.String, "a": pl.String,
                 "b": pl.String, "metric": pl.String, "n": pl.Int64, "n_effective": pl.Int64,
                 "min_p": pl.Float64, "median_diff": pl.Float64,
                 "statistic": pl.Float64, "p_value": pl.Float64, "verdict": pl.String}


def verdict(p_value: float | None, median_diff: float | None, a: str, b: str,
            alpha: float = ALPHA, n_effective: int | None = None) -> str:
    """The test's result in words; says so when ``n_effective`` non-zero differences cannot
    reach ``p < alpha`` whatever the data (`study.evaluation.stats.min_p_value`)."""
    if p_value is None or not math.isfinite(p_value):
        return "no paired cases: not tested"
    if n_effective == 0:
        return f"identical on every paired case: not distinguishable at {alpha:.0%}"
    if n_effective is not None and min_p_value(n_effective) >= alpha:
        return (f"cannot reach p < {alpha:g} with n = {n_effective} (non-zero differences); "
                f"not distinguishable at {alpha:.0%}")
    if p_value < alpha:
        better = a if (median_diff or 0) > 0 else b
        return f"distinguishable at {alpha:.0%}: {better} higher"
    return f"not distinguishable at {alpha:.0%}"


def paired_tests(results: pl.DataFrame, metric: str = "dice") -> pl.DataFrame:
    """Paired Wilcoxon tests on per-case ``metric`` of :func:`test_results`: every pair of
    architectures within a (run, phase) (``compare == "architectures"``, ``within`` = the
    phase) and every pair of phases within a (run, arch) (``compare == "phases"``, ``within``
    = the architecture), paired by test case (cases where both have a finite value).
    ``median_diff`` = median of ``a - b``; ``verdict`` in words at 5%."""
    rows = results.filter((pl.col("metric") == metric) & pl.col("value").is_not_null())
    out = []
    for compare, within, across, order in (("architectures", "phase", "arch", arch_key),
                                           ("phases", "arch", "phase", natural_str)):
        for (run, w), grp in sorted(rows.group_by(["run", within]), key=lambda g: g[0]):
            per = {k: dict(zip(g.get_column("case"), g.get_column("value"), strict=True))
                   for (k,), g in grp.group_by([across])}
            names = sorted(per, key=order)
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    cases = sorted(set(per[a]) & set(per[b]), key=natural_key)
                    t = wilcoxon_pair([per[a][c] for c in cases], [per[b][c] for c in cases])
                    out.append({"run": run, "compare": compare, "within": w, "a": a, "b": b,
                                "metric": metric, **t,
                                "verdict": verdict(t["p_value"], t["median_diff"], a, b,
                                                   n_effective=t["n_effective"])})
    return pl.DataFrame(out, schema=PAIRED_SCHEMA)


def budget_flags(results: pl.DataFrame, trials: pl.DataFrame) -> pl.DataFrame:
    """Per (run, phase, arch) of :func:`test_results`: the tested trial's ``budget`` (iterations
    reached), ``max_budget`` and ``full`` (False when it stopped before the full budget: ASHA
    or a time limit stopped every trial of that architecture). Unknown budgets: ``full`` null."""
    keys = results.select("run", "phase", "arch", "trial").unique()
    cols = [c for c in ("budget", "max_budget") if c in trials.columns]
    info = trials.select("run", "trial", *cols).unique(subset=["run", "trial"])
    for c in ("budget", "max_budget"):
        if c not in info.columns:
            info = info.with_columns(pl.lit(None, pl.Int64).alias(c))
    return (keys.join(info, on=["run", "trial"], how="left")
            .with_columns((pl.col("budget") >= pl.col("max_budget")).alias("full"))
            .sort(["run", "phase", "arch"]))
