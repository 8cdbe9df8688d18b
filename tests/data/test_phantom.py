"""The phantom: layout, determinism, tumor count/size, phase contrast, CLI, default location."""

import filecmp
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from study.data import check_dataset, read_dataset
from study.data import phantom as ph
from study.data.__main__ import main as data_main
from study.errors import DataError, run_cli


def phantom_main(argv):
    """``python -m study.data phantom ARGS``."""
    return data_main(["phantom", *argv])


def _load(root, case):
    imgs = [np.asarray(nib.load(str(root / "imagesTr" / f"{case}_{k:04d}.nii.gz")).dataobj, float)
            for k in range(4)]
    lab = np.asarray(nib.load(str(root / "labelsTr" / f"{case}.nii.gz")).dataobj)
    return imgs, lab


def test_layout_and_summary(small_phantom):
    spec = read_dataset(small_phantom)
    assert spec.phases == ["pre", "arterial", "portal", "delay"]
    assert spec.label_name == "tumor" and spec.label_value == 2
    assert len(spec.train_ids) == 6 and spec.test_ids == []
    summary = check_dataset(small_phantom)
    assert all(0 < c["label_fraction"] < 0.01 for c in summary["cases"])


def test_tumors_count_and_contrast(small_phantom):
    for case in read_dataset(small_phantom).train_ids:
        imgs, lab = _load(small_phantom, case)
        tumor, liver = lab == 2, lab == 1
        _, n = ndimage.label(tumor, structure=np.ones((3, 3, 3)))
        assert 1 <= n <= 3
        mean = [(im[tumor].mean(), im[liver].mean()) for im in imgs]
        pre, art, por, dly = mean
        assert art[0] > art[1] + 40  # arterial hyper-enhancement
        assert por[0] < por[1] - 40  # portal wash-out
        assert dly[0] < dly[1] - 40  # delayed wash-out
        assert pre[0] < pre[1]
        body = imgs[0] > 150
        assert 0.3 < body.mean() < 0.9  # an abdomen, not an empty or full box


def test_deterministic_by_seed_and_native_geometry_varies(tmp_path):
    a = ph.make_phantom(tmp_path / "a", cases=2, seed=7, shape=(24, 20, 8))
    b = ph.make_phantom(tmp_path / "b", cases=2, seed=7, shape=(24, 20, 8))
    c = ph.make_phantom(tmp_path / "c", cases=2, seed=8, shape=(24, 20, 8))
    names = sorted(p.name for p in (a / "imagesTr").iterdir())
    assert len(names) == 8
    assert all(filecmp.cmp(a / "imagesTr" / n, b / "imagesTr" / n, shallow=False) for n in names)
    assert not filecmp.cmp(a / "imagesTr" / names[0], c / "imagesTr" / names[0], shallow=False)
    shapes, zsp = set(), set()
    for seed in range(3):  # native default geometry: ~160x128x(30..40), 2.5 mm, 5-7 mm slices
        image, label, affine = ph.make_case(np.random.default_rng([seed, 0]))
        assert image.shape[0] == 4 and image.shape[1:] == label.shape
        assert 150 <= label.shape[0] <= 170 and 120 <= label.shape[1] <= 136
        assert 30 <= label.shape[2] <= 40
        assert 2.4 <= affine[0, 0] <= 2.6 and 5.0 <= affine[2, 2] <= 7.0
        assert 0 < (label == 2).mean() < 0.01
        shapes.add(label.shape)
        zsp.add(round(affine[2, 2], 3))
    assert len(shapes) == 3 and len(zsp) == 3


def test_cli_writes_and_refuses_non_empty(tmp_path, capsys):
    out = tmp_path / "ph"
    assert run_cli(phantom_main, [str(out), "--cases", "1", "--seed", "3"]) == 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["numTraining"] == 1 and meta["channel_names"]["1"] == "arterial"
    assert run_cli(phantom_main, [str(out), "--cases", "1"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["ph"]  # no temp dir left


def test_default_phantom_generated_once(tmp_path, monkeypatch):
    p = ph.default_phantom(cache_root=tmp_path, cases=1, seed=1)
    assert p == tmp_path / f"phantom-v{ph.VERSION}-c1-s1" and (p / "dataset.json").is_file()
    monkeypatch.setattr(ph, "make_phantom", lambda *a, **k: pytest.fail("regenerated"))
    assert ph.default_phantom(cache_root=tmp_path, cases=1, seed=1) == p
    monkeypatch.setenv("STUDY_CACHE", str(tmp_path))
    assert ph.default_phantom(cases=1, seed=1) == p


def test_make_phantom_bad_args(tmp_path):
    with pytest.raises(DataError, match="--cases"):
        ph.make_phantom(tmp_path / "x", cases=0)
