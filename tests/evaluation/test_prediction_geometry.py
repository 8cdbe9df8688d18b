"""A known mask written back with ``write_prediction_nifti`` from really prepared data lands
on the source label, voxel for voxel: the phantom and the real CHAOS sample (one oblique
case, x mirrored in every header)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from study.data import prepare, read_dataset
from study.evaluation.inference import write_prediction_nifti

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "chaos_t2_mini"
if not SAMPLE.is_dir():
    SAMPLE = Path("/work/shared/data/chaos_t2_mini")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def _round_trip(root: Path, grid, cache: Path, out: Path) -> dict[str, float]:
    """Write each case's prepared mask (on the grid) as a prediction; Dice with the raw
    label file of the case, after checking shape, dtype and affine against that file."""
    spec = read_dataset(root)
    prep = prepare(root, grid=grid, cache_root=cache, progress=False)
    dice = {}
    for case in prep.case_ids:
        label = nib.load(str(prep.source(case)["label_path"]))
        truth = np.asarray(label.dataobj) == spec.label_value
        assert truth.any()
        known = np.asarray(prep.mask(case), dtype=np.float32)  # 0/1 on the study grid
        assert known.shape == tuple(grid)
        path = write_prediction_nifti(known, prep, case, out / f"{case}.nii.gz")
        img = nib.load(str(path))
        assert img.shape == label.shape[:3] and img.get_data_dtype() == np.uint8
        np.testing.assert_allclose(img.affine, label.affine, atol=1e-5)
        assert nib.aff2axcodes(img.affine) == nib.aff2axcodes(label.affine)
        dice[case] = _dice(np.asarray(img.dataobj) > 0, truth)
    return dice


def test_phantom_mask_round_trips_onto_the_source_label(small_phantom, tmp_path):
    # 80x64x16 native -> 160x128x32 grid (nearest: each voxel twice) -> back (linear,
    # >= 0.5): every native voxel is the mean of its own two copies, so the round trip is
    # exact; any half-voxel misalignment of either resampling breaks that
    dice = _round_trip(small_phantom, (160, 128, 32), tmp_path / "cache", tmp_path / "out")
    assert len(dice) == 6
    assert min(dice.values()) == 1.0, dice


def test_chaos_mask_round_trips_onto_the_source_label(tmp_path):
    if not (SAMPLE / "dataset.json").is_file():
        pytest.skip(f"real MRI sample not found at {SAMPLE}")
    root = tmp_path / "chaos_t2_mini"  # the shared sample is read-only: work on a copy
    shutil.copytree(SAMPLE, root)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    affines = {p.name: nib.load(str(p)).affine for p in (root / "labelsTr").iterdir()}
    # what makes this sample a geometry test: x mirrored (L), one oblique case
    assert all(nib.aff2axcodes(a)[0] == "L" for a in affines.values())
    assert abs(affines["chaos_0002.nii.gz"][2, 0]) > 1e-3
    # 256x256x31..37 native -> 288x272x40 grid (non-integer ratios on every axis)
    dice = _round_trip(root, (288, 272, 40), tmp_path / "cache", tmp_path / "out")
    assert sorted(dice) == ["chaos_0001", "chaos_0002", "chaos_0003"]
    assert min(dice.values()) > 0.99, dice
