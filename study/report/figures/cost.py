"""Dice against cost: every competing trial of a phase and its Pareto front (issue 23)."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from study.report.figures.style import arch_color, base_layout, text

COLUMNS = ("run", "phase", "trial", "arch", "final_val_dice", "infer_s", "params",
           "infer_peak_mb", "infer_device", "budget", "front")


def cost_data(trials: pl.DataFrame) -> pl.DataFrame:
    """One run and phase's trials that compete on the front (`study.results.pareto`):
    columns ``COLUMNS``; ``front`` is the trial's place on the front (0 = cheapest), null
    when dominated."""
    from study.results.pareto import front_pool, pareto_front

    pool = front_pool(trials)
    if pool.is_empty():
        return pl.DataFrame(schema={c: trials.schema.get(c, pl.Int64) for c in COLUMNS})
    front = pareto_front(pool).select("trial", "front")
    return pool.join(front, on="trial", how="left").sort("infer_s").select(list(COLUMNS))


def _hover(sub: pl.DataFrame) -> list[str]:
    return [text(f"{t} ({a})<br>{p:,} parameters<br>peak {m:.0f} MB on {d}")
            if p is not None and m is not None else text(f"{t} ({a})")
            for t, a, p, m, d in zip(sub["trial"], sub["arch"], sub["params"],
                                     sub["infer_peak_mb"], sub["infer_device"], strict=True)]


def cost_figure(data: pl.DataFrame, title: str) -> go.Figure | None:
    """Validation Dice against seconds per volume: a dot per trial (colour = arch), the front
    as a step line through its points (ringed)."""
    if data.is_empty():
        return None
    fig = go.Figure()
    for arch in sorted(data["arch"].unique().drop_nulls().to_list()):
        sub = data.filter(pl.col("arch") == arch)
        fig.add_trace(go.Scatter(
            x=sub["infer_s"].to_list(), y=sub["final_val_dice"].to_list(), mode="markers",
            name=text(arch), marker={"color": arch_color(arch), "size": 9},
            text=_hover(sub),
            hovertemplate="%{text}<br>%{x:.3g} s per volume<br>val Dice %{y:.4f}<extra></extra>"))
    front = data.filter(pl.col("front").is_not_null()).sort("front")
    fig.add_trace(go.Scatter(
        x=front["infer_s"].to_list(), y=front["final_val_dice"].to_list(),
        mode="lines+markers+text", name="Pareto front", line={"shape": "hv", "color": "#444"},
        marker={"size": 15, "symbol": "circle-open", "color": "#444", "line": {"width": 2}},
        text=[f"pareto:{n}" for n in front["front"].to_list()], textposition="top center",
        hoverinfo="skip"))
    fig.update_xaxes(title_text="inference seconds per volume (study grid)", type="log")
    fig.update_yaxes(title_text="validation Dice at the budget reached")
    return base_layout(fig, title)
