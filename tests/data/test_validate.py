"""Every bad input of issue 3: a DataError naming the file, exit 2 from the CLI, no output."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from study.data import check_dataset, prepare, read_dataset
from study.data.__main__ import main as data_main
from study.data.dataset import DataWarning
from study.errors import DataError, run_cli


def _json(root):
    return json.loads((root / "dataset.json").read_text())


def _set_json(root, meta):
    (root / "dataset.json").write_text(json.dumps(meta))


def no_json(root, w):
    (root / "dataset.json").unlink()
    return "dataset.json"


def missing_key(root, w):
    meta = _json(root)
    del meta["channel_names"]
    _set_json(root, meta)
    return "channel_names"


def bad_json(root, w):
    (root / "dataset.json").write_text("{not json")
    return "dataset.json"


def missing_phase(root, w):
    (root / "imagesTr" / "case_001_0001.nii.gz").unlink()
    return "case_001_0001.nii.gz"


def shape_mismatch_phases(root, w):
    w(root / "imagesTr" / "case_002_0001.nii.gz", np.zeros((16, 12, 7), np.float32))
    return "case_002_0001.nii.gz"


def affine_mismatch_phases(root, w):
    w(root / "imagesTr" / "case_002_0001.nii.gz", np.zeros((16, 12, 8), np.float32),
      np.diag([2.0, 2.0, 5.0, 1.0]))
    return "case_002_0001.nii.gz"


def label_shape_mismatch(root, w):
    w(root / "labelsTr" / "case_000.nii.gz", np.zeros((16, 12, 9), np.uint8))
    return "case_000.nii.gz"


def label_affine_mismatch(root, w):
    aff = np.diag([2.0, 2.0, 4.0, 1.0])
    aff[0, 3] = 10.0
    w(root / "labelsTr" / "case_000.nii.gz", np.zeros((16, 12, 8), np.uint8), aff)
    return "case_000.nii.gz"


def undeclared_label(root, w):
    lab = np.zeros((16, 12, 8), np.uint8)
    lab[1, 1, 1] = 3
    w(root / "labelsTr" / "case_001.nii.gz", lab)
    return "case_001.nii.gz"


def nan_voxels(root, w):
    img = np.ones((16, 12, 8), np.float32)
    img[3, 3, 3] = np.nan
    w(root / "imagesTr" / "case_000_0000.nii.gz", img)
    return "case_000_0000.nii.gz"


def inf_voxels(root, w):
    img = np.ones((16, 12, 8), np.float32)
    img[0, 0, 0] = np.inf
    w(root / "imagesTr" / "case_002_0000.nii.gz", img)
    return "case_002_0000.nii.gz"


def truncated(root, w):
    path = root / "imagesTr" / "case_001_0000.nii.gz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return "case_001_0000.nii.gz"


def garbage(root, w):
    (root / "labelsTr" / "case_002.nii.gz").write_bytes(gzip.compress(b"not a nifti" * 10))
    return "case_002.nii.gz"


def empty_dir(root, w):
    for f in (root / "imagesTr").iterdir():
        f.unlink()
    return "imagesTr"


def non_3d(root, w):
    w(root / "imagesTr" / "case_000_0001.nii.gz", np.zeros((16, 12), np.float32))
    return "case_000_0001.nii.gz"


def four_d(root, w):
    w(root / "imagesTr" / "case_000_0001.nii.gz", np.zeros((16, 12, 8, 2), np.float32))
    return "case_000_0001.nii.gz"


def duplicate_ids(root, w):
    for name in ("case_000_0000.nii.gz", "case_000_0001.nii.gz"):
        (root / "imagesTs").mkdir(exist_ok=True)
        (root / "imagesTs" / name).write_bytes((root / "imagesTr" / name).read_bytes())
    return "case_000"


def missing_label(root, w):
    (root / "labelsTr" / "case_002.nii.gz").unlink()
    return "case_002.nii.gz"


BAD = [no_json, missing_key, bad_json, missing_phase, shape_mismatch_phases,
       affine_mismatch_phases, label_shape_mismatch, label_affine_mismatch, undeclared_label,
       nan_voxels, inf_voxels, truncated, garbage, empty_dir, non_3d, four_d, duplicate_ids,
       missing_label]


def _tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("breaker", BAD, ids=[b.__name__ for b in BAD])
def test_bad_input_names_file_and_leaves_no_output(breaker, tiny_dataset_factory, write_nifti, tmp_path):
    root = tiny_dataset_factory()
    needle = breaker(root, write_nifti)
    before = _tree(root)
    with pytest.raises(DataError) as exc:
        check_dataset(root)
    assert needle in str(exc.value)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as exc2:
        prepare(root, grid=(8, 8, 4), cache_root=cache, progress=False)
    assert needle in str(exc2.value)
    assert _tree(root) == before  # nothing written into the data set
    leftovers = [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] if cache.exists() else []
    assert leftovers == []  # no cache directory, no temp directory


@pytest.mark.parametrize("breaker", [no_json, nan_voxels, truncated, missing_phase],
                         ids=lambda b: b.__name__)
def test_cli_check_exits_2_with_message(breaker, tiny_dataset_factory, write_nifti, capsys):
    root = tiny_dataset_factory()
    needle = breaker(root, write_nifti)
    rc = run_cli(data_main, ["check", str(root)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and needle in err


def test_cli_subprocess_exit_code(tiny_dataset_factory, write_nifti):
    root = tiny_dataset_factory()
    undeclared_label(root, write_nifti)
    proc = subprocess.run([sys.executable, "-m", "study.data", "check", str(root)],
                          capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 2
    assert "case_001.nii.gz" in proc.stderr and "Traceback" not in proc.stderr


def test_check_collects_every_bad_case(tiny_dataset_factory, write_nifti):
    root = tiny_dataset_factory()
    nan_voxels(root, write_nifti)
    truncated(root, write_nifti)
    with pytest.raises(DataError) as exc:
        check_dataset(root)
    msg = str(exc.value)
    assert "2 bad case(s)" in msg and "case_000_0000" in msg and "case_001_0000" in msg


def test_case_without_tumor_is_a_warning(tiny_dataset_factory, capsys):
    root = tiny_dataset_factory(tumor=False)
    with pytest.warns(DataWarning, match="no tumor voxels"):
        summary = check_dataset(root)
    assert len(summary["cases"]) == 3
    assert all(c["label_voxels"] == 0 for c in summary["cases"])
    assert run_cli(data_main, ["check", str(root)]) == 0
    assert "warning:" in capsys.readouterr().out


def test_check_summary_values(tiny_dataset_factory, capsys):
    root = tiny_dataset_factory(cases=3, test_cases=1)
    summary = check_dataset(root)
    assert [c["split"] for c in summary["cases"]] == ["train"] * 3 + ["test"]
    assert summary["cases"][0]["shape"] == (16, 12, 8)
    assert summary["cases"][0]["spacing"] == (2.0, 2.0, 4.0)
    assert summary["cases"][0]["label_voxels"] == 3 * 3 * 2
    assert summary["cases"][0]["label_fraction"] == pytest.approx(18 / (16 * 12 * 8))
    assert run_cli(data_main, ["check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "cases      4 (3 imagesTr, 1 imagesTs)" in out and "phases     pre, arterial" in out


def test_label_choice(tiny_dataset_factory):
    labels = {"background": 0, "liver": 1, "tumor": 2}
    root = tiny_dataset_factory(labels=labels)
    assert read_dataset(root).label_name == "tumor"
    assert read_dataset(root, label="liver").label_value == 1
    with pytest.raises(DataError, match="vessel.*liver.*tumor"):
        read_dataset(root, label="vessel")
    meta = _json(root)
    meta["labels"] = {"background": 0, "liver": 1, "vessel": 2}
    _set_json(root, meta)
    with pytest.raises(DataError, match="--label"):
        read_dataset(root)
    meta["labels"] = {"background": 0, "organ": 1}
    _set_json(root, meta)
    assert read_dataset(root).label_name == "organ"


def test_other_labels_become_background(tiny_dataset_factory, write_nifti):
    from study.data import load_case

    root = tiny_dataset_factory(labels={"background": 0, "liver": 1, "tumor": 2})
    lab = np.zeros((16, 12, 8), np.uint8)
    lab[:4] = 1
    lab[10:12, 5:7, 2:4] = 2
    write_nifti(root / "labelsTr" / "case_000.nii.gz", lab)
    case = load_case(read_dataset(root), "case_000")
    assert case.label.dtype == np.uint8 and int(case.label.sum()) == 8
    liver = load_case(read_dataset(root, label="liver"), "case_000")
    assert int(liver.label.sum()) == 4 * 12 * 8


def test_stray_channel_file_is_an_error(tiny_dataset_factory, write_nifti):
    root = tiny_dataset_factory()
    write_nifti(root / "imagesTr" / "case_000_0002.nii.gz", np.zeros((16, 12, 8), np.float32))
    with pytest.raises(DataError, match="case_000_0002.nii.gz.*channel 0002"):
        read_dataset(root)
