"""A smoke study on real CT (the LiTS sample of the `lits_ct` fixture) with --label tumor."""

from __future__ import annotations

import json

import polars as pl
import pytest

from study.launch import main as launch
from study.results import read_metrics, read_trials

pytestmark = pytest.mark.ray


def test_smoke_study_on_lits_ct_segments_tumor(ray_session, lits_ct, tmp_path):
    assert launch(["--space", "smoke", "--data", str(lits_ct), "--label", "tumor", "--phase",
                   "CT", "--name", "lits", "--out", str(tmp_path), "--samples", "2",
                   "--no-report"]) == 0
    run = tmp_path / "lits"
    meta = json.loads((run / "study.json").read_text())
    assert meta["label"] == "tumor" and meta["preprocessing"]["label_value"] == 2
    assert meta["preprocessing"]["channel_normalisation"]["CT"]["scheme"] == "ct"
    assert meta["plans"]["normalisation"]["CT"]["scheme"] == "ct"
    trials = read_trials(run)
    assert trials.height == 2 and set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    test = read_metrics(run).filter((pl.col("split") == "test") & (pl.col("metric") == "dice"))
    assert test.height > 0 and test["value"].is_not_null().all()
