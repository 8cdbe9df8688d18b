"""Synthetic run directories for the report tests (no training, no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import polars as pl
import pytest

SHAPE = (32, 24, 8)
CASES = ["case_a", "case_b", "case_c"]
PHASES = ["arterial", "portal"]
ARCHS = ["unet2d", "hybrid"]
# Test precision per (phase, arch) and case, hand-chosen: means are easy to compute by hand.
PRECISION = {
    ("arterial", "unet2d"): [0.5, 0.25, 1.0],  # mean 0.58333...
    ("arterial", "hybrid"): [0.75, 0.5, 0.5],  # mean 0.58333...
    ("portal", "unet2d"): [0.2, 0.4, 0.6],  # mean 0.4
    ("portal", "hybrid"): [0.9, 0.3, 0.0],  # mean 0.4
}


def _affine(zooms=(1.5, 1.5, 4.0)) -> np.ndarray:
    return np.diag([*zooms, 1.0])


def make_dataset(root: Path, cases=CASES) -> Path:
    """A tiny 2-phase data set in the nnU-Net layout with one blob tumor per case."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "arterial", "1": "portal"},
        "labels": {"background": 0, "tumor": 1},
        "numTraining": len(cases),
        "file_ending": ".nii.gz",
    }))
    rng = np.random.default_rng(0)
    x, y, z = np.indices(SHAPE)
    for i, case in enumerate(cases):
        r = 3 + i
        tumor = ((x - 14) ** 2 + (y - 12) ** 2 + ((z - 4) * 2.5) ** 2) <= r * r
        for ch in range(2):
            img = rng.normal(100, 10, SHAPE) + 60 * tumor + 20 * ch
            nib.save(nib.Nifti1Image(img.astype(np.int16), _affine()),
                     root / "imagesTr" / f"{case}_{ch:04d}.nii.gz")
        nib.save(nib.Nifti1Image(tumor.astype(np.uint8), _affine()),
                 root / "labelsTr" / f"{case}.nii.gz")
    return root


def _trial_rows(study: str):
    """Two trials per (phase, arch): t0 reaches the full budget, t1 is stopped by ASHA."""
    trials, metrics = [], []
    for phase in PHASES:
        for arch in ARCHS:
            for k, (budget, status, lr) in enumerate([(30, "TERMINATED", 1e-3), (10, "STOPPED", 1e-4)]):
                trial = f"{phase}_{arch}_{k:05d}"
                curve = [0.1 + 0.2 * k + 0.01 * ARCHS.index(arch), 0.3, 0.45 - 0.1 * k]
                iters = [10, 20, 30][: budget // 10]
                for it, v in zip(iters, curve, strict=False):
                    for case, off in (("val1", 0.05), ("val2", -0.05)):
                        metrics.append((study, trial, arch, phase, it, "val", case, "dice", v + off))
                    # the results layer also stores the means the trial reported (case "mean")
                    metrics.append((study, trial, arch, phase, it, "val", "mean", "dice", v))
                    metrics.append((study, trial, arch, phase, it, "train", "mean", "loss", 1 - v))
                best = max(curve[: len(iters)])
                trials.append(dict(
                    study=study, trial=trial, arch=arch, phase=phase,
                    config=json.dumps({"arch": arch, "lr": lr, "loss": ["sqdice", "dice"][k],
                                       "base_channels": 8 * (k + 1)}),
                    budget=budget, max_budget=30, status=status,
                    stop_reason="asha" if status == "STOPPED" else "",
                    best_val_dice=best, wall_s=12.5 * (k + 1), final_val_dice=curve[len(iters) - 1],
                ))
                if k == 0:  # test rows for the best trial only
                    for case, p in zip(CASES, PRECISION[(phase, arch)], strict=True):
                        vals = {"precision": p, "recall": p / 2, "dice": p / 1.5,
                                "hd95": 10 * p + 1, "lesion_recall": 1.0, "lesion_precision": p,
                                "z_continuity": 0.9 if arch == "hybrid" else 0.6}
                        for m, v in vals.items():
                            metrics.append((study, trial, arch, phase, 30, "test", case, m, v))
    return trials, metrics


def write_run(run_dir: Path, *, study="demo", data: Path | None = None, predictions=True,
              cases=CASES, with_tables=True) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {"name": study, "seed": 0, "phases": PHASES, "fingerprint": "abc123",
            "space": {"lr": {"type": "loguniform", "low": 1e-5, "high": 1e-3}},
            "versions": {"torch": "2.13.0"}, "hardware": {"cpus": 2, "gpu": None},
            "started": "2026-11-25T09:00:00Z", "finished": "2026-11-25T09:30:00Z"}
    if data is not None:
        meta["data"] = str(data)
        meta["label"] = "tumor"
    (run_dir / "study.json").write_text(json.dumps(meta))
    if not with_tables:
        return run_dir
    trials, metrics = _trial_rows(study)
    pl.DataFrame(trials).write_parquet(run_dir / "trials.parquet")
    cols = ["study", "trial", "arch", "phase", "iteration", "split", "case", "metric", "value"]
    pl.DataFrame(metrics, schema=cols, orient="row").write_parquet(run_dir / "metrics.parquet")
    if predictions and data is not None:
        for phase in PHASES:
            for arch in ARCHS:
                d = run_dir / "predictions" / phase / arch
                d.mkdir(parents=True)
                for case in cases:
                    truth = np.asarray(nib.load(data / "labelsTr" / f"{case}.nii.gz").dataobj)
                    pred = np.roll(truth, 2 if arch == "unet2d" else 1, axis=0)
                    nib.save(nib.Nifti1Image(pred.astype(np.uint8), _affine()),
                             d / f"{case}.nii.gz")
    return run_dir


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "ds")


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, dataset) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "demo", data=dataset)
