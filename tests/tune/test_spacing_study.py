"""A study whose budget says ``spacing:`` instead of ``grid:``: every case on its own grid at
the target spacing, recorded in study.json, and `study.apply.predict` segments a scan with
twice the field of view at the same mm per voxel, back on the scan's own grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from study.apply.predict import main as predict
from study.launch import main as launch
from study.tune.space import SPACES_DIR

pytestmark = pytest.mark.ray


def test_spacing_study_and_predict_on_a_larger_field_of_view(ray_session, small_phantom,
                                                             tmp_path):
    text = (SPACES_DIR / "smoke.yaml").read_text()
    text = text.replace("grid: [32, 32, 8], trials: 4", "spacing: [6.0, 6.0, auto], trials: 2")
    space = tmp_path / "spaced.yaml"
    space.write_text(text)
    assert launch(["--space", str(space), "--budget", "smoke", "--data", str(small_phantom),
                   "--name", "sp", "--out", str(tmp_path), "--no-report"]) == 0
    run = tmp_path / "sp"
    meta = json.loads((run / "study.json").read_text())
    assert meta["budget"]["grid"] is None and meta["budget"]["spacing"] == [6.0, 6.0, "auto"]
    target = meta["preprocessing"]["spacing"]
    assert target[:2] == [6.0, 6.0] and meta["preprocessing"]["grid"] is None

    # a test scan, and the same scan padded to twice its in-plane field of view
    case = meta["split"]["test"][0]
    src = nib.load(str(small_phantom / "imagesTr" / f"{case}_0001.nii.gz"))
    vol = np.asarray(src.dataobj, dtype=np.float32)
    big = np.pad(vol, [(0, vol.shape[0]), (0, vol.shape[1]), (0, 0)], mode="edge")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, arr in (("same", vol), ("wide", big)):
        for ch in ("0000", "0001", "0002", "0003"):
            nib.save(nib.Nifti1Image(arr, src.affine), str(inputs / f"{name}_{ch}.nii.gz"))
    assert predict([str(run), "-i", str(inputs), "-o", str(tmp_path / "out"),
                    "--tta", "none"]) == 0
    for folder in {p.parent for p in (tmp_path / "out").rglob("same.nii.gz")}:
        same = nib.load(str(folder / "same.nii.gz"))
        wide = nib.load(str(folder / "wide.nii.gz"))
        assert same.shape == vol.shape and wide.shape == big.shape
        assert np.allclose(wide.affine, src.affine)
        # (the per-case grid at the run's spacing: tests/data/test_spacing.py; masks are not
        # compared: per-volume MR normalisation sees the padded field of view)
    info = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert info["spacing"] == target and info["grid"] is None
