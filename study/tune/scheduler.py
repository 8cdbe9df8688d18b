"""ASHA that survives a driver restart.

Ray saves the searcher's state with the experiment but not the scheduler's: after
``Tuner.restore`` ASHA's rungs start empty, so resumed and new trials would be compared
with nothing. :class:`ResumableASHA` refills its rungs once, on first use, from the
validation Dice already in ``metrics.parquet`` (the value each trial had at the first
evaluation at or past each milestone, as ASHA itself records it).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from ray.tune.schedulers import ASHAScheduler

from study.results import read_metrics


class ResumableASHA(ASHAScheduler):
    def __init__(self, *args, run_dir: str | Path, study: str, phase: str, **kwargs):
        super().__init__(*args, **kwargs)
        self._history = (str(run_dir), study, phase)
        self._seeded = False

    def _seed(self) -> None:
        self._seeded = True
        run_dir, study, phase = self._history
        m = read_metrics(run_dir).filter(
            (pl.col("study") == study) & (pl.col("phase") == phase) & (pl.col("split") == "val")
            & (pl.col("case") == "mean") & (pl.col("metric") == "dice")
            & pl.col("value").is_not_null())
        if m.is_empty():
            return
        for bracket in self._brackets:
            for milestone, recorded in bracket._rungs:
                first = (m.filter(pl.col("iteration") >= milestone).sort("iteration")
                         .group_by("trial", maintain_order=True).first())
                for trial, value in zip(first["trial"], first["value"], strict=True):
                    recorded.setdefault(trial, float(value))

    def on_trial_add(self, tune_controller, trial):
        if not self._seeded:
            self._seed()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result):
        if not self._seeded:
            self._seed()
        return super().on_trial_result(tune_controller, trial, result)
