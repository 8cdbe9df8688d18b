"""study.plans: the target spacing of hand-made spacings, plans.json, the out-of-range
warning (on its own and through study.apply.predict)."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from study.plans import check_scan, target_spacing, write_plans


def test_target_spacing_is_the_median_when_isotropic_enough():
    spacings = [[1.0, 1.0, 2.0], [1.0, 1.0, 3.0], [2.0, 2.0, 4.0]]
    shapes = [[100, 100, 50]] * 3
    assert target_spacing(spacings, shapes) == ([1.0, 1.0, 3.0], False)


def test_target_spacing_of_thick_slices_takes_the_10th_percentile():
    # median z 3.75 > 3 x 0.8 and, at 3.75 mm, 40 slices x 3 < 512: anisotropic; the 10th
    # percentile of z spacings [1.0, 2.5, 5, 5] is 1.0 + 0.3 x 1.5 = 1.45 (>= 0.8: kept)
    spacings = [[0.8, 0.8, 5.0], [0.8, 0.8, 5.0], [0.8, 0.8, 2.5], [0.8, 0.8, 1.0]]
    shapes = [[512, 512, 40]] * 4
    target, aniso = target_spacing(spacings, shapes)
    assert aniso and target == pytest.approx([0.8, 0.8, 1.45])
    # never finer than the in-plane axes: z spacings [0.5, 0.5, 5, 5], median 2.75, 10th
    # percentile 0.5 + 0.3 x 0 = 0.5 -> 0.8 (+1e-5)
    target, _ = target_spacing([[0.8, 0.8, 5.0]] * 2 + [[0.8, 0.8, 0.5]] * 2, shapes)
    assert target[2] == pytest.approx(0.8 + 1e-5)


def test_plans_of_the_phantom_are_written_beside_the_cache_and_reused(prepared):
    plans = write_plans(prepared)
    path = prepared.cache_dir / "plans.json"
    assert json.loads(path.read_text()) == plans
    assert set(plans["cases"]) == set(prepared.case_ids)
    c = plans["cases"][prepared.case_ids[0]]
    assert len(c["spacing"]) == 3 and c["axcodes"] == "RAS" and set(c["intensity"]) == set(
        prepared.phases)
    fg = c["intensity"]["arterial"]["foreground"]
    assert fg["p00_5"] <= fg["p50"] <= fg["p99_5"]
    assert plans["learn_cases"] == sorted(prepared.split["train"] + prepared.split["val"])
    t = plans["target_spacing"]
    assert plans["slice_axis"] == 2 - int(np.argmax(t[::-1])) and t[plans["slice_axis"]] == max(t)
    mtime = path.stat().st_mtime_ns
    assert write_plans(prepared) == plans and path.stat().st_mtime_ns == mtime  # reused


def test_check_scan_names_the_case_and_the_range():
    plans = {"ranges": {"spacing": {"min": [1.25, 1.25, 6.0], "max": [1.6, 1.6, 8.0]},
                        "axcodes": ["LAS"], "intensity": {"CT": {"p50": [-100.0, 60.0]}}},
             "normalisation": {"CT": {"scheme": "ct"}}}
    same = {"spacing": [1.4, 1.4, 7.0], "axcodes": "LAS",
            "intensity": {"CT": {"volume": {"p50": 0.0}}}}
    assert check_scan("c1", same, plans) == []
    odd = {"spacing": [0.7, 0.7, 7.0], "axcodes": "PSR",
           "intensity": {"CT": {"volume": {"p50": 900.0}}}}
    warnings = check_scan("c2", odd, plans)
    assert len(warnings) == 3
    assert warnings[0].startswith("case c2: voxel spacing 0.70 x 0.70 x 7.00 mm is outside "
                                  "the training range 1.25 x 1.25 x 6.00 .. 1.60 x 1.60 x 8.00")
    assert "PSR orientation" in warnings[1] and "reoriented to RAS" in warnings[1]
    assert "median intensity 900 is outside the training range -100 .. 60" in warnings[2]


def test_predict_warns_about_a_scan_at_another_resolution(copy_run, prepared, small_phantom,
                                                          tmp_path, capsys):
    from study.apply.predict import main as predict

    run = copy_run()
    meta = json.loads((run / "study.json").read_text())
    meta["plans"] = write_plans(prepared)
    (run / "study.json").write_text(json.dumps(meta))
    case = prepared.split["test"][0]
    inputs = tmp_path / "in"
    inputs.mkdir()
    src = nib.load(str(small_phantom / "imagesTr" / f"{case}_0001.nii.gz"))
    shutil.copy(small_phantom / "imagesTr" / f"{case}_0001.nii.gz", inputs)
    coarse = src.affine.copy()
    coarse[:3, :3] *= 3.0  # the same array said to be 3x coarser
    nib.save(nib.Nifti1Image(np.asarray(src.dataobj), coarse), str(inputs / "odd_0001.nii.gz"))
    capsys.readouterr()
    assert predict([str(run), "-i", str(inputs), "-o", str(tmp_path / "o"), "--phase",
                    "arterial", "--arch", "unet2d", "--tta", "none"]) == 0
    err = capsys.readouterr().err
    assert "warning: case odd: voxel spacing" in err and "outside the training range" in err
    assert f"case {case}:" not in err  # a training-like scan gets no warning
    info = json.loads((tmp_path / "o" / "predictions.json").read_text())
    assert list(info["warnings"]) == ["odd"]
