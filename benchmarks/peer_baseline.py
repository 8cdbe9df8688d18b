"""Peer baseline: does a study beat a well-set default U-Net at equal wall time, on real MRI?

    .venv/bin/python -m benchmarks.peer_baseline                  # T = 6 and 30 min, 2 rounds
    .venv/bin/python -m benchmarks.peer_baseline --minutes 6 --rounds 2 --space unet2d

Data: the 15 real CHAOS T2-SPIR cases of ``../shared/data`` (``chaos_t2_mini`` +
``chaos_t2_dev``, liver label), linked into one data set with a fixed, seeded test split of
5 cases in ``imagesTs``; train / validation are the study's own split of the other 10
(`study.data.prepare`, split seed 0), and the baseline uses the same two lists.

For each wall time T and round (the order of the two alternates between rounds):

(a) **baseline**: a 2D U-Net written the way a MONAI user writes it from MONAI's documentation
    and tutorials: `monai.networks.nets.UNet` (channels 16..256, strides 2, 2 residual
    units, batch norm), `monai.losses.DiceLoss(sigmoid=True)`, Adam lr 1e-3, slices resized to
    128 x 128 with MONAI transforms (percentile scaling 0.5-99.5 to [0, 1]), batch 16, no
    search; it trains for T (both CPU threads), validating every minute and keeping the best
    validation Dice (the tutorials' "best_metric_model").
(b) **study**: ``python -m study.launch --space SPACE --time T --seed ROUND`` (the space's
    ``cpu`` budget, 2 CPUs), its best trial as the launch tests it (the split stays fixed).

Both are scored per test case on the native grid by the same code (`study.evaluation.metrics`): the
probability map resized back to the case's source grid, threshold 0.5, against the label
file at its voxel spacing. Printed: per-case Precision / Recall / Dice of both, and the ratio
study / baseline of mean test Dice; written to ``benchmarks/results/peer_baseline_<T>min.json``.
Run it alone on the machine (it measures wall-time-limited training).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, banner, environment, fmt, print_table, write_result

SHARED = REPO.parent / "shared" / "data"
SOURCES = ("chaos_t2_mini", "chaos_t2_dev")
TEST_CASES = 5
SIZE = 128


# --------------------------------------------------------------------------- data


def build_dataset(out: Path, seed: int = 0, test_cases: int = TEST_CASES) -> Path:
    """Link the 15 real cases into one nnU-Net data set, ``test_cases`` of them (seeded; 5 =
    the peer benchmark's split, 0 = all in imagesTr for cross-validation) as imagesTs."""
    cases = []
    for src in SOURCES:
        for f in sorted((SHARED / src / "imagesTr").glob("*_0000.nii.gz")):
            cases.append((src, f.name[: -len("_0000.nii.gz")]))
    rng = np.random.default_rng(seed)
    test = {c for _, c in (cases[i] for i in rng.permutation(len(cases))[:test_cases])}
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for src, case in cases:
        tag = "Ts" if case in test else "Tr"
        os.symlink(SHARED / src / "imagesTr" / f"{case}_0000.nii.gz",
                   out / f"images{tag}" / f"{case}_0000.nii.gz")
        os.symlink(SHARED / src / "labelsTr" / f"{case}.nii.gz",
                   out / f"labels{tag}" / f"{case}.nii.gz")
    meta = json.loads((SHARED / SOURCES[1] / "dataset.json").read_text())
    meta["numTraining"] = len(cases) - len(test)
    (out / "dataset.json").write_text(json.dumps(meta, indent=1))
    return out


# --------------------------------------------------------------------------- baseline


def _monai_load(paths: list[Path], label: bool):
    from monai.transforms import (
        Compose,
        LoadImage,
        Resize,
        ScaleIntensityRangePercentiles,
    )

    if label:
        t = Compose([LoadImage(image_only=True, ensure_channel_first=True),
                     Resize((SIZE, SIZE, -1), mode="nearest")])
    else:
        t = Compose([LoadImage(image_only=True, ensure_channel_first=True),
                     ScaleIntensityRangePercentiles(lower=0.5, upper=99.5, b_min=0.0, b_max=1.0,
                                                    clip=True),
                     Resize((SIZE, SIZE, -1), mode="trilinear")])
    return [np.asarray(t(str(p)), dtype=np.float32) for p in paths]


def _slices(ds: Path, cases: list[str], split: str):
    imgs = _monai_load([ds / f"images{split}" / f"{c}_0000.nii.gz" for c in cases], False)
    labs = _monai_load([ds / f"labels{split}" / f"{c}.nii.gz" for c in cases], True)
    x = np.concatenate([i[0].transpose(2, 0, 1) for i in imgs])[:, None]  # (N, 1, 128, 128)
    y = np.concatenate([(lb[0] == 1).transpose(2, 0, 1) for lb in labs])[:, None]
    return x.astype(np.float32), y.astype(np.float32), imgs


def _predict(model, vol: np.ndarray) -> np.ndarray:
    """(1, 128, 128, Z) -> probabilities (128, 128, Z)."""
    import torch

    x = torch.from_numpy(vol[0].transpose(2, 0, 1)[:, None].copy())
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), 16):
            out.append(torch.sigmoid(model(x[s:s + 16]))[:, 0])
    return torch.cat(out).permute(1, 2, 0).numpy()


def _val_dice(model, vols, labels) -> float:
    dices = []
    for v, lab in zip(vols, labels, strict=True):
        p = _predict(model, v) >= 0.5
        t = lab[0] == 1
        den = p.sum() + t.sum()
        dices.append(2 * (p & t).sum() / den if den else 1.0)
    return float(np.mean(dices))


def run_baseline(ds: Path, split: dict, minutes: float, seed: int) -> dict:
    import torch
    from monai.losses import DiceLoss
    from monai.networks.layers import Norm
    from monai.networks.nets import UNet

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    x, y, _ = _slices(ds, split["train"], "Tr")
    vimgs = _monai_load([ds / "imagesTr" / f"{c}_0000.nii.gz" for c in split["val"]], False)
    vlabs = _monai_load([ds / "labelsTr" / f"{c}.nii.gz" for c in split["val"]], True)
    model = UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=(16, 32, 64, 128, 256),
                 strides=(2, 2, 2, 2), num_res_units=2, norm=Norm.BATCH)
    loss_fn = DiceLoss(sigmoid=True)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    rng = np.random.default_rng(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    best, best_state, steps = -1.0, None, 0
    t0 = time.perf_counter()
    next_val = t0 + 60.0
    while True:
        now = time.perf_counter()
        if now >= next_val or now - t0 >= minutes * 60:
            model.eval()
            d = _val_dice(model, vimgs, vlabs)
            model.train()
            if d > best:
                best, best_state = d, {k: v.clone() for k, v in model.state_dict().items()}
            next_val = time.perf_counter() + 60.0
            if now - t0 >= minutes * 60:
                break
        idx = torch.from_numpy(rng.integers(0, len(xt), 16))
        opt.zero_grad()
        loss = loss_fn(model(xt[idx]), yt[idx])
        loss.backward()
        opt.step()
        steps += 1
    train_s = time.perf_counter() - t0
    model.load_state_dict(best_state)
    model.eval()
    return {"cases": _test_baseline(model, ds, split["test"]), "train_s": train_s,
            "steps": steps, "best_val_dice": best}


def _test_baseline(model, ds: Path, cases: list[str]) -> dict:
    from study.data.dataset import read_mask, voxel_spacing
    from study.evaluation.inference import to_native
    from study.evaluation.metrics import case_metrics

    vols = _monai_load([ds / "imagesTs" / f"{c}_0000.nii.gz" for c in cases], False)
    out = {}
    for case, vol in zip(cases, vols, strict=True):
        truth, affine = read_mask(ds / "labelsTs" / f"{case}.nii.gz", 1)
        prob = to_native(_predict(model, vol), truth.shape)  # back to the source grid
        m = case_metrics(prob, truth, voxel_spacing(affine))
        out[case] = {k: m[k] for k in ("precision", "recall", "dice")}
    return out


# --------------------------------------------------------------------------- study


def run_study(ds: Path, minutes: float, space: str, work: Path, name: str, seed: int) -> dict:
    import polars as pl

    from study.results import best_trials, read_metrics, read_trials

    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "study.launch", "--space", space, "--data", str(ds),
           "--time", f"{minutes:g}m", "--name", name, "--out", str(work), "--cpus", "2",
           "--no-report", "--split-seed", "0", "--seed", str(seed)]
    log = work / f"{name}.log"
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO).returncode
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"study failed (exit {rc}); see {log}")
    run = work / name
    best = best_trials(read_trials(run))
    trial = best.sort("final_val_dice", descending=True, nulls_last=True).row(0, named=True)
    test = read_metrics(run).filter((pl.col("split") == "test") & (pl.col("grid") == "native")
                                    & (pl.col("trial") == trial["trial"]))
    cases = {}
    for r in test.iter_rows(named=True):
        if r["metric"] in ("precision", "recall", "dice"):
            cases.setdefault(r["case"], {})[r["metric"]] = r["value"]
    trials = read_trials(run)
    return {"cases": cases, "wall_s": wall, "trial": trial["trial"], "arch": trial["arch"],
            "config": json.loads(trial["config"]), "budget": trial["budget"],
            "trials": trials.height, "val_dice": trial["final_val_dice"]}


# --------------------------------------------------------------------------- main


def _mean(cases: dict, key: str = "dice") -> float:
    return float(np.mean([c[key] for c in cases.values()]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, nargs="+", default=[6, 30])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--first-round", type=int, default=0,
                   help="index of the first round (its seed and order); with --append, "
                        "add rounds to an earlier result file")
    p.add_argument("--append", action="store_true",
                   help="merge these rounds into the existing results/peer_baseline_<T>min.json "
                        "(same split and space) instead of replacing it")
    p.add_argument("--space", default="unet2d")
    p.add_argument("--keep", type=Path, help="keep the work folder here (runs, logs)")
    args = p.parse_args(argv)
    from study.data import prepare

    work = Path(args.keep or tempfile.mkdtemp(prefix="peer-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("STUDY_CACHE", str(work / "cache"))
    ds = build_dataset(work / "chaos15")
    split = prepare(ds, grid=(SIZE, SIZE, 32), seed=0, progress=False).split
    banner(f"peer baseline on {len(split['train'])}/{len(split['val'])}/{len(split['test'])} "
           f"real cases (train/val/test), load average {os.getloadavg()[0]:.1f}")
    results = []
    for minutes in args.minutes:
        for r in range(args.first_round, args.first_round + args.rounds):
            order = ["baseline", "study"] if r % 2 == 0 else ["study", "baseline"]
            got = {"minutes": minutes, "round": r, "order": order,
                   "load_before": os.getloadavg()[0], "environment": environment()}
            for who in order:
                if who == "baseline":
                    got["baseline"] = run_baseline(ds, split, minutes, seed=r)
                else:
                    got["study"] = run_study(ds, minutes, args.space, work, f"s{minutes:g}-{r}",
                                             seed=r)
            got["ratio"] = _mean(got["study"]["cases"]) / _mean(got["baseline"]["cases"])
            got["load_after"] = os.getloadavg()[0]
            results.append(got)
            _print_round(got)
    name = "peer_baseline_" + "_".join(f"{m:g}" for m in args.minutes) + "min"
    if args.append:
        results = _earlier_rounds(name, args.space, split) + results
    _print_summary(results)
    write_result(name, {"space": args.space, "split": split, "rounds": results,
                        "environment_end": environment()})
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _earlier_rounds(name: str, space: str, split: dict) -> list[dict]:
    from benchmarks.common import RESULTS

    path = RESULTS / f"{name}.json"
    if not path.exists():
        return []
    old = json.loads(path.read_text())
    if old.get("space") != space or old.get("split") != split:
        raise SystemExit(f"{path}: another space or split than this run; cannot --append")
    env = old.get("environment", {})
    for r in old["rounds"]:  # each earlier round keeps the environment it was measured in
        r.setdefault("environment", env)
    return old["rounds"]


def _print_round(got: dict) -> None:
    rows = []
    for who in ("baseline", "study"):
        for case, m in sorted(got[who]["cases"].items()):
            rows.append([who, case, fmt(m["precision"]), fmt(m["recall"]), fmt(m["dice"])])
        rows.append([who, "mean", fmt(_mean(got[who]["cases"], "precision")),
                     fmt(_mean(got[who]["cases"], "recall")), fmt(_mean(got[who]["cases"]))])
    s = got["study"]
    print_table(["who", "case", "precision", "recall", "dice"], rows,
                title=f"T = {got['minutes']:g} min, round {got['round']} (order "
                      f"{' then '.join(got['order'])}; load {got['load_before']:.1f} -> "
                      f"{got['load_after']:.1f}): study / baseline mean Dice = "
                      f"{got['ratio']:.3f}; study: {s['trials']} trials, best {s['arch']} at "
                      f"{s['budget']} it; baseline: {got['baseline']['steps']} steps")


def _print_summary(results: list[dict]) -> None:
    rows = []
    for minutes in sorted({r["minutes"] for r in results}):
        rs = [r for r in results if r["minutes"] == minutes]
        rows.append([f"{minutes:g}", len(rs),
                     fmt(float(np.median([_mean(r["baseline"]["cases"]) for r in rs]))),
                     fmt(float(np.median([_mean(r["study"]["cases"]) for r in rs]))),
                     fmt(float(np.median([r["ratio"] for r in rs]))),
                     " ".join(fmt(r["ratio"]) for r in rs)])
    print_table(["T (min)", "rounds", "baseline Dice (median)", "study Dice (median)",
                 "ratio (median)", "ratios"], rows, title="study / baseline, mean native test Dice")


if __name__ == "__main__":
    sys.exit(main())
