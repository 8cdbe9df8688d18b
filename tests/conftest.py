"""Shared fixtures (owned by the data layer).

* ``study_cache`` (session, autouse): points ``$STUDY_CACHE`` at a session temp dir, so no
  test writes into ``~/.cache/study``.
* ``write_nifti(path, array, affine=None)``: write one NIfTI file.
* ``tiny_dataset_factory(...)``: write a tiny nnU-Net-layout data set, return its root.
* ``small_phantom`` (session): 6-case phantom at native 80x64x16 (path).
* ``prepared`` (session): ``small_phantom`` prepared at grid (64, 48, 16), cache in a temp
  dir; split train 4 / val 1 / test 1. Read-only: do not modify its files.
* ``tiny_run`` (session): a finished run without Ray, for study.apply.predict / evaluate / export:
  five tiny engine-trained models on ``prepared`` (arterial/unet2d x2 = ranks 1 and 2,
  arterial/hybrid, portal/unet2d, arterial/unet3d), laid out as ``study.launch`` leaves a run
  (study.json, dataset.json, trials.parquet) and evaluated by the real final evaluation
  (`study.tune.final.evaluate_best`: native test rows on the test + val case, predictions/,
  best/). Read-only: ``copy_run()`` gives a writable copy. ``case_inputs`` (session): those
  two cases' raw image files, as a user hands them in.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

SMALL_GRID = (64, 48, 16)


def _write_nifti(path, array, affine=None) -> Path:
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([2.0, 2.0, 4.0, 1.0]) if affine is None else np.asarray(affine, dtype=float)
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def study_cache(tmp_path_factory):
    old = os.environ.get("STUDY_CACHE")
    path = tmp_path_factory.mktemp("study_cache")
    os.environ["STUDY_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("STUDY_CACHE", None)
    else:
        os.environ["STUDY_CACHE"] = old


@pytest.fixture
def write_nifti():
    return _write_nifti


def make_tiny_dataset(root, *, cases=3, phases=("pre", "arterial"), shape=(16, 12, 8),
                      spacing=(2.0, 2.0, 4.0), labels=None, test_cases=0, tumor=True,
                      seed=0, file_ending=".nii.gz") -> Path:
    """A tiny data set: a bright box 'tumor' (label 1) per case on a noisy background;
    images float32, labels uint8. ``labels`` defaults to {"background": 0, "tumor": 1}."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    labels = labels or {"background": 0, "tumor": 1}
    tumor_value = labels.get("tumor", max(labels.values()))
    affine = np.diag([*spacing, 1.0])
    for split, n, offset in (("Tr", cases, 0), ("Ts", test_cases, cases)):
        for i in range(n):
            case = f"case_{offset + i:03d}"
            lab = np.zeros(shape, dtype=np.uint8)
            if tumor:
                c = [int(rng.integers(2, s - 3)) for s in shape]
                lab[c[0]:c[0] + 3, c[1]:c[1] + 3, c[2]:c[2] + 2] = tumor_value
            for k, _ in enumerate(phases):
                img = rng.normal(100.0, 10.0, size=shape).astype(np.float32)
                img[lab > 0] += 50.0 * (k + 1)
                _write_nifti(root / f"images{split}" / f"{case}_{k:04d}{file_ending}", img, affine)
            _write_nifti(root / f"labels{split}" / f"{case}{file_ending}", lab, affine)
    meta = {"channel_names": {str(k): p for k, p in enumerate(phases)}, "labels": labels,
            "numTraining": cases, "file_ending": file_ending}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root


@pytest.fixture
def tiny_dataset_factory(tmp_path):
    """``make(name="ds", **kwargs) -> Path``; kwargs as `make_tiny_dataset`."""
    def make(name: str = "ds", **kwargs) -> Path:
        return make_tiny_dataset(tmp_path / name, **kwargs)

    return make


@pytest.fixture(scope="session")
def small_phantom(tmp_path_factory) -> Path:
    from study.data.phantom import make_phantom

    return make_phantom(tmp_path_factory.mktemp("phantom") / "phantom", cases=6, seed=0,
                        shape=(80, 64, 16))


@pytest.fixture(scope="session")
def prepared(small_phantom, tmp_path_factory):
    from study.data import prepare

    return prepare(small_phantom, grid=SMALL_GRID, cache_root=tmp_path_factory.mktemp("prep_cache"),
                   progress=False)


NAME = "tiny"
MODELS = [  # trial, phase, arch, base, lr, final val dice (ranks within a group follow it)
    ("a1", "arterial", "unet2d", 4, 3e-3, 0.6),
    ("a2", "arterial", "unet2d", 4, 1e-3, 0.5),
    ("h1", "arterial", "hybrid", 4, 3e-3, 0.4),
    ("p1", "portal", "unet2d", 4, 3e-3, 0.3),
    ("u1", "arterial", "unet3d", 2, 3e-3, 0.2),
]


def _train(prep, work: Path, trial, phase, arch, base, lr) -> Path:
    from study.train.engine import TrainConfig, train

    cfg = TrainConfig(arch=arch, phases=(phase,), base_channels=base, lr=lr, iterations=3,
                      eval_every=3, batch_size=2, patch=(16, 16, 16), seed=len(trial) + ord(trial[0]))
    return Path(train(cfg, prep, workdir=work / trial)["checkpoint_dir"])


@pytest.fixture(scope="session")
def tiny_run(prepared, small_phantom, tmp_path_factory) -> Path:
    from study.results import ResultsStore
    from study.tune.final import evaluate_best

    base = tmp_path_factory.mktemp("tiny_run")
    run = base / NAME
    run.mkdir()
    store = ResultsStore(run)
    for trial, phase, arch, width, lr, score in MODELS:
        ckpt = _train(prepared, base / "work", trial, phase, arch, width, lr)
        store.add_trial({"study": NAME, "trial": trial, "arch": arch, "phase": phase,
                         "config": json.dumps({"arch": arch, "lr": lr}), "budget": 3,
                         "max_budget": 3, "status": "TERMINATED", "stop_reason": None,
                         "best_val_dice": score, "wall_s": 1.0, "final_val_dice": score,
                         "checkpoint": str(ckpt), "node": "test"})
    store.flush()
    meta = {"name": NAME, "data": str(small_phantom), "label": "tumor",
            "phases": ["arterial", "portal"], "archs": ["unet2d", "hybrid", "unet3d"],
            "budget": {"grid": list(prepared.grid)}, "preprocessing": prepared.settings,
            "split": prepared.split}
    (run / "study.json").write_text(json.dumps(meta, indent=1))
    shutil.copy(small_phantom / "dataset.json", run / "dataset.json")
    cases = list(prepared.split["test"]) + list(prepared.split["val"])  # two cases to score
    evaluate_best(run, NAME, prepared, cases, trainable="engine",
                  log=lambda *_: None)
    return run


@pytest.fixture
def copy_run(tiny_run, tmp_path):
    def copy(name: str = NAME) -> Path:
        return Path(shutil.copytree(tiny_run, tmp_path / name, symlinks=True))

    return copy


@pytest.fixture(scope="session")
def case_inputs(small_phantom, prepared, tmp_path_factory) -> Path:
    """The test cases' raw image files (all channels), as a user would hand them in."""
    folder = tmp_path_factory.mktemp("inputs")
    for case in prepared.split["test"] + prepared.split["val"]:
        for f in sorted((small_phantom / "imagesTr").glob(f"{case}_*.nii.gz")):
            shutil.copy(f, folder / f.name)
    return folder


LITS_SLABS = 4  # the 128^3 sample cut into 4 slabs of 32 slices: 4 cases for a split


@pytest.fixture(scope="session")
def lits_ct(tmp_path_factory) -> Path:
    """Real CT: LiTS case 117 as shipped in the PyPI wheel liver-ct-segmentation-package
    (installed with --no-deps by the Makefile: its data only, none of its code runs), read
    with mrcfile and converted to the nnU-Net raw layout: channel "CT", labels liver 1 /
    tumor 2, 4 cases = 4 slabs of 32 axial slices. The MRC header records no voxel size
    (cell 0): written as 1 mm isotropic, the sample's own grid."""
    import importlib.util

    spec = importlib.util.find_spec("liver_ct_segmentation_package")
    mrcfile = pytest.importorskip("mrcfile")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("liver-ct-segmentation-package is not installed (make install adds it)")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    with mrcfile.open(data / "img_117.mrc", permissive=True) as f:
        image = np.asarray(f.data, dtype=np.float32).transpose(2, 1, 0)  # (z, y, x) -> (x, y, z)
    with mrcfile.open(data / "lab_117.mrc", permissive=True) as f:
        label = np.asarray(f.data).astype(np.uint8).transpose(2, 1, 0)
    root = tmp_path_factory.mktemp("lits") / "lits_ct"
    step = image.shape[2] // LITS_SLABS
    for i in range(LITS_SLABS):
        z = slice(i * step, (i + 1) * step)
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
        affine[2, 3] = float(i * step)  # each slab where it lies in the volume
        _write_nifti(root / "imagesTr" / f"lits117_{i}_0000.nii.gz", image[:, :, z], affine)
        _write_nifti(root / "labelsTr" / f"lits117_{i}.nii.gz", label[:, :, z], affine)
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "numTraining": LITS_SLABS, "file_ending": ".nii.gz",
        "reference": "LiTS case 117 via the liver-ct-segmentation-package wheel"}, indent=1))
    return root
