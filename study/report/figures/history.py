"""Optimization history: validation Dice per trial in trial order, with the best-so-far line."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from study.report.figures.style import arch_color, base_layout, text
from study.report.tables import natural_str


def history_data(trials: pl.DataFrame) -> pl.DataFrame:
    """Columns: run, phase, trial, arch, status, order, value, best_so_far, stopped.

    Trial order is creation order (``number``, from the Ray trial folders) where known, else
    the natural order of trial ids; ``value`` is ``best_val_dice``; ``stopped`` marks trials
    that ended before the full budget.
    """
    if trials.is_empty():
        return pl.DataFrame(schema={"run": pl.String, "phase": pl.String, "trial": pl.String,
                                    "arch": pl.String, "status": pl.String, "order": pl.Int64,
                                    "value": pl.Float64, "best_so_far": pl.Float64,
                                    "stopped": pl.Boolean})
    if "number" not in trials.columns:
        trials = trials.with_columns(pl.lit(None, pl.Int64).alias("number"))
    df = trials.with_columns(
        pl.col("trial").map_elements(natural_str, return_dtype=pl.String).alias("_k")
    ).sort(["run", "phase", "number", "_k"], nulls_last=True)
    return df.with_columns(
        pl.int_range(pl.len()).over(["run", "phase"]).alias("order"),
        pl.col("best_val_dice").fill_nan(None).alias("value"),
    ).with_columns(
        pl.col("value").fill_null(float("-inf")).cum_max().over(["run", "phase"]).alias("best_so_far"),
        ((pl.col("budget") < pl.col("max_budget")) | (pl.col("status") == "STOPPED"))
        .fill_null(False).alias("stopped"),
    ).with_columns(
        pl.when(pl.col("best_so_far").is_finite()).then(pl.col("best_so_far")).alias("best_so_far")
    ).select("run", "phase", "trial", "arch", "status", "order", "value", "best_so_far", "stopped")


def history_figure(data: pl.DataFrame, title: str) -> go.Figure:
    """One (run, phase): a dot per trial (colour = arch, open = stopped early) and best-so-far."""
    fig = go.Figure()
    for arch in sorted(data.get_column("arch").unique().drop_nulls().to_list()):
        sub = data.filter(pl.col("arch") == arch)
        fig.add_trace(go.Scatter(
            x=sub["order"].to_list(), y=sub["value"].to_list(), mode="markers", name=text(arch),
            marker={"color": arch_color(arch), "size": 9,
                    "symbol": ["circle-open" if s else "circle" for s in sub["stopped"].to_list()]},
            text=[text(f"{t} ({s})") for t, s in zip(sub["trial"], sub["status"], strict=True)],
            hovertemplate="%{text}<br>trial #%{x}<br>val Dice %{y:.4f}<extra></extra>",
        ))
    fig.add_trace(go.Scatter(
        x=data["order"].to_list(), y=data["best_so_far"].to_list(), mode="lines",
        line={"shape": "hv", "color": "#444", "width": 2}, name="best so far",
    ))
    fig.update_xaxes(title_text="trial (in order of creation)", tickformat="d")
    fig.update_yaxes(title_text="validation Dice")
    return base_layout(fig, title)
