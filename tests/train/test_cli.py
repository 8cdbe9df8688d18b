"""``python -m study.train`` end to end on the small phantom (tiny models, 2 iterations)."""

from __future__ import annotations

import subprocess
import sys

import nibabel as nib
import numpy as np
import polars as pl
import pytest

from study.errors import run_cli
from study.results import METRIC_SCHEMA
from study.train.cli import default_patch, main

GRID = ["--grid", "64", "48", "16"]
BASE = {"unet3d": "2", "simplified3d": "4", "unet2d": "4", "hybrid": "4"}


@pytest.mark.parametrize("arch", ["unet2d", "hybrid", "simplified3d", "unet3d"])
def test_cli_writes_metrics_predictions_and_model(small_phantom, tmp_path, arch, capsys):
    out = tmp_path / "run"
    rc = main(["--data", str(small_phantom), *GRID, "--arch", arch, "--phase", "arterial",
               "--iterations", "2", "--eval-every", "1", "--base-channels", BASE[arch],
               "--batch-size", "2", "--out", str(out)])
    assert rc == 0
    df = pl.read_parquet(out / "metrics.parquet")
    assert df.columns == list(METRIC_SCHEMA)  # the results layer's one schema
    assert set(df.filter(pl.col("split") == "val")["grid"]) == {"study"}
    assert set(df.filter(pl.col("split") == "test")["grid"]) == {"study", "native"}
    df = df.filter((pl.col("split") != "test") | (pl.col("grid") == "native"))
    assert set(df["arch"]) == {arch} and set(df["phase"]) == {"arterial"}
    val = df.filter(pl.col("split") == "val")
    test = df.filter(pl.col("split") == "test")
    assert sorted(set(val["iteration"])) == [1, 2]
    assert set(test["iteration"]) == {2}
    test_cases = sorted(set(test["case"]))
    assert len(test_cases) == 1
    dice = test.filter(pl.col("metric") == "dice")["value"].to_list()
    assert len(dice) == 1 and 0.0 <= dice[0] <= 1.0
    printed = capsys.readouterr().out
    assert "mean" in printed and test_cases[0] in printed
    # the prediction overlays the source image: same shape and affine, uint8 mask
    src = nib.load(str(next((small_phantom / "labelsTr").glob(f"{test_cases[0]}.nii*"))))
    pred = nib.load(str(out / "predictions" / f"{test_cases[0]}.nii.gz"))
    assert pred.shape == src.shape and pred.get_data_dtype() == np.uint8
    np.testing.assert_allclose(pred.affine, src.affine, atol=1e-5)
    assert (out / "model" / "model.pt").is_file() and (out / "config.json").is_file()
    # the native test Dice is the Dice of that file against the label file, by hand
    p, t = np.asarray(pred.dataobj) > 0, np.asarray(src.dataobj) == 2  # tumor = 2
    hand = 2 * (p & t).sum() / (p.sum() + t.sum()) if p.sum() + t.sum() else 1.0
    assert dice[0] == pytest.approx(hand, abs=1e-12)


def test_cli_user_errors_exit_2(small_phantom, tmp_path, capsys):
    args = ["--data", str(small_phantom), *GRID, "--iterations", "1", "--out"]
    assert run_cli(main, [*args, str(tmp_path / "a"), "--phase", "venous"]) == 2
    assert "venous" in capsys.readouterr().err
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    assert run_cli(main, [*args, str(tmp_path / "b")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert run_cli(main, [*args, str(tmp_path / "c"), "--arch", "unet3d",
                          "--patch", "24", "16", "16"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # checked before anything is written
    (tmp_path / "file").write_text("x")
    assert run_cli(main, [*args, str(tmp_path / "file" / "out")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_cli_bad_arguments_exit_2(tmp_path):
    for bad in (["--iterations", "0"], ["--iterations", "5", "--arch", "vnet"],
                ["--iterations", "x"]):
        proc = subprocess.run([sys.executable, "-m", "study.train", *bad, "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "error:" in proc.stderr


def test_default_patch():
    assert default_patch((320, 256, 72)) == (64, 64, 64)
    assert default_patch((64, 48, 16)) == (64, 48, 16)
    assert default_patch((40, 20, 8)) == (32, 16, 16)


@pytest.mark.slow
def test_unet2d_learns_the_phantom(prepared, tmp_path):
    """A small 2D U-Net reaches a clearly non-zero val Dice within 200 CPU iterations."""
    from study.train.engine import TrainConfig, train

    cfg = TrainConfig(arch="unet2d", phases=("arterial",), base_channels=16, lr=3e-3,
                      iterations=200, eval_every=200, batch_size=4, seed=0)
    res = train(cfg, prepared, None, workdir=tmp_path)
    assert res["best_val_dice"] > 0.1
