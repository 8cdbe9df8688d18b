"""Test means per architecture next to the seed's published means (one figure per run)."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from study.report import tables
from study.report.figures.style import base_layout, text

METRIC_COLORS = {"precision": "#4c78a8", "recall": "#f58518", "dice": "#54a24b"}


def test_means_data(results: pl.DataFrame) -> pl.DataFrame:
    """Columns: run, phase, arch, metric, mean, n (cases), seed (the seed's mean or null)."""
    seed = pl.DataFrame(
        [(phase, arch, m, v) for phase, _, archs, *vals in tables.SEED_TABLE1
         for arch in archs for m, v in zip(tables.SEED_METRICS, vals, strict=True)],
        schema={"phase": pl.String, "arch": pl.String, "metric": pl.String, "seed": pl.Float64},
        orient="row",
    )
    means = (
        results.filter(pl.col("metric").is_in(list(tables.SEED_METRICS)))
        .group_by(["run", "phase", "arch", "metric"])
        .agg(pl.col("value").mean().alias("mean"), pl.col("value").is_not_null().sum().alias("n"))
    )
    return means.join(seed, on=["phase", "arch", "metric"], how="left").sort(["run", "phase", "arch", "metric"])


def test_means_figure(data: pl.DataFrame, title: str) -> go.Figure | None:
    """One run: a panel per phase, bars = this study's means, diamonds = the seed's."""
    if data.is_empty():
        return None
    phases = data.get_column("phase").unique().sort().to_list()
    fig = make_subplots(rows=1, cols=len(phases), subplot_titles=[text(p) for p in phases],
                        shared_yaxes=True)
    for col, phase in enumerate(phases, 1):
        sub = data.filter(pl.col("phase") == phase)
        archs = sorted(sub.get_column("arch").unique().to_list(), key=tables.arch_key)
        for metric in tables.SEED_METRICS:
            m = {r["arch"]: r for r in sub.filter(pl.col("metric") == metric).to_dicts()}
            fig.add_trace(go.Bar(
                x=[text(a) for a in archs], y=[m[a]["mean"] if a in m else None for a in archs],
                name=tables.METRIC_LABELS[metric], marker_color=METRIC_COLORS[metric],
                legendgroup=metric, showlegend=col == 1, offsetgroup=metric,
                hovertemplate="%{x}: mean " + metric + " %{y:.4f}<extra></extra>",
            ), row=1, col=col)
            seeds = [m[a]["seed"] if a in m else None for a in archs]
            if any(v is not None for v in seeds):
                fig.add_trace(go.Scatter(
                    x=[text(a) for a in archs], y=seeds, mode="markers", offsetgroup=metric,
                    name="seed report (" + tables.METRIC_LABELS[metric] + ")",
                    marker={"symbol": "diamond", "size": 10, "color": METRIC_COLORS[metric],
                            "line": {"color": "#000", "width": 1.5}},
                    legendgroup="seed-" + metric, showlegend=col == 1,
                    hovertemplate="%{x}: seed " + metric + " %{y:.4f}<extra></extra>",
                ), row=1, col=col)
    fig.update_layout(barmode="group", scattermode="group")
    fig.update_yaxes(range=[0, 1.02], title_text="mean over test cases", row=1, col=1)
    return base_layout(fig, title, height=340)
