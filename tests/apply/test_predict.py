"""study.apply.predict / study.apply.evaluate / study.apply.export on a finished (Ray-free) run."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import polars as pl
import pytest

from study.apply.evaluate import main as evaluate
from study.apply.export import main as export
from study.apply.predict import main as predict
from study.results import displayed_test, read_metrics


def _mask(path):
    return np.asarray(nib.load(str(path)).dataobj)


def _probs(path):
    return np.load(path)["probabilities"].astype(np.float32)


def test_predict_then_evaluate_reproduces_the_runs_native_test_metrics(
        tiny_run, case_inputs, small_phantom, tmp_path):
    out = tmp_path / "pred"
    # the validation-chosen postprocessing (auto) is the study's; mirroring off, as the study
    assert predict([str(tiny_run), "-i", str(case_inputs), "-o", str(out), "--tta", "none"]) == 0
    test = displayed_test(read_metrics(tiny_run))  # native, chosen postprocessing
    assert set(test["grid"]) == {"native"}
    groups = test.select("phase", "arch").unique().rows()
    assert len(groups) == 4  # arterial unet2d/hybrid/unet3d, portal unet2d
    for phase, arch in groups:
        folder = out / phase / arch
        # the very masks the run wrote for its test evaluation
        for f in (tiny_run / "predictions" / phase / arch).glob("*.nii.gz"):
            np.testing.assert_array_equal(_mask(folder / f.name), _mask(f))
        assert evaluate([str(small_phantom / "labelsTr"), str(folder)]) == 0
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["label"] == "tumor" and summary["label_value"] == 2
        got = {c["case"]: c["metrics"] for c in summary["metric_per_case"]}
        want = test.filter((pl.col("phase") == phase) & (pl.col("arch") == arch))
        assert set(got) == set(want["case"]) and len(got) == 2
        for r in want.iter_rows(named=True):  # every metric, every case, exactly
            assert got[r["case"]][r["metric"]] == r["value"], (phase, arch, r)
    info = json.loads((out / "predictions.json").read_text())
    case = sorted(test["case"].unique())[0]
    assert info["files"][f"arterial/unet2d/{case}.nii.gz"] == ["arterial/unet2d/1"]
    assert info["models"]["arterial/unet2d/1"]["trial"] == "a1"  # the budget-aware best


def test_top2_and_archs_ensemble_average_probability_maps(tiny_run, case_inputs, tmp_path):
    case = sorted(p.name[:-len("_0001.nii.gz")] for p in case_inputs.glob("*_0001.nii.gz"))[0]
    one = [str(case_inputs / f"{case}_0001.nii.gz")]  # arterial = channel 1
    runs = {}
    for key, extra in {"u1": ["--arch", "unet2d"], "u2": ["--arch", "unet2d", "--top", "2"],
                       "h": ["--arch", "hybrid"],
                       "ens": ["--phase", "arterial", "--arch", "unet2d", "hybrid",
                               "--ensemble", "archs"]}.items():
        out = tmp_path / key
        assert predict([str(tiny_run), "-i", *one, "-o", str(out), "--phase", "arterial",
                        "--save-probabilities", *extra]) == 0
        runs[key] = out
    # one output per case, straight in OUT, when one group (or one ensemble) is asked for
    for key in runs:
        assert (runs[key] / f"{case}.nii.gz").is_file() and (runs[key] / f"{case}.npz").is_file()
    info = json.loads((runs["u2"] / "predictions.json").read_text())
    assert info["files"][f"{case}.nii.gz"] == ["arterial/unet2d/1", "arterial/unet2d/2"]
    # top 2 is the mean of ranks 1 and 2: rank 2's map follows from the mean and rank 1's
    p1, p12 = _probs(runs["u1"] / f"{case}.npz"), _probs(runs["u2"] / f"{case}.npz")
    assert not np.allclose(p1, p12, atol=1e-3)
    # archs ensemble = mean of the unet2d and hybrid maps (float16 storage: ~1e-3)
    ph, pe = _probs(runs["h"] / f"{case}.npz"), _probs(runs["ens"] / f"{case}.npz")
    np.testing.assert_allclose(pe, (p1 + ph) / 2, atol=2e-3)
    ens = json.loads((runs["ens"] / "predictions.json").read_text())
    assert ens["files"][f"{case}.nii.gz"] == ["arterial/hybrid/1", "arterial/unet2d/1"]
    mean, mask = (p1 + ph) / 2, _mask(runs["ens"] / f"{case}.nii.gz")
    clear = np.abs(mean - 0.5) > 2e-3  # away from the threshold, float16 cannot flip a voxel
    np.testing.assert_array_equal(mask[clear], (mean[clear] >= 0.5).astype(np.uint8))


def test_phases_ensemble_writes_one_folder_per_arch(tiny_run, case_inputs, tmp_path):
    out = tmp_path / "ph"
    assert predict([str(tiny_run), "-i", str(case_inputs), "-o", str(out), "--arch", "unet2d",
                    "hybrid", "--ensemble", "phases"]) == 0
    info = json.loads((out / "predictions.json").read_text())
    unet = {k: v for k, v in info["files"].items() if k.startswith("unet2d/")}
    assert unet and all(v == ["arterial/unet2d/1", "portal/unet2d/1"] for v in unet.values())
    assert any(k.startswith("hybrid/") for k in info["files"])


def test_predicts_a_case_on_a_grid_no_training_case_had(tiny_run, case_inputs, tmp_path):
    """Crop and re-space a case: the mask comes back on that new grid and affine."""
    src = next(iter(sorted(case_inputs.glob("*_0001.nii.gz"))))
    img = nib.load(str(src))
    data = np.asarray(img.dataobj)[5:71, 3:50, 2:15]  # 66 x 47 x 13, odd sizes
    affine = img.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.array([5, 3, 2])
    affine[:3, :3] *= np.array([1.1, 0.9, 1.0])  # other voxel size
    folder = tmp_path / "in"
    folder.mkdir()
    nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(folder / "odd_0001.nii.gz"))
    out = tmp_path / "out"
    assert predict([str(tiny_run), "-i", str(folder), "-o", str(out), "--phase", "arterial",
                    "--arch", "hybrid"]) == 0
    pred = nib.load(str(out / "odd.nii.gz"))
    assert pred.shape == data.shape and pred.get_data_dtype() == np.uint8
    np.testing.assert_allclose(pred.affine, affine, atol=1e-5)


def test_export_archive_predicts_without_the_run(tiny_run, copy_run, case_inputs, tmp_path):
    run = copy_run()
    zpath = tmp_path / "model.zip"
    assert export([str(run), "-o", str(zpath), "--phase", "arterial", "--top", "2"]) == 0
    assert predict([str(run), "-i", str(case_inputs), "-o", str(tmp_path / "a"),
                    "--phase", "arterial", "--top", "2"]) == 0
    shutil.rmtree(run)  # nothing of the run is left: the archive must be enough
    assert predict([str(zpath), "-i", str(case_inputs), "-o", str(tmp_path / "b"),
                    "--top", "2"]) == 0
    a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.nii.gz"))
    b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.nii.gz"))
    assert a == b and len(a) == 2 * 3  # 2 cases x arterial unet2d/hybrid/unet3d
    for rel in a:
        np.testing.assert_array_equal(_mask(tmp_path / "a" / rel), _mask(tmp_path / "b" / rel))
    info = json.loads((tmp_path / "b" / "predictions.json").read_text())
    assert info["models"]["arterial/unet2d/2"]["path"].startswith(f"{zpath}!models/")


def test_continue_skips_cases_already_written(tiny_run, case_inputs, tmp_path):
    out = tmp_path / "c"
    args = [str(tiny_run), "-i", str(case_inputs), "-o", str(out), "--arch", "hybrid"]
    assert predict(args) == 0
    files = sorted(out.glob("*.nii.gz"))
    assert len(files) == 2
    stamp = {f: f.stat().st_mtime_ns for f in files}
    files[0].unlink()
    assert predict([*args, "--continue"]) == 0
    assert files[0].is_file() and files[1].stat().st_mtime_ns == stamp[files[1]]


def test_evaluate_lists_one_sided_cases_and_computes_by_hand(write_nifti, tmp_path, capsys):
    """Native metrics on a tiny volume with an oblique, anisotropic affine, by hand."""
    affine = np.array([[0.0, -1.5, 0.0, 10.0], [2.0, 0.0, 0.0, -5.0],
                       [0.0, 0.0, 3.0, 7.0], [0, 0, 0, 1]])
    truth = np.zeros((6, 5, 4), np.uint8)
    truth[1:4, 1:3, 1:3] = 2  # 12 voxels of label 2
    truth[0, 0, 0] = 1  # another label: background for "tumor"
    pred = np.zeros_like(truth)
    pred[2:5, 1:3, 1:3] = 1  # 8 overlap, 4 false positive, 4 missed
    labels, preds = tmp_path / "ds" / "labelsTs", tmp_path / "p"
    write_nifti(labels / "a.nii.gz", truth, affine)
    write_nifti(preds / "a.nii.gz", pred, affine)
    write_nifti(labels / "only_label.nii.gz", truth, affine)
    write_nifti(preds / "only_pred.nii.gz", pred, affine)
    (tmp_path / "ds" / "dataset.json").write_text(json.dumps(
        {"labels": {"background": 0, "liver": 1, "tumor": 2}}))
    assert evaluate([str(labels), str(preds), "--label", "tumor"]) == 0
    s = json.loads((preds / "summary.json").read_text())
    m = s["metric_per_case"][0]["metrics"]
    assert (m["tp"], m["fp"], m["fn"]) == (8, 4, 4)
    assert m["precision"] == pytest.approx(8 / 12) and m["dice"] == pytest.approx(16 / 24)
    # surfaces differ by one voxel along array axis 0, whose spacing is 2 mm (column norm)
    assert m["hd95"] == pytest.approx(2.0)
    assert s["only_in_labels"] == ["only_label"] and s["only_in_predictions"] == ["only_pred"]
    out = capsys.readouterr().out
    assert "only in labels: only_label" in out and "only in predictions: only_pred" in out
    df = pl.read_parquet(preds / "metrics.parquet")
    assert df.filter(pl.col("metric") == "dice")["value"].to_list() == [pytest.approx(2 / 3)]
    # any value > 0 without dataset.json: label 1 voxel joins the truth
    (tmp_path / "ds" / "dataset.json").unlink()
    assert evaluate([str(labels), str(preds)]) == 0
    m = json.loads((preds / "summary.json").read_text())["metric_per_case"][0]["metrics"]
    assert m["fn"] == 5


def test_report_links_the_prediction_command_and_says_native_grid(tiny_run, tmp_path):
    from study.report import build_report

    html = build_report(tiny_run, tmp_path / "r.html").read_text()
    assert f"python -m study.apply.predict {tiny_run} -i NEW_SCANS/ -o MASKS/" in html
    assert f"python -m study.apply.export {tiny_run} -o tiny-model.zip" in html
    assert "Measured on the native grid" in html


def test_postprocessing_is_chosen_on_validation_recorded_and_reapplied(tiny_run, case_inputs,
                                                                      tmp_path):
    """The run records its choice per model; raw native rows are kept beside the shown ones;
    predict applies the choice (auto) or not (none)."""
    m = read_metrics(tiny_run).filter(pl.col("split") == "test")
    for phase, arch in m.select("phase", "arch").unique().rows():
        pp = json.loads((tiny_run / "best" / phase / arch / "postprocessing.json").read_text())
        assert pp["cases"] == 1 and set(pp["val_dice"]) >= {"none", "largest"}
        assert pp["chosen"] == "none" or pp["val_dice"][pp["chosen"]] > pp["val_dice"]["none"]
        rows = m.filter((pl.col("phase") == phase) & (pl.col("arch") == arch)
                        & (pl.col("grid") == "native"))
        assert set(rows["postprocessing"]) == {"none", pp["chosen"]}
    out = tmp_path / "raw"
    assert predict([str(tiny_run), "-i", str(case_inputs), "-o", str(out), "--arch", "hybrid",
                    "--phase", "arterial", "--postprocessing", "largest"]) == 0
    info = json.loads((out / "predictions.json").read_text())
    assert info["postprocessing"] == {".": "largest"}
    from scipy import ndimage

    for f in out.glob("*.nii.gz"):  # at most one 26-connected component is left
        n = ndimage.label(_mask(f), structure=np.ones((3, 3, 3)))[1]
        assert n <= 1


def test_liver_study_report_speaks_of_liver_and_has_no_tumor_reference(copy_run, tmp_path):
    from study.report import build_report

    run = copy_run("liver")
    meta = json.loads((run / "study.json").read_text())
    meta.update(label="liver", phases=["T2SPIR"])
    meta["preprocessing"]["label"] = "liver"  # as prepare() records a liver study
    (run / "study.json").write_text(json.dumps(meta))
    html = build_report(run, tmp_path / "r.html").read_text()
    body = html.split("<script")[0] + "".join(p.split("</script>")[-1]
                                             for p in html.split("<script")[1:])
    assert "liver segmentation, MRI" in body and "liver voxels" in body
    why = ("The seed&#x27;s published means are for tumor segmentation; this study segments "
           "liver, so they are not shown.")
    assert why in body  # the only place the word may appear: saying why the seed is absent
    assert "tumor" not in body.replace(why, "").lower()
    assert "Seed rows (italic)" not in body
