"""``--finalists 2 --folds 3``: a real smoke study on the phantom, end to end (issue 13)."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from study.apply.evaluate import main as evaluate
from study.apply.predict import main as predict
from study.launch import main as launch
from study.report.build import build_report
from study.results.finalists import read_finalists, summary

pytestmark = pytest.mark.ray


def test_finalists_cross_validated_on_folds_winner_tested_once(ray_session, small_phantom,
                                                               tmp_path, capsys):
    assert launch(["--space", "smoke", "--data", str(small_phantom), "--name", "cv",
                   "--out", str(tmp_path), "--samples", "3", "--no-report",
                   "--finalists", "2", "--folds", "3"]) == 0
    run = tmp_path / "cv"
    meta = json.loads((run / "study.json").read_text())
    folds = json.loads((run / "finalists" / "folds.json").read_text())
    # folds: the train + val cases, each held out once, test cases never in one
    cases = sorted(meta["split"]["train"] + meta["split"]["val"])
    assert len(folds) == 3 and sorted(c for f in folds for c in f["val"]) == cases
    assert not set(meta["split"]["test"]) & set(cases)
    assert meta["finalists"]["k"] == 2 and meta["finalists"]["folds"] == 3
    table = read_finalists(run)
    cv = table.filter(pl.col("split") == "cv")
    # 2 finalists x 3 folds, each trained to the full budget and scored on its own held-out
    # cases: the per-case rows name exactly the fold's validation cases
    means = cv.filter(pl.col("case") == "mean")
    assert sorted(means.select("rank", "fold").rows()) == [(r, f) for r in (1, 2)
                                                           for f in range(3)]
    assert set(means["iteration"]) == {20} and set(means["status"]) == {"TERMINATED"}
    for (rank, fold), part in cv.filter(pl.col("case") != "mean").group_by("rank", "fold"):
        assert sorted(set(part["case"])) == folds[fold]["val"], (rank, fold)
    # the finalists are the search's two best trials of the phase (budget-aware)
    trials = pl.read_parquet(run / "trials.parquet")
    ranked = trials.sort(["budget", "final_val_dice"], descending=True)
    assert set(means["trial"]) == set(ranked["trial"][:2])
    # the winner: the best mean over folds; tested once, as a 3-fold ensemble, both grids
    s = summary(table)
    win = s.filter(pl.col("winner"))
    assert win.height == 1 and win["mean"][0] == pytest.approx(s["mean"].max())
    assert meta["finalists"]["winners"]["arterial"]["rank"] == win["rank"][0]
    test = table.filter(pl.col("split") == "test")
    assert set(test["rank"]) == {win["rank"][0]} and set(test["grid"]) == {"study", "native"}
    assert sorted(set(test["case"])) == sorted(meta["split"]["test"])
    assert len(list((run / "finalists" / "arterial").glob("fold*/config.json"))) == 3
    for case in meta["split"]["test"]:
        assert (run / "predictions" / "arterial" / "cv-ensemble" / f"{case}.nii.gz").is_file()
    out = capsys.readouterr().out
    assert "finalists arterial: 2 configuration(s) x 3 folds" in out
    assert "finalists by cross-validation" in out and "<- winner" in out
    # study.apply.predict --model cv applies the same fold ensemble (and postprocessing) to the raw
    # test images: study.apply.evaluate reproduces the winner's native test Dice, case by case
    inputs = tmp_path / "in"
    inputs.mkdir()
    for case in meta["split"]["test"]:
        for f in (small_phantom / "imagesTr").glob(f"{case}_*.nii.gz"):
            shutil.copy(f, inputs / f.name)
    assert predict([str(run), "-i", str(inputs), "-o", str(tmp_path / "p"), "--model", "cv"]) == 0
    info = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert sorted(info["models"]) == [f"arterial/{win['arch'][0]}/fold{f}" for f in (1, 2, 3)]
    assert evaluate([str(small_phantom / "labelsTr"), str(tmp_path / "p")]) == 0
    got = {c["case"]: c["metrics"]["dice"] for c in
           json.loads((tmp_path / "p" / "summary.json").read_text())["metric_per_case"]}
    from study.results.finalists import test_cases_table

    shown = test_cases_table(table).filter(pl.col("metric") == "dice")
    assert got == dict(shown.select("case", "value").rows())
    page = build_report([run], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Finalists by cross-validation" in page and "3-fold ensemble" in page
    # --resume after the end re-runs nothing and keeps the table
    assert launch(["--name", "cv", "--out", str(tmp_path), "--resume", "--no-report"]) == 0
    assert read_finalists(run).sort(table.columns).equals(table.sort(table.columns))
