"""Learning curves: validation Dice against iterations for every trial; ASHA stops marked."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from study.report.figures.style import arch_color, base_layout, text

VAL_METRICS = ("dice", "val_dice")
MEAN_CASE = "mean"  # the results layer's rows for the means a trial reported


def curves_data(metrics: pl.DataFrame, trials: pl.DataFrame) -> pl.DataFrame:
    """Columns: run, phase, trial, arch, iteration, val_dice, last, stopped.

    ``val_dice`` is the validation Dice the trial reported (rows with ``case == "mean"``),
    else the mean of its per-case validation rows;
    ``last`` marks each trial's final evaluation and ``stopped`` whether the trial ended
    before its full budget (ASHA), from the trials table.
    """
    val = metrics.filter((pl.col("split") == "val") & pl.col("metric").is_in(list(VAL_METRICS))
                         & pl.col("value").is_finite())
    keys = ["run", "phase", "trial", "arch", "iteration"]
    reported = (val.filter(pl.col("case") == MEAN_CASE).group_by(keys)
                .agg(pl.col("value").mean().alias("reported")))
    per_case = (val.filter(pl.col("case") != MEAN_CASE).group_by(keys)
                .agg(pl.col("value").mean().alias("per_case")))
    curves = (
        reported.join(per_case, on=keys, how="full", coalesce=True)
        .select(*keys, pl.coalesce("reported", "per_case").alias("val_dice"))
        .sort(["run", "phase", "trial", "iteration"])
    )
    stop = trials.select(
        "run", "trial",
        ((pl.col("budget") < pl.col("max_budget")) | (pl.col("status") == "STOPPED"))
        .fill_null(False).alias("stopped"),
        pl.col("status"),
    ).unique(subset=["run", "trial"])
    curves = curves.join(stop, on=["run", "trial"], how="left").with_columns(
        pl.col("stopped").fill_null(False),
        (pl.col("iteration") == pl.col("iteration").max().over(["run", "trial"])).alias("last"),
    )
    return curves.select("run", "phase", "trial", "arch", "iteration", "val_dice", "last",
                         "stopped", "status")


def curves_figure(data: pl.DataFrame, title: str) -> go.Figure:
    """One (run, phase): a line per trial; an X where ASHA stopped it, a dot at a full budget."""
    fig = go.Figure()
    shown: set[str] = set()
    for (trial,), sub in data.group_by(["trial"], maintain_order=True):
        arch = sub["arch"][0]
        color = arch_color(arch)
        fig.add_trace(go.Scatter(
            x=sub["iteration"].to_list(), y=sub["val_dice"].to_list(), mode="lines",
            line={"color": color, "width": 1.5}, opacity=0.75, name=text(arch),
            legendgroup=text(arch), showlegend=arch not in shown,
            hovertemplate=text(trial) + "<br>iteration %{x}<br>val Dice %{y:.4f}<extra></extra>",
        ))
        shown.add(arch)
    ends = data.filter(pl.col("last"))
    for stopped, symbol, label in ((True, "x", "stopped by ASHA"), (False, "circle", "full budget")):
        sub = ends.filter(pl.col("stopped") == stopped)
        if sub.is_empty():
            continue
        fig.add_trace(go.Scatter(
            x=sub["iteration"].to_list(), y=sub["val_dice"].to_list(), mode="markers", name=label,
            marker={"symbol": symbol, "size": 10, "color": "#222" if stopped else "#888",
                    "line": {"width": 1}},
            text=[text(t) for t in sub["trial"]],
            hovertemplate="%{text}<br>" + label + " at %{x}<extra></extra>",
        ))
    fig.update_xaxes(title_text="iteration")
    fig.update_yaxes(title_text="validation Dice")
    return base_layout(fig, title, height=380)
