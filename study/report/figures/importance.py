"""Parameter importances (Optuna) and parallel coordinates of configurations, per phase.

The Optuna study comes from ``runs/NAME/optuna.db`` (study ``NAME-PHASE``; read from a temp
copy, never modified) when present, else it is rebuilt from the trials table: the searched
parameters are the config keys that vary between the phase's trials.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import optuna
import plotly.graph_objects as go
import polars as pl
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState
from plotly.colors import sample_colorscale

from study.report.figures.style import base_layout, text

optuna.logging.set_verbosity(optuna.logging.WARNING)
COLORSCALE = "Viridis"


def _from_db(db: Path, run_name: str, phase: str) -> optuna.Study | None:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "optuna.db"
        shutil.copyfile(db, copy)
        storage = optuna.storages.RDBStorage(f"sqlite:///{copy}")
        try:
            names = optuna.get_all_study_names(storage)
            wanted = f"{run_name}-{phase}"
            name = wanted if wanted in names else next((n for n in names if n.endswith(f"-{phase}")), None)
            if name is None:
                return None
            loaded = optuna.load_study(study_name=name, storage=storage)
            study = optuna.create_study(direction=loaded.direction, study_name=name)
            study.add_trials([t for t in loaded.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)])
        finally:
            with contextlib.suppress(Exception):
                storage.remove_session()
                storage.engine.dispose()
    return study


def _distribution(values: list) -> BaseDistribution:
    if all(isinstance(v, bool) or isinstance(v, str) for v in values):
        return CategoricalDistribution(sorted(set(values), key=str))
    if all(isinstance(v, int) for v in values):
        lo, hi = min(values), max(values)
        return IntDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)
    lo, hi = float(min(values)), float(max(values))
    return FloatDistribution(lo, hi, log=lo > 0 and hi / lo >= 100)


def _from_trials(trials: pl.DataFrame) -> optuna.Study | None:
    rows = []
    for row in trials.iter_rows(named=True):
        value = row.get("best_val_dice")
        if row.get("status") == "ERROR" or value is None or not math.isfinite(value):
            continue
        try:
            cfg = json.loads(row.get("config") or "{}")
        except json.JSONDecodeError:
            cfg = {}
        cfg = {k: v for k, v in (cfg if isinstance(cfg, dict) else {}).items()
               if isinstance(v, bool | int | float | str) and k not in ("phase", "phases")}
        cfg["arch"] = row.get("arch")
        rows.append((cfg, float(value)))
    if not rows:
        return None
    keys = sorted({k for cfg, _ in rows for k in cfg})
    searched = {}
    for k in keys:
        vals = [cfg[k] for cfg, _ in rows if k in cfg and cfg[k] is not None]
        kinds = {type(v) is str or type(v) is bool for v in vals}
        if len(vals) == len(rows) and len(set(vals)) > 1 and len(kinds) == 1:
            searched[k] = _distribution(vals)
    study = optuna.create_study(direction="maximize")
    study.add_trials([
        optuna.trial.create_trial(params={k: cfg[k] for k in searched}, distributions=searched, value=v)
        for cfg, v in rows
    ])
    return study


def phase_study(run, phase: str) -> tuple[optuna.Study | None, str]:
    """The Optuna study of one phase of a run, and where it came from (for the caption)."""
    if run.optuna_db is not None:
        try:
            study = _from_db(run.optuna_db, run.name, phase)
        except Exception as exc:  # an unreadable or foreign sqlite file: fall back, say so
            study, why = None, f"optuna.db unreadable ({type(exc).__name__}); "
        else:
            why = "" if study is None else "from optuna.db"
        if study is not None and any(t.state == TrialState.COMPLETE for t in study.trials):
            return study, why
    else:
        why = ""
    trials = run.trials.filter(pl.col("phase") == phase)
    study = _from_trials(trials)
    return study, (why if why != "from optuna.db" else "") + "rebuilt from trials.parquet (value = best validation Dice)"


def importance_figure(study: optuna.Study | None, title: str) -> go.Figure | None:
    """Optuna's parameter-importance bar chart, or None when it cannot be computed."""
    if study is None:
        return None
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(complete) < 2 or not any(t.params for t in complete):
        return None
    try:
        with warnings.catch_warnings():  # "some regimes have less than 2 trials": small studies
            warnings.simplefilter("ignore", UserWarning)
            fig = optuna.visualization.plot_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
    for trace in fig.data:  # parameter names come from the user's YAML: show them as text
        trace.y = [text(v) for v in trace.y or ()]
        if isinstance(trace.hovertemplate, tuple | list):
            trace.hovertemplate = [text(h.replace("<extra></extra>", "")) + "<extra></extra>"
                                   for h in trace.hovertemplate]
    return base_layout(fig, title, height=300)


def parallel_data(study: optuna.Study | None) -> tuple[pl.DataFrame, dict[str, BaseDistribution]]:
    """One row per finished trial: its parameters and value (last intermediate if pruned)."""
    if study is None:
        return pl.DataFrame(), {}
    dists: dict[str, BaseDistribution] = {}
    rows = []
    for t in study.trials:
        value = t.value if t.state == TrialState.COMPLETE else (
            t.intermediate_values[max(t.intermediate_values)] if t.intermediate_values else None)
        if value is None or not t.params:
            continue
        dists.update(t.distributions)
        rows.append({**{k: str(v) if isinstance(v, str | bool) else v for k, v in t.params.items()},
                     "value": float(value), "state": t.state.name})
    return pl.DataFrame(rows), dists


def _positions(values: list, dist: BaseDistribution) -> tuple[list, list[float], list[str]]:
    """Normalised [0, 1] positions of values on one axis, and tick positions / labels."""
    if isinstance(dist, CategoricalDistribution):
        choices = [str(c) for c in dist.choices]
        n = max(len(choices) - 1, 1)
        pos = [choices.index(str(v)) / n if v is not None and str(v) in choices else None for v in values]
        return pos, [i / n for i in range(len(choices))], [text(c) for c in choices]
    lo, hi = float(dist.low), float(dist.high)
    log = bool(getattr(dist, "log", False)) and lo > 0

    def f(v):
        return math.log10(v) if log else v

    span = (f(hi) - f(lo)) or 1.0
    pos = [None if v is None else (f(float(v)) - f(lo)) / span for v in values]
    return pos, [0.0, 1.0], [f"{lo:.3g}", f"{hi:.3g}"]


def parallel_figure(data: pl.DataFrame, dists: dict[str, BaseDistribution], title: str) -> go.Figure | None:
    """Parallel coordinates drawn with SVG lines (no WebGL): one line per trial, coloured by
    its validation Dice, the last axis being the Dice itself."""
    params = [p for p in sorted(dists) if p in data.columns]
    if data.is_empty() or not params:
        return None
    values = data["value"].to_list()
    vmin, vmax = min(values), max(values)
    axes = [*params, "value"]
    dists = {**dists, "value": FloatDistribution(vmin, vmax if vmax > vmin else vmin + 1e-9)}
    cols = {a: _positions(data[a].to_list(), dists[a]) for a in axes}
    scale = [(v - vmin) / ((vmax - vmin) or 1.0) for v in values]
    colors = sample_colorscale(COLORSCALE, scale)
    fig = go.Figure()
    for i, (color, value) in enumerate(zip(colors, values, strict=True)):
        fig.add_trace(go.Scatter(
            x=list(range(len(axes))), y=[cols[a][0][i] for a in axes], mode="lines+markers",
            line={"color": color, "width": 2}, marker={"size": 5, "color": color}, showlegend=False,
            hovertemplate=f"val Dice {value:.4f}<extra></extra>",
        ))
    for j, a in enumerate(axes):
        fig.add_shape(type="line", x0=j, x1=j, y0=0, y1=1, line={"color": "#999", "width": 1})
        for pos, label in zip(cols[a][1], cols[a][2], strict=True):
            fig.add_annotation(x=j, y=pos, text=label, showarrow=False, xshift=4, xanchor="left",
                               font={"size": 10, "color": "#555"})
    fig.add_trace(go.Scatter(
        x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
        marker={"colorscale": COLORSCALE, "cmin": vmin, "cmax": vmax, "color": [vmin],
                "colorbar": {"title": {"text": "val Dice"}, "thickness": 12}},
    ))
    fig.update_xaxes(tickvals=list(range(len(axes))), ticktext=[text(a) for a in axes],
                     range=[-0.3, len(axes) - 0.4], showgrid=False)
    fig.update_yaxes(visible=False, range=[-0.08, 1.08])
    return base_layout(fig, title, height=360)
