"""Modality-aware normalisation: CT by the data set's foreground statistics, worked out by
hand; other channels per volume as before; predict applies the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from study.data import prepare
from study.data.intensity import ZSCORE, ct_scheme, is_ct
from study.data.resample import apply_scheme, normalise


def _ct_dataset(root, write_nifti):
    """3 training cases of 4x4x2: background -1000 HU, a liver (label 1) of 0/100 HU and a
    tumor (label 2) of 200/300 HU in case 0; the others hold the same foreground values."""
    root.mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "numTraining": 3, "file_ending": ".nii.gz"}))
    for i in range(3):
        img = np.full((4, 4, 2), -1000.0, dtype=np.float32)
        lab = np.zeros((4, 4, 2), dtype=np.uint8)
        img[0, 0, 0], img[0, 1, 0], img[1, 0, 0], img[1, 1, 0] = 0, 100, 200, 300
        lab[0, 0, 0] = lab[0, 1, 0] = 1
        lab[1, 0, 0] = lab[1, 1, 0] = 2
        img[3, 3, 1] = 1000.0  # bright bone, outside the foreground
        write_nifti(root / "imagesTr" / f"ct_{i:03d}_0000.nii.gz", img)
        write_nifti(root / "labelsTr" / f"ct_{i:03d}.nii.gz", lab)
    return root


def test_ct_scheme_by_hand():
    s = ct_scheme(np.array([0.0, 100.0, 200.0, 300.0] * 3))
    # 12 sorted values, 0.5th percentile at index 0.055 -> 0; 99.5th at 10.945 -> 300
    assert s["clip"] == [pytest.approx(0.0), pytest.approx(300.0)]
    assert s["mean"] == pytest.approx(150.0) and s["std"] == pytest.approx(np.sqrt(12500.0))
    assert is_ct("CT") and is_ct(" ct ") and not is_ct("T2SPIR") and not is_ct("arterial")


def test_ct_volumes_use_the_data_sets_foreground_statistics(tmp_path, write_nifti):
    root = _ct_dataset(tmp_path / "ct", write_nifti)
    prep = prepare(root, label="tumor", grid=(4, 4, 2), cache_root=tmp_path / "cache",
                   progress=False, val_fraction=0.34, test_fraction=0.34)
    scheme = prep.settings["channel_normalisation"]["CT"]
    assert scheme["scheme"] == "ct" and scheme["voxels"] == 12  # 4 foreground voxels x 3
    lo, hi = scheme["clip"]
    image = prep.image(prep.case_ids[0], ["CT"])[0]  # RAS = stored axes here (diagonal)
    std = np.sqrt(12500.0)
    want = {(0, 0, 0): (0 - 150) / std, (1, 1, 0): (300 - 150) / std,
            (3, 3, 1): (hi - 150) / std,  # 1000 HU clipped to the 99.5th percentile
            (2, 2, 0): (lo - 150) / std}  # -1000 HU clipped to the 0.5th
    for voxel, value in want.items():
        assert image[voxel] == pytest.approx(value, abs=2e-4)  # int16 storage step
    # an MR data set keeps the per-volume z-score
    assert apply_scheme(np.arange(10.0), None).tolist() == normalise(np.arange(10.0)).tolist()
    assert apply_scheme(np.arange(10.0), ZSCORE).tolist() == normalise(np.arange(10.0)).tolist()


def test_predict_preprocessing_applies_the_runs_ct_scheme(tmp_path, write_nifti):
    from study.data.dataset import read_volume
    from study.data.resample import preprocess_image

    root = _ct_dataset(tmp_path / "ct", write_nifti)
    prep = prepare(root, label="tumor", grid=(4, 4, 2), cache_root=tmp_path / "cache",
                   progress=False, val_fraction=0.34, test_fraction=0.34)
    case = prep.case_ids[1]
    vol, _ = read_volume(root / "imagesTr" / f"{case}_0000.nii.gz")
    scheme = prep.settings["channel_normalisation"]["CT"]
    np.testing.assert_array_equal(preprocess_image(vol[None], (4, 4, 2), [scheme]),
                                  prep.image(case, ["CT"]))  # bit-identical, as for MR
    assert not np.array_equal(preprocess_image(vol[None], (4, 4, 2)), prep.image(case, ["CT"]))
