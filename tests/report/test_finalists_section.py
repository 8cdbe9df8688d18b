"""The report's finalists block: fold scores with their spread, the winner, its test table."""

from __future__ import annotations

import json
import shutil

from study.report.build import build_report
from study.results.finalists import add_rows, fold_rows
from tests.report.conftest import CASES


def _finalists(run, folds_by_rank, test_dice):
    rows = []
    for rank, values in folds_by_rank.items():
        base = {"study": "demo", "phase": "arterial", "rank": rank,
                "trial": f"arterial_unet2d_{rank - 1:05d}", "arch": "unet2d", "config": "{}"}
        for fold, v in enumerate(values):
            rows += fold_rows(base, fold, {"iteration": 30, "status": "TERMINATED",
                                           "val_dice": v, "rows": []})
    base = {"study": "demo", "phase": "arterial", "rank": 2, "trial": "arterial_unet2d_00001",
            "arch": "unet2d", "config": "{}", "fold": None, "split": "test"}
    for case, d in zip(CASES, test_dice, strict=True):
        for grid in ("study", "native"):
            rows += [{**base, "case": case, "metric": m, "value": d, "grid": grid,
                      "postprocessing": "none"} for m in ("precision", "recall", "dice")]
    add_rows(run, rows)
    meta = json.loads((run / "study.json").read_text())
    meta["finalists"] = {"k": 2, "folds": 3}
    (run / "study.json").write_text(json.dumps(meta))


def test_report_shows_fold_scores_spread_winner_and_its_test(tmp_path, run_dir):
    run = shutil.copytree(run_dir, tmp_path / "run")
    _finalists(run, {1: [0.5, 0.6, 0.7], 2: [0.9, 0.8, 0.7]}, [0.25, 0.5, 0.75])
    page = build_report([run], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Finalists by cross-validation" in page
    assert "the 2 best configuration(s)" in page and "each of 3 folds" in page
    block = page[page.index("Finalists by cross-validation"):]
    for v in ("0.5000", "0.6000", "0.7000", "0.9000", "0.8000"):
        assert v in block
    assert '<td class="best">0.8000</td>' in block  # the winner's mean (0.9 + 0.8 + 0.7) / 3
    assert "<td>0.1000</td>" in block  # its sample SD (and finalist 1's)
    assert "winner" in block and "Held-out fold Dice per finalist" in block
    assert "unet2d (3-fold ensemble, finalist #2)" in block
    assert "0.5000" in block[block.index("fold ensembles on the test set"):]  # test mean


def test_no_finalists_no_block(tmp_path, run_dir):
    page = build_report([run_dir], tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Finalists by cross-validation" not in page
