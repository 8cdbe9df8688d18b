import numpy as np

from study.report import pictures
from study.report.png import decode_png, encode_palette_png


def test_png_round_trip():
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 256, (9, 13)).astype(np.uint8)
    rgb = decode_png(encode_palette_png(idx, pictures.PALETTE))
    assert rgb.shape == (9, 13, 3)
    assert (rgb == pictures.PALETTE[idx]).all()


def test_tumor_slices_pick_largest_component():
    truth = np.zeros((20, 16, 10), bool)
    truth[2:4, 2:4, 1] = True  # small lesion at z=1
    truth[10:16, 5:8, 6:9] = True  # large lesion, widest at z=6..8
    truth[9:17, 4:10, 7] = True  # ... and widest of all at z=7, y spans 4..9
    z, y = pictures.tumor_slices(truth)
    assert z == 7
    assert 4 <= y <= 9
    assert pictures.tumor_slices(np.zeros_like(truth)) == (5, 8)  # centre when no tumor


def test_overlay_colours_truth_outline_and_prediction():
    gray = np.zeros((8, 8), np.uint8)
    truth = np.zeros((8, 8), bool)
    truth[2:6, 2:6] = True
    pred = np.zeros((8, 8), bool)
    pred[0, 0] = True
    idx = pictures.overlay(gray, truth, pred)
    assert idx[2, 2] == pictures.GREEN and idx[3, 3] == 0  # outline only, inside unchanged
    assert idx[0, 0] == pictures.GRAY_LEVELS  # prediction tinted
    assert tuple(pictures.PALETTE[idx[0, 0]]) == (128, 0, 0)  # black tinted red


def test_phase_pictures_from_run(run_dir):
    from study.report.load import load_run

    run = load_run(run_dir)
    pp = pictures.phase_pictures(run.path, run.meta, "arterial", max_cases=2)
    assert pp.archs == ["unet2d", "hybrid"]  # seed order
    assert [c.case for c in pp.cases] == ["case_c", "case_b"]  # most tumor voxels first
    views = pp.cases[0].views["hybrid"]
    axial, coronal = views
    assert axial.label.startswith("axial") and coronal.label.startswith("coronal")
    img = decode_png(axial.png)
    assert img.shape == (24, 32, 3)  # (Y, X) on screen
    assert (img == pictures.PALETTE[pictures.GREEN]).all(axis=2).any()  # truth outline drawn
    assert decode_png(coronal.png).shape == (8, 32, 3)
    assert coronal.height_mm == 8 * 4.0 and coronal.width_mm == 32 * 1.5


def test_phase_pictures_messages_instead_of_errors(run_dir, tmp_path):
    pp = pictures.phase_pictures(run_dir, {"data": str(tmp_path / "gone")}, "arterial")
    assert "not found" in pp.message and pp.cases == []
    pp = pictures.phase_pictures(tmp_path, {}, "arterial")
    assert "no predictions" in pp.message


def test_prediction_on_wrong_grid_is_reported_not_drawn(tmp_path, dataset):
    import nibabel as nib

    from .conftest import write_run

    run = write_run(tmp_path / "run", data=dataset)
    bad = run / "predictions" / "portal" / "hybrid" / "case_c.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), bad)
    import json

    pp = pictures.phase_pictures(run, json.loads((run / "study.json").read_text()), "portal", 1)
    case = pp.cases[0]
    assert case.case == "case_c"
    assert "shape" in case.problems["hybrid"] and "hybrid" not in case.views
    assert len(case.views["unet2d"]) == 2
