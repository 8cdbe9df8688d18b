"""Held-out fold Dice of the cross-validated finalists (``--finalists``), one figure per run."""

from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from study.report.figures.style import base_layout, text


def folds_data(table: pl.DataFrame) -> pl.DataFrame:
    """Columns: run, phase, rank, arch, fold, dice, winner, label (``#rank arch``)."""
    from study.results.finalists import fold_scores, summary

    if table.is_empty():
        return pl.DataFrame()
    win = summary(table).select("study", "phase", "rank", "winner")
    folds = fold_scores(table).join(win, on=["study", "phase", "rank"], how="left")
    if "run" in table.columns:
        runs = table.select("study", "run").unique()
        folds = folds.join(runs, on="study", how="left")
    else:
        folds = folds.with_columns(pl.col("study").alias("run"))
    return folds.with_columns(
        pl.format("#{} {}", pl.col("rank"), pl.col("arch")).alias("label")).select(
        "run", "phase", "rank", "arch", "fold", "dice", "winner", "label").sort(
        "run", "phase", "rank", "fold")


def folds_figure(data: pl.DataFrame, title: str) -> go.Figure | None:
    """A box per finalist (its fold Dice as points), one colour per phase; the winner bold."""
    if data.is_empty() or data["dice"].drop_nulls().is_empty():
        return None
    fig = go.Figure()
    for phase in data["phase"].unique().sort().to_list():
        sub = data.filter(pl.col("phase") == phase)
        labels = [f"{phase} {lab}{' ★' if w else ''}" for lab, w in
                  zip(sub["label"], sub["winner"], strict=True)]
        fig.add_trace(go.Box(
            x=[text(v) for v in labels], y=sub["dice"].to_list(), name=text(phase),
            boxpoints="all", jitter=0.3, pointpos=0,
            customdata=[[f + 1] for f in sub["fold"].to_list()],
            hovertemplate="%{x}, fold %{customdata[0]}: Dice %{y:.4f}<extra></extra>"))
    fig.update_yaxes(title_text="held-out fold Dice", rangemode="tozero")
    return base_layout(fig, title, height=340)
