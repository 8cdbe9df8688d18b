"""Plotly figures for the report: per plot one data function (polars) and one figure function.

Every figure is SVG-rendered plotly (no WebGL traces), so the page draws on workstations
without a GPU or with WebGL disabled.
"""

from study.report.figures.cost import cost_data, cost_figure
from study.report.figures.curves import curves_data, curves_figure
from study.report.figures.folds import folds_data, folds_figure
from study.report.figures.history import history_data, history_figure
from study.report.figures.importance import (
    importance_figure,
    parallel_data,
    parallel_figure,
    phase_study,
)
from study.report.figures.means import test_means_data, test_means_figure

__all__ = [
    "cost_data",
    "cost_figure",
    "curves_data",
    "curves_figure",
    "folds_data",
    "folds_figure",
    "history_data",
    "history_figure",
    "importance_figure",
    "parallel_data",
    "parallel_figure",
    "phase_study",
    "test_means_data",
    "test_means_figure",
]
