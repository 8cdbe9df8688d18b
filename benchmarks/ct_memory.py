"""Peak memory of a CT-sized case (512 x 512 x 130, int16 HU) through the pipeline on CPU:
preprocess into the cache (``python -m study.data prepare``), train a 2D model
(``python -m study.train``, a few iterations: memory, not accuracy) and predict the case
(the apply path of ``study.apply.predict``: read, reorient, preprocess, infer, resample
back to the source grid, write), each in its own process; the peak
resident set size of each process (``ru_maxrss`` of the child) is what is reported, against
the issue's budget of 4 GB.

    .venv/bin/python -m benchmarks.ct_memory [--grid 320 256 72 | --spacing auto] [--cases 3]

``--spacing auto`` is what the ``full`` budgets do: each case on its own grid at the data
set's target spacing, here the scans' own 0.75 x 0.75 x 2.5 mm, i.e. 512 x 512 x 130.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, write_result

SHAPE = (512, 512, 130)
SPACING = (0.75, 0.75, 2.5)
BUDGET_GB = 4.0


def make_ct(root: Path, cases: int) -> Path:
    """A synthetic CT data set: air outside a body ellipse, soft tissue, a liver, a tumor."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    x, y = np.mgrid[:SHAPE[0], :SHAPE[1]]
    body = ((x - 256) / 220.0) ** 2 + ((y - 256) / 170.0) ** 2 < 1
    liver = ((x - 200) / 90.0) ** 2 + ((y - 230) / 70.0) ** 2 < 1
    tumor = ((x - 210) / 15.0) ** 2 + ((y - 225) / 15.0) ** 2 < 1
    affine = np.diag([*SPACING, 1.0])
    for i in range(cases):
        img = np.full(SHAPE, -1000, dtype=np.int16)
        lab = np.zeros(SHAPE, dtype=np.uint8)
        for z in range(SHAPE[2]):
            img[..., z][body] = 40
            if 30 <= z < 100:
                img[..., z][liver] = 110
                lab[..., z][liver] = 1
                if 50 <= z < 70:
                    img[..., z][tumor] = 60
                    lab[..., z][tumor] = 2
        img += rng.integers(-15, 16, size=SHAPE, dtype=np.int16)
        (root / "imagesTr").mkdir(parents=True, exist_ok=True)
        (root / "labelsTr").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(img, affine), str(root / "imagesTr" / f"ct_{i:03d}_0000.nii.gz"))
        nib.save(nib.Nifti1Image(lab, affine), str(root / "labelsTr" / f"ct_{i:03d}.nii.gz"))
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
        "numTraining": cases, "file_ending": ".nii.gz"}))
    return root


WRAP = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(r.returncode)")


def peak(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in GiB, seconds) of one step, measured in a fresh wrapper process (the
    children's ``ru_maxrss`` is a maximum over every child a process waited for, so each
    step gets its own parent); a failure stops the benchmark."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, *cmd], cwd=REPO, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    kib = int(proc.stderr.strip().splitlines()[-1])
    return kib / 2**20, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grid", type=int, nargs=3, default=None)
    ap.add_argument("--spacing", nargs="+", default=None, help="auto or X Y Z mm")
    ap.add_argument("--cases", type=int, default=3)
    args = ap.parse_args(argv)
    py = sys.executable
    from study.data.spacing import case_grid, geometry_args

    geo = geometry_args(args.grid or (None if args.spacing else (320, 256, 72)), args.spacing)
    if "spacing" in geo:
        flags = ["--spacing", *[str(v) for v in args.spacing]]
        target = [SPACING[i] if v == "auto" else float(v)
                  for i, v in enumerate(("auto",) * 3 if geo["spacing"] == "auto"
                                        else geo["spacing"])]
        grid = [str(g) for g in case_grid(SPACING, SHAPE, target)]  # every case's grid
    else:
        grid = [str(g) for g in geo["grid"]]
        flags = ["--grid", *grid]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="ct-memory-") as tmp:
        tmp = Path(tmp)
        data = make_ct(tmp / "ct", args.cases)
        cache = str(tmp / "cache")
        steps = {
            "prepare": [py, "-m", "study.data", "prepare", str(data), "--label", "tumor",
                        *(["--grid", "x".join(grid)] if flags[0] == "--grid" else flags),
                        "--cache", cache],
            "train 2D": [py, "-m", "study.train", "--data", str(data), "--label", "tumor",
                         "--arch", "unet2d", "--phase", "CT", "--iterations", "4",
                         "--eval-every", "4", *flags, "--cache", cache,
                         "--base-channels", "8", "--out", str(tmp / "one")],
        }
        for name, cmd in steps.items():
            rows[name] = peak(cmd)
        rows["predict"] = _predict(py, tmp, data, cache, json.dumps(geo))
        for how in ("map_coordinates", "torch"):  # the resampling back alone, before / now
            rows[f"back: {how}"] = peak([py, "-c", BACK, how, *grid])
    print(f"{'step':<10} {'peak RSS (GB)':>14} {'seconds':>8}   budget {BUDGET_GB} GB")
    for name, (gb, s) in rows.items():
        print(f"{name:<10} {gb:>14.2f} {s:>8.1f}   {'ok' if gb <= BUDGET_GB else 'OVER'}")
    write_result("ct_memory" + ("_spacing" if "spacing" in geo else ""),
                 {"shape": SHAPE, "spacing": SPACING, "geometry": geo, "case_grid": grid,
                               "cases": args.cases, "budget_gb": BUDGET_GB,
                               "steps": {k: {"peak_rss_gb": v[0], "seconds": v[1]}
                                         for k, v in rows.items()}})
    return 0


BACK = """
import sys, numpy as np
how, grid = sys.argv[1], tuple(int(g) for g in sys.argv[2:])
prob = np.random.default_rng(0).random(grid, dtype=np.float32)
shape = (512, 512, 130)
if how == "torch":  # study.evaluation.inference.resample_to_shape now
    from study.evaluation.inference import resample_to_shape
    out = resample_to_shape(prob, shape, order=1)
else:  # what it did before: a dense float64 coordinate grid for scipy's map_coordinates
    from scipy.ndimage import map_coordinates
    coords = [(np.arange(o) + 0.5) * (i / o) - 0.5 for i, o in zip(grid, shape)]
    out = map_coordinates(prob, np.meshgrid(*coords, indexing="ij"), order=1, mode="nearest")
assert out.shape == shape
"""


PREDICT = """
import sys, numpy as np
from pathlib import Path
from study.apply.bundle import Bundle
from study.apply.inputs import grid_inputs
from study.data import prepare
from study.data.dataset import read_volume
from study.evaluation.inference import predict_volume, save_nifti
from study.evaluation.inference import to_native
from study.train import load_model
import json
data, cache, one, out, geo = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
prep = prepare(data, label="tumor", cache_root=cache, progress=False, **json.loads(geo))
bundle = Bundle(Path(one), "one", {"channel_names": {"0": "CT"}}, "tumor", 2,
                tuple(prep.grid) if prep.fixed_grid else None, [],
                preprocessing=prep.settings)
model, cfg = load_model(Path(one) / "model")
vol, affine = read_volume(Path(data) / "imagesTr" / "ct_000_0000.nii.gz")
images, work = grid_inputs({"CT": vol}, affine, bundle)
prob = predict_volume(model, "2d", np.stack([images["CT"]]))
mask = to_native(prob, vol.shape, affine) >= 0.5
save_nifti(mask.astype(np.uint8), affine, Path(out))
"""


def _predict(py: str, tmp: Path, data: Path, cache: str, geo: str) -> tuple[float, float]:
    """The apply path of study.apply.predict (read, reorient, preprocess, infer, back to the
    512 x 512 x 130 source grid, write) for the trained model, in its own process."""
    return peak([py, "-c", PREDICT, str(data), cache, str(tmp / "one"),
                 str(tmp / "mask.nii.gz"), geo])


if __name__ == "__main__":
    sys.exit(main())
