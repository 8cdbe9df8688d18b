"""Model use you can trust: safe weights, top-rung ensembles, validated ensembles, the
cross-validated fold ensemble exported, test-time mirroring."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from study.apply.bundle import Bundle, ModelRef
from study.apply.export import main as export
from study.apply.predict import main as predict
from study.errors import DataError
from study.train.checkpoint import MODEL_FILE, load_model, load_weights, write_checkpoint


class _Touch:
    """A pickle that creates a file when it is loaded with ``weights_only=False``."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _mask(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_crafted_checkpoint_is_real_but_refused_and_never_runs(tmp_path):
    crafted = tmp_path / "model.pt"
    torch.save({"format": 2, "model": _Touch(tmp_path / "ran")}, crafted)
    torch.load(crafted, weights_only=False)  # what loading it the unsafe way does
    assert (tmp_path / "ran").exists()
    (tmp_path / "ran").unlink()
    with pytest.raises(DataError, match="not a plain-weights checkpoint"):
        load_weights(crafted)
    assert not (tmp_path / "ran").exists()


def test_crafted_archive_is_refused_exit_2_and_creates_nothing(tiny_run, case_inputs,
                                                                tmp_path, capsys):
    good = tmp_path / "good.zip"
    assert export([str(tiny_run), "-o", str(good), "--phase", "arterial", "--arch",
                   "unet2d"]) == 0
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": 2, "model": _Touch(marker)}, evil)
    bad = tmp_path / "model.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = evil.read_bytes() if item.filename.endswith(MODEL_FILE) else \
                src.read(item.filename)
            dst.writestr(item, data)
    capsys.readouterr()
    rc = predict([str(bad), "-i", str(case_inputs), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "not a plain-weights checkpoint" in err and "refusing" in err
    assert not marker.exists()
    assert not list(tmp_path.rglob("*.nii.gz"))  # nothing written


def test_a_crafted_model_in_a_run_is_refused(copy_run, case_inputs, tmp_path, capsys):
    run = copy_run()
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "model": _Touch(marker)}, run / "best/arterial/unet2d" / MODEL_FILE)
    assert predict([str(run), "-i", str(case_inputs), "-o", str(tmp_path / "o"),
                    "--phase", "arterial", "--arch", "unet2d"]) == 2
    assert "not a plain-weights checkpoint" in capsys.readouterr().err
    assert not marker.exists()


def test_format_1_checkpoints_still_load_and_format_2_is_plain(tiny_run, tmp_path):
    model, cfg = load_model(tiny_run / "best/arterial/unet2d")
    # a format-1 training checkpoint as this project wrote it: numpy RNG state as an array
    old = tmp_path / "old"
    old.mkdir()
    shutil.copy(tiny_run / "best/arterial/unet2d/config.json", old / "config.json")
    payload = {"format": 1, "arch": cfg.arch, "in_phases": 1, "base_channels": cfg.base_channels,
               "model": model.state_dict(), "optimizer": None, "iteration": 3,
               "rng": {"numpy": np.random.get_state(), "torch": torch.get_rng_state()},
               "sampler": None, "best": None}
    torch.save(payload, old / MODEL_FILE)
    again, _ = load_model(old)
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert isinstance(load_weights(old / MODEL_FILE)["rng"]["numpy"][1], np.ndarray)
    # format 2: loads with torch's plain weights-only loader, no allow-list at all
    from study.train.checkpoint import rng_state, set_rng_state

    np.random.seed(7)
    new = write_checkpoint(tmp_path / "new", model=model, config=cfg, iteration=3,
                           rng=rng_state())
    want = np.random.rand(3)
    plain = torch.load(new / MODEL_FILE, weights_only=True)
    assert plain["format"] == 2
    set_rng_state(load_weights(new / MODEL_FILE)["rng"])
    np.testing.assert_array_equal(np.random.rand(3), want)  # the RNG resumes exactly


def _ref(rank, budget, trial=None):
    return ModelRef("arterial", "unet2d", trial or f"t{rank}", rank, Path("."), 0.9 - rank / 10,
                    budget, max_budget=9)


def _bundle(models):
    return Bundle(source=Path("run"), name="r", dataset={"channel_names": {"0": "arterial"}},
                  label="tumor", label_value=1, grid=(8, 8, 8), models=models)


def test_top_k_never_takes_a_trial_below_the_top_rung(capsys):
    # ranks are budget-first: 2 trials at the full budget, 2 stopped early at 3 iterations
    b = _bundle([_ref(1, 9), _ref(2, 9), _ref(3, 3), _ref(4, 3)])
    chosen = b.select(top=3)
    assert [m.rank for m in chosen] == [1, 2]
    assert "2 of its 3 best trials reached the full budget (9 iterations)" in \
        capsys.readouterr().err
    # nobody reached the full budget: the highest rung reached, and said so
    b = _bundle([_ref(1, 6), _ref(2, 6), _ref(3, 6), _ref(4, 3)])
    assert [m.rank for m in b.select(top=3)] == [1, 2, 3]
    assert "no trial reached the full budget" in capsys.readouterr().err


def _dice(pred, truth):
    inter, total = np.logical_and(pred, truth).sum(), pred.sum() + truth.sum()
    return 1.0 if total == 0 else 2.0 * inter / total


def test_ensemble_validation_is_the_hand_average_scored_by_hand(copy_run, case_inputs,
                                                                 prepared, tmp_path, capsys):
    from study.data.dataset import read_mask
    from study.evaluation.inference import predict_volume, to_native

    run = copy_run()
    capsys.readouterr()
    assert predict([str(run), "-i", str(case_inputs), "-o", str(tmp_path / "o"), "--phase",
                    "arterial", "--arch", "unet2d", "--top", "2", "--tta", "none",
                    "--postprocessing", "none"]) == 0
    out = capsys.readouterr().out
    assert "arterial/unet2d top-2 ensemble: validation Dice" in out
    assert "for the best single model (arterial/unet2d best model)" in out
    cache = json.loads((run / "validation.json").read_text())["outputs"]
    rec = cache["arterial/unet2d/1:a1+arterial/unet2d/2:a2"]  # the output's models, no mirror
    assert rec["models"] == ["arterial/unet2d/1", "arterial/unet2d/2"] and rec["tta"] == "none"
    members = [load_model(run / "best/arterial/unet2d")[0],
               load_model(_checkpoint(run, "a2"))[0]]
    val = json.loads((run / "study.json").read_text())["split"]["val"]
    assert rec["cases"] == val
    scores = []
    for case in val:
        image = prepared.image(case, ["arterial"])
        mean = sum(predict_volume(m, "2d", image) for m in members) / 2
        src = prepared.source(case)
        truth, _ = read_mask(src["label_path"], 2)
        scores.append(_dice(to_native(mean, truth.shape) >= 0.5, truth > 0))
    assert rec["val_dice"]["none"] == pytest.approx(float(np.mean(scores)), abs=1e-12)
    info = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert info["validation"]["."]["val_dice_applied"] == rec["val_dice"]["none"]
    # a second predict reads the cache: nothing is validated again
    assert predict([str(run), "-i", str(case_inputs), "-o", str(tmp_path / "o2"), "--phase",
                    "arterial", "--arch", "unet2d", "--top", "2", "--tta", "none"]) == 0
    assert "validating" not in capsys.readouterr().err


def _checkpoint(run, trial):
    import polars as pl

    from study.results import read_trials

    return read_trials(run).filter(pl.col("trial") == trial)["checkpoint"][0]


def _with_finalists(run: Path) -> Path:
    """A fake cross-validated winner: its two fold models are trials a1 and a2."""
    home = run / "finalists" / "arterial"
    shutil.copytree(run / "best/arterial/unet2d", home / "fold0")
    shutil.copytree(_checkpoint(run, "a2"), home / "fold1")
    meta = json.loads((run / "study.json").read_text())
    meta["finalists"] = {"k": 2, "folds": 2, "winners": {"arterial": {
        "rank": 1, "trial": "a1", "arch": "unet2d", "mean_fold_dice": 0.55}}}
    (run / "study.json").write_text(json.dumps(meta))
    return run


def test_model_cv_export_round_trip(copy_run, case_inputs, tmp_path, capsys):
    run = _with_finalists(copy_run())
    assert predict([str(run), "-i", str(case_inputs), "-o", str(tmp_path / "a"),
                    "--model", "cv"]) == 0
    assert "not validated (fold models were trained on the validation cases)" in \
        capsys.readouterr().out
    zpath = tmp_path / "cv.zip"
    assert export([str(run), "-o", str(zpath), "--model", "cv"]) == 0
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
    assert "models/arterial/unet2d/fold0/model.pt" in names
    assert "models/arterial/unet2d/fold1/model.pt" in names
    shutil.rmtree(run)
    assert predict([str(zpath), "-i", str(case_inputs), "-o", str(tmp_path / "b"),
                    "--model", "cv"]) == 0
    a = sorted(p.name for p in (tmp_path / "a").glob("*.nii.gz"))
    assert a and a == sorted(p.name for p in (tmp_path / "b").glob("*.nii.gz"))
    for name in a:
        np.testing.assert_array_equal(_mask(tmp_path / "a" / name), _mask(tmp_path / "b" / name))
    capsys.readouterr()
    assert predict([str(zpath), "-i", str(case_inputs), "-o", str(tmp_path / "c")]) == 2
    assert "use --model cv" in capsys.readouterr().err


class _Pointwise(torch.nn.Module):
    """A 1x1 convolution: commutes with every flip, so mirroring is exact."""

    def __init__(self, dims: int):
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.conv = conv(1, 1, 1)
        self.size_multiple = 1

    def forward(self, x):
        return self.conv(x)


@pytest.mark.parametrize("kind, axes", [("2d", (0, 1)), ("3d", (0, 1, 2)), ("3d", (1, 2))])
def test_mirroring_where_the_mirror_is_exact_gives_the_same_mask(kind, axes):
    from study.evaluation.inference import predict_volume

    torch.manual_seed(0)
    model = _Pointwise(3 if kind == "3d" else 2)
    image = np.random.default_rng(0).normal(size=(1, 16, 12, 8)).astype(np.float32)
    plain = predict_volume(model, kind, image, patch=(16, 12, 8))
    mirrored = predict_volume(model, kind, image, patch=(16, 12, 8), mirror_axes=axes)
    np.testing.assert_allclose(mirrored, plain, atol=1e-6)
    np.testing.assert_array_equal(mirrored >= 0.5, plain >= 0.5)


def test_mirroring_averages_the_flipped_predictions_of_a_model_that_is_not_symmetric():
    from study.evaluation.inference import predict_volume

    class Ramp(torch.nn.Module):  # logit = x + position along Y: not flip-equivariant
        size_multiple = 1

        def forward(self, x):
            return x + torch.arange(x.shape[-1], dtype=x.dtype).view(1, 1, 1, -1)

    image = np.zeros((1, 4, 6, 2), dtype=np.float32)
    got = predict_volume(Ramp(), "2d", image, mirror_axes=(1,))
    ramp = np.arange(6, dtype=np.float32)
    want = (1 / (1 + np.exp(-ramp)) + 1 / (1 + np.exp(-ramp[::-1]))) / 2  # by hand
    np.testing.assert_allclose(got[0, :, 0], want, rtol=1e-6)


def test_mirror_axes_skip_left_right_and_the_2d_slice_axis():
    from study.errors import ConfigError
    from study.evaluation.inference import mirror_axes_for, mirror_sets

    ras = np.diag([1.0, 1.0, 1.0, 1.0])
    assert mirror_axes_for("2d", ras) == (1,) and mirror_axes_for("3d", ras) == (1, 2)
    pla = np.array([[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    assert mirror_axes_for("2.5d", pla) == (0,)  # left-right is stored along axis 1 here
    assert mirror_sets("3d", (1, 2)) == [(), (1,), (2,), (1, 2)]
    with pytest.raises(ConfigError, match="flipping the slice axis changes nothing"):
        mirror_sets("2d", (2,))
