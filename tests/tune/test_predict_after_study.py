"""After a real (Ray) study: study.apply.predict + study.apply.evaluate on the test cases' raw images
reproduce the run's own native-grid test numbers, case by case."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from study.apply.evaluate import main as evaluate
from study.apply.predict import main as predict
from study.launch import main as launch
from study.results import displayed_test, read_metrics

pytestmark = pytest.mark.ray


def test_predict_and_evaluate_reproduce_a_smoke_study(ray_session, small_phantom, tmp_path):
    assert launch(["--space", "smoke", "--data", str(small_phantom), "--name", "s",
                   "--out", str(tmp_path), "--samples", "2", "--no-report"]) == 0
    run = tmp_path / "s"
    assert json.loads((run / "dataset.json").read_text()) == json.loads(
        (small_phantom / "dataset.json").read_text())  # the run carries its phase map
    test_cases = json.loads((run / "study.json").read_text())["split"]["test"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for case in test_cases:
        for f in (small_phantom / "imagesTr").glob(f"{case}_*.nii.gz"):
            shutil.copy(f, inputs / f.name)
    out = tmp_path / "pred"
    assert predict([str(run), "-i", str(inputs), "-o", str(out), "--tta", "none"]) == 0
    native = displayed_test(read_metrics(run)).filter(pl.col("metric") == "dice")
    assert set(native["grid"]) == {"native"}
    assert native.height >= len(test_cases)
    for arch in native["arch"].unique():
        folder = out / "arterial" / arch
        if not folder.is_dir():  # a single (phase, arch) run writes straight into OUT
            folder = out
        assert evaluate([str(small_phantom / "labelsTr"), str(folder)]) == 0
        got = {c["case"]: c["metrics"]["dice"] for c in
               json.loads((folder / "summary.json").read_text())["metric_per_case"]}
        want = dict(native.filter(pl.col("arch") == arch).select("case", "value").rows())
        assert got == want
