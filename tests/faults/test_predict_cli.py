"""Bad inputs of study.apply.predict / study.apply.evaluate / study.apply.export: `error:` naming the case or
file, exit 2, nothing half-written, and the good cases still done."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest

from study.apply.evaluate import main as evaluate
from study.apply.export import main as export
from study.apply.predict import main as predict


def _errors(err: str) -> list[str]:
    return [ln for ln in err.replace("\r", "\n").splitlines() if ln.startswith("error: ")]


@pytest.fixture
def inputs(case_inputs, tmp_path):
    """A writable copy of the two good cases (channels 0000..0003)."""
    return shutil.copytree(case_inputs, tmp_path / "in")


def _case_ids(folder) -> list[str]:
    return sorted({p.name[: -len("_0000.nii.gz")] for p in folder.glob("*_0000.nii.gz")})


def _bad_case(folder, kind: str) -> str:
    """Add a third case broken in one way; return its id."""
    good = _case_ids(folder)[0]
    bad = f"bad_{kind}"
    for f in folder.glob(f"{good}_*.nii.gz"):
        shutil.copy(f, folder / f.name.replace(good, bad))
    arterial = folder / f"{bad}_0001.nii.gz"
    if kind == "missing_channel":
        arterial.unlink()
    elif kind == "shape":  # the portal phase on another grid than the arterial one
        img = nib.load(str(folder / f"{bad}_0002.nii.gz"))
        data = np.asarray(img.dataobj)[:-4]
        nib.save(nib.Nifti1Image(data, img.affine), str(folder / f"{bad}_0002.nii.gz"))
    elif kind == "corrupt_gz":
        raw = arterial.read_bytes()
        arterial.write_bytes(raw[: len(raw) // 2])  # truncated download
    elif kind == "not_nifti":
        arterial.unlink()
        (folder / f"{bad}_0001.mha").write_bytes(b"ObjectType = Image\n")
    return bad


@pytest.mark.parametrize("kind, words", [
    ("missing_channel", "missing channel 0001 (arterial)"),
    ("shape", "has shape"),
    ("corrupt_gz", "cannot read NIfTI"),
    ("not_nifti", "not a NIfTI file"),
])
def test_bad_case_fails_alone(tiny_run, inputs, tmp_path, capsys, kind, words):
    bad = _bad_case(inputs, kind)
    out = tmp_path / "out"
    rc = predict([str(tiny_run), "-i", str(inputs), "-o", str(out), "--phase", "arterial",
                  "portal", "--arch", "unet2d", "--ensemble", "phases"])
    assert rc == 2
    errors = _errors(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith(f"error: case {bad}: ") and words in errors[0]
    written = sorted(p.name for p in out.rglob("*.nii.gz"))
    assert written == sorted(f"{c}.nii.gz" for c in _case_ids(inputs) if c != bad)
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temp file left behind


def test_unknown_run_empty_folder_and_bad_archive(tiny_run, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    cases = [
        ([str(tmp_path / "nope"), "-i", str(empty), "-o", str(out)], "no such run directory"),
        ([str(empty), "-i", str(empty), "-o", str(out)], "not a run directory"),
        ([str(tiny_run), "-i", str(empty), "-o", str(out)], "no input images"),
        ([str(tiny_run), "-i", str(empty), "-o", str(out), "--arch", "resnet"], "--arch resnet"),
    ]
    bogus = tmp_path / "model.zip"
    bogus.write_bytes(b"PK not really")
    cases.append(([str(bogus), "-i", str(empty), "-o", str(out)], "not a model archive"))
    for args, words in cases:
        assert predict(args) == 2, args
        err = _errors(capsys.readouterr().err)
        assert err and words in err[-1], (args, err)
        assert not out.exists()  # nothing written for a mistake found before the first case


def test_export_and_evaluate_mistakes(tiny_run, write_nifti, tmp_path, capsys):
    assert export([str(tiny_run), "-o", str(tmp_path / "m.tar")]) == 2
    assert "must end with .zip" in _errors(capsys.readouterr().err)[-1]
    assert export([str(tiny_run), "-o", str(tmp_path / "m.zip"), "--phase", "venous"]) == 2
    assert "--phase venous" in _errors(capsys.readouterr().err)[-1]
    assert not list(tmp_path.glob("*m.zip*"))
    # evaluate: a prediction on another grid than its label fails that case, exit 2
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    write_nifti(labels / "a.nii.gz", np.ones((4, 4, 4), np.uint8))
    write_nifti(preds / "a.nii.gz", np.ones((4, 4, 3), np.uint8))
    write_nifti(labels / "b.nii.gz", np.ones((4, 4, 4), np.uint8))
    write_nifti(preds / "b.nii.gz", np.ones((4, 4, 4), np.uint8))
    assert evaluate([str(labels), str(preds)]) == 2
    err = _errors(capsys.readouterr().err)
    assert len(err) == 1 and "case a" in err[0] and "differs from the label" in err[0]
    # a corrupt prediction file: named, the other case still scored
    (preds / "a.nii.gz").write_bytes(gzip.compress(b"junk"))
    assert evaluate([str(labels), str(preds)]) == 2
    assert "cannot read NIfTI" in _errors(capsys.readouterr().err)[0]
    # no matching names at all
    other = tmp_path / "other"
    write_nifti(other / "z.nii.gz", np.ones((4, 4, 4), np.uint8))
    assert evaluate([str(labels), str(other)]) == 2
    assert "no prediction matches a label" in _errors(capsys.readouterr().err)[-1]
    assert not (other / "summary.json").exists()


def test_predict_exit_code_from_a_subprocess(tiny_run, inputs, tmp_path, run_module):
    bad = _bad_case(inputs, "missing_channel")
    res = run_module("study.apply.predict", tiny_run, "-i", inputs, "-o", tmp_path / "o",
                     "--arch", "hybrid")
    assert res.returncode == 2
    assert f"error: case {bad}: missing channel 0001" in res.stderr
    assert "predicted 2 of 3 case(s)" in res.stdout
