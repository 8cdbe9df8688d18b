"""The same scan stored in another axis order (affine adjusted, every voxel at the same place
in the scanner) is segmented the same, and each mask lands on its own source's axes and
affine (issue 27: canonical orientation)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from study.apply.predict import main as predict
from study.data.orientation import axcodes, to_canonical

CHAOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "chaos_t2_mini"
#: (name, orientation transform of nibabel: input axis i -> output axis, flip)
STORAGES = [
    ("as_stored", [[0, 1], [1, 1], [2, 1]]),
    ("xy_swapped_x_flipped", [[1, -1], [0, 1], [2, 1]]),
    ("xz_swapped", [[2, 1], [1, 1], [0, 1]]),
]


def _restore(src: Path, dst: Path, ornt) -> None:
    """Re-save ``src`` with its array axes permuted / flipped and the affine adjusted."""
    img = nib.load(str(src))
    data = np.asarray(img.dataobj)
    ornt = np.asarray(ornt, dtype=float)
    new = nib.orientations.apply_orientation(data, ornt)
    affine = img.affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    dst.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(new, affine), str(dst))


def _three_storages(files: list[Path], root: Path) -> dict[str, Path]:
    out = {}
    for name, ornt in STORAGES:
        for f in files:
            _restore(f, root / name / f.name, ornt)
        out[name] = root / name
    return out


def _predict_all(run, folders: dict[str, Path], tmp_path) -> dict[str, Path]:
    outs = {}
    for name, folder in folders.items():
        out = tmp_path / f"out_{name}"
        assert predict([str(run), "-i", str(folder), "-o", str(out), "--phase", "arterial",
                        "--arch", "unet2d", "--tta", "none", "--save-probabilities"]) == 0
        outs[name] = out
    return outs


def _check_agreement(case: str, folders, outs, channel: str) -> None:
    ref = None
    for name in folders:
        src = nib.load(str(folders[name] / f"{case}_{channel}.nii.gz"))
        mask_img = nib.load(str(outs[name] / f"{case}.nii.gz"))
        assert mask_img.shape == src.shape  # the source's own axes ...
        np.testing.assert_allclose(mask_img.affine, src.affine, atol=1e-5)  # ... and affine
        prob = np.load(outs[name] / f"{case}.npz")["probabilities"].astype(np.float32)
        canon = (to_canonical(prob, src.affine), to_canonical(np.asarray(mask_img.dataobj),
                                                               src.affine))
        if ref is None:
            ref = canon
            continue
        np.testing.assert_allclose(canon[0], ref[0], atol=1e-3)  # float16 on disk
        a, b = canon[1] > 0, ref[1] > 0
        dice = 1.0 if not (a.any() or b.any()) else 2 * (a & b).sum() / (a.sum() + b.sum())
        assert dice >= 0.99, (name, dice)


def test_a_phantom_case_in_three_axis_orders_gives_the_same_mask(tiny_run, small_phantom,
                                                                  prepared, tmp_path):
    case = prepared.split["test"][0]
    files = [small_phantom / "imagesTr" / f"{case}_0001.nii.gz"]
    folders = _three_storages(files, tmp_path / "in")
    assert len({axcodes(nib.load(str(f / files[0].name)).affine) for f in folders.values()}) == 3
    outs = _predict_all(tiny_run, folders, tmp_path)
    _check_agreement(case, folders, outs, "0001")
    mask = np.asarray(nib.load(str(outs["as_stored"] / f"{case}.nii.gz")).dataobj)
    assert mask.any()  # the comparison is not between empty masks


def test_a_real_mri_case_in_three_axis_orders_gives_the_same_mask(tiny_run, tmp_path):
    if not CHAOS.is_dir():
        pytest.skip("../shared/data/chaos_t2_mini is not here")
    src = tmp_path / "chaos"
    src.mkdir()
    # the model reads the arterial channel (0001): hand it the T2 volume under that name
    shutil.copy(CHAOS / "imagesTr" / "chaos_0001_0000.nii.gz", src / "chaos_0001_0001.nii.gz")
    folders = _three_storages([src / "chaos_0001_0001.nii.gz"], tmp_path / "in")
    outs = _predict_all(tiny_run, folders, tmp_path)
    _check_agreement("chaos_0001", folders, outs, "0001")


def test_without_canonical_orientation_the_axis_order_changes_the_result(
        tiny_run, small_phantom, prepared, tmp_path, monkeypatch):
    """What the runs made before canonical orientation do (and why it was wrong)."""
    from study.apply.bundle import Bundle

    monkeypatch.setattr(Bundle, "canonical", property(lambda self: False))
    case = prepared.split["test"][0]
    files = [small_phantom / "imagesTr" / f"{case}_0001.nii.gz"]
    folders = _three_storages(files, tmp_path / "in")
    outs = _predict_all(tiny_run, {k: folders[k] for k in ("as_stored", "xz_swapped")},
                        tmp_path)
    probs = []
    for name in ("as_stored", "xz_swapped"):
        src = nib.load(str(folders[name] / files[0].name))
        prob = np.load(outs[name] / f"{case}.npz")["probabilities"].astype(np.float32)
        probs.append(to_canonical(prob, src.affine))
    # 10x the tolerance the agreement tests allow: they would catch this
    assert np.abs(probs[0] - probs[1]).max() > 0.01
