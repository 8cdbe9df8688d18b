"""The replay's figures (plotly, one HTML page): data functions, then figure functions."""

from __future__ import annotations

import math

import numpy as np

from benchmarks.hpo_replay.analysis import incumbents, value_at


def anytime_data(runs: list[dict], iterations: int, upto: float, step: float = 0.25) -> dict:
    """Per policy: compute grid (full budgets) and the 2.5 / 50 / 97.5 percentiles over seeds
    of the incumbent's Dice at each point."""
    grid = np.arange(step, upto + 1e-9, step)
    by: dict[str, list[list[float]]] = {}
    for run in runs:
        incs = incumbents(run["events"])
        by.setdefault(run["policy"], []).append([value_at(incs, c * iterations) for c in grid])
    out = {}
    for policy, curves in by.items():
        a = np.asarray(curves, dtype=float)
        with np.errstate(all="ignore"):
            out[policy] = {"x": grid.tolist(),
                           "lo": np.nanpercentile(a, 2.5, axis=0).tolist(),
                           "mid": np.nanpercentile(a, 50, axis=0).tolist(),
                           "hi": np.nanpercentile(a, 97.5, axis=0).tolist()}
    return out


def anytime_figure(data: dict, best: float):
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (policy, d) in enumerate(data.items()):
        color = _color(i)
        fig.add_trace(go.Scatter(x=d["x"] + d["x"][::-1], y=d["hi"] + d["lo"][::-1],
                                 fill="toself", fillcolor=_alpha(color), line={"width": 0},
                                 hoverinfo="skip", showlegend=False, legendgroup=policy))
        fig.add_trace(go.Scatter(x=d["x"], y=d["mid"], name=policy, line={"color": color},
                                 legendgroup=policy))
    for q, dash in ((0.95, "dash"), (0.99, "dot")):
        fig.add_hline(y=q * best, line={"dash": dash, "color": "grey"},
                      annotation_text=f"{q:.0%} of the table's best final Dice")
    fig.update_layout(title="Incumbent (budget-aware best) validation Dice vs compute: "
                            "median and 95% interval over seeds",
                      xaxis_title="compute (full-budget trainings)",
                      yaxis_title="validation Dice of the incumbent", height=520)
    return fig


def ratio_figure(summary: list[dict]):
    import plotly.graph_objects as go

    fig = go.Figure()
    names = [s["policy"] for s in summary]
    for key, label in (("c95_ratio", "to 95% of best"), ("c99_ratio", "to 99% of best")):
        lo, mid, hi = zip(*(s.get(key, [math.nan] * 3) for s in summary), strict=True)
        fig.add_trace(go.Bar(x=names, y=mid, name=f"compute {label}",
                             error_y={"type": "data", "symmetric": False,
                                      "array": [h - m for h, m in zip(hi, mid, strict=True)],
                                      "arrayminus": [m - v for m, v in zip(mid, lo,
                                                                           strict=True)]}))
    fig.add_hline(y=0.35, line={"dash": "dash", "color": "grey"}, annotation_text="goal 0.35")
    fig.add_hline(y=1.0, line={"color": "grey"})
    fig.update_layout(barmode="group", title="Compute to reach 95% / 99% of the best final Dice "
                      "÷ random search's (ratio of medians, bootstrap 95% interval)",
                      yaxis_title="ratio to random search", height=480)
    return fig


def at_budget_figure(summary: list[dict], at: float):
    import plotly.graph_objects as go

    names = [s["policy"] for s in summary]
    lo, mid, hi = zip(*(s["dice_at"] for s in summary), strict=True)
    fig = go.Figure(go.Bar(
        x=names, y=mid, error_y={"type": "data", "symmetric": False,
                                 "array": [h - m for h, m in zip(hi, mid, strict=True)],
                                 "arrayminus": [m - v for m, v in zip(mid, lo, strict=True)]},
        text=[f"{100 * s['true_best_at']:.0f}% true best" for s in summary],
        textposition="inside"))
    fig.update_layout(title=f"Validation Dice of the selected model after {at:g} full-budget "
                            f"trainings of compute (median, 95% interval); share of seeds whose "
                            f"selection is the best configuration it had started",
                      yaxis_title="validation Dice", height=480)
    return fig


def page(figures: list, intro_html: str, table_html: str) -> str:
    """Self-contained HTML (plotly.js inline, as the study's reports)."""
    from study.report.html import figure
    from study.report.html import page as study_page

    body = intro_html + table_html + "".join(figure(f) for f in figures)
    return study_page("HPO replay", "ASHA and TPE over recorded learning curves",
                      [("replay", "Policies over recorded curves", body)])


_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
            "#7f7f7f", "#bcbd22", "#17becf")


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _alpha(hex_color: str, a: float = 0.15) -> str:
    r, g, b = (int(hex_color[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{a})"
