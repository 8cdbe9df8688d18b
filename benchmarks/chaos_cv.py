"""Cross-validated paired comparison of training arms on the 15 real CHAOS T2 cases.

``python -m benchmarks.chaos_cv --config A --arms grid spacing [--folds 5] [--workers 2]``

A 30-minute study scores two test cases; two studies differ by their searches as much as by
what is compared. This benchmark holds everything but one factor fixed: one configuration
(`CONFIGS`), one seed, trained by `study.train.engine.train` for `ITERATIONS` with the
validation Dice every `EVAL_EVERY` (best-by-validation weights), once per (arm, fold). The
15 cases of ``../shared/data`` (chaos_t2_mini + chaos_t2_dev, all in imagesTr) are dealt
into seeded folds (`study.data.splits.make_folds`); each fold's cases are the test cases
once, 2 of the others (seeded per fold) validate, the rest train. Every case is therefore
scored once per arm, on its native grid against its label file, without postprocessing:
paired per case.

Arms (`ARMS`): the geometry (the seed's fixed grid 128 x 128 x 32 against the cpu budgets'
``spacing: [2.5, 2.5, auto]``) and the augmentation level. Dice does not depend on the
machine's load (fixed iterations), so this can run beside other work; wall times can not.

Resumable: each finished (arm, fold) is one JSON file in ``results/chaos_cv_parts/``. The
summary (``results/chaos_cv_CONFIG.json``): per arm the mean native test Dice over cases
with a t interval; per pair of arms the paired difference per case, its mean with the
paired t interval (scipy.stats.ttest_rel), a percentile bootstrap interval
(scipy.stats.bootstrap, 10 000 resamples, seeded) and the Wilcoxon signed-rank p
(scipy.stats.wilcoxon), and wins / losses.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, environment

ITERATIONS, EVAL_EVERY, SEED, FOLD_SEED, VAL_CASES = 1500, 150, 0, 0, 2
PARTS = RESULTS / "chaos_cv_parts"

#: fixed configurations (unet2d, batch 4): A and B are the winners of the two 30-minute
#: split-0 studies (fixed grid, target spacing); "start" is the cpu budgets' first
#: `start_with` entry (Adam 1e-3 + Dice), chosen by neither study
CONFIGS = {
    "A": {"lr": 5.370930890929908e-3, "l2": 1.0419056066032274e-6, "base_channels": 16,
          "loss": "sqdice", "switch_step": None, "lr_after_switch": 1.0, "lrdehl": "mae"},
    "B": {"lr": 2.2980507212191385e-3, "l2": 2.546625380476272e-6, "base_channels": 16,
          "loss": "dice", "switch_step": 0.75, "lr_after_switch": 0.011108886720329614,
          "lrdehl": "mse"},
    "start": {"lr": 1.0e-3, "l2": 1.0e-5, "base_channels": 16, "loss": "dice",
              "switch_step": None, "lr_after_switch": 1.0, "lrdehl": "mae"},
}
ARMS = {
    "grid": {"grid": (128, 128, 32), "augment": "none"},
    "spacing": {"spacing": (2.5, 2.5, "auto"), "augment": "none"},
    "spacing_default": {"spacing": (2.5, 2.5, "auto"), "augment": "default"},
    "spacing_heavy": {"spacing": (2.5, 2.5, "auto"), "augment": "heavy"},
}


def folds(case_ids: list[str], k: int) -> list[dict]:
    """k folds of train / val / test: each case is a test case once; ``VAL_CASES`` of the
    others validate (seeded by the fold), the rest train."""
    from study.data.splits import make_folds

    out = []
    for f, fold in enumerate(make_folds(case_ids, k, seed=FOLD_SEED)):
        rest = list(fold["train"])
        pick = np.random.default_rng([FOLD_SEED, f]).permutation(len(rest))[:VAL_CASES]
        val = sorted(rest[i] for i in pick)
        out.append({"train": sorted(set(rest) - set(val)), "val": val,
                    "test": list(fold["val"])})
    return out


def _part(config: str, arm: str, fold: int) -> Path:
    return PARTS / f"{config}_{arm}_f{fold}.json"


def _prepared(work: Path, arm: str):
    from benchmarks.peer_baseline import build_dataset
    from study.data import prepare

    ds = work / "ds"
    if not ds.exists():
        build_dataset(ds, test_cases=0)
    geometry = {k: v for k, v in ARMS[arm].items() if k in ("grid", "spacing")}
    return prepare(ds, cache_root=work / "cache", seed=0, progress=False, **geometry)


def run_one(config: str, arm: str, fold: int, split: dict, work: Path) -> dict:
    """Train one (config, arm, fold); native test Dice per case of the best-by-val model."""
    from study.evaluation.native import evaluate_test
    from study.train.checkpoint import load_model
    from study.train.engine import TrainConfig, train

    prep = _prepared(work, arm).with_split(split)
    point = CONFIGS[config]
    switch = point["switch_step"]
    cfg = TrainConfig(
        arch="unet2d", phases=tuple(prep.phases), base_channels=point["base_channels"],
        lr=point["lr"], l2=point["l2"], loss=point["loss"], lrdehl=point["lrdehl"],
        switch_step=None if switch is None else int(round(switch * ITERATIONS)),
        lr_after_switch=point["lr_after_switch"], iterations=ITERATIONS,
        eval_every=EVAL_EVERY, batch_size=4, seed=SEED, augment=ARMS[arm]["augment"],
        device="cpu")
    curve: list[float] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = train(cfg, prep, lambda it, m, _c: curve.append(float(m["val_dice"])),
                       workdir=tmp)
        model, mcfg = load_model(result["best_dir"] or result["checkpoint_dir"], device="cpu")
        rows = evaluate_test(model, mcfg, prep, split["test"])
    native = {r["case"]: r["value"] for r in rows
              if r.get("grid") == "native" and r["metric"] == "dice"
              and r.get("postprocessing") == "none"}
    return {"config": config, "arm": arm, "fold": fold, "split": split,
            "geometry": {k: list(v) for k, v in ARMS[arm].items() if k != "augment"},
            "augment": ARMS[arm]["augment"], "val_curve": curve,
            "best_val_dice": max(curve) if curve else float("nan"),
            "test_native_dice": native, "seconds": time.perf_counter() - t0}


def _worker(args) -> None:
    jobs, work = args
    import torch

    from study.io import write_text_atomic

    torch.set_num_threads(1)
    for config, arm, fold, split in jobs:
        if _part(config, arm, fold).exists():
            continue
        got = run_one(config, arm, fold, split, Path(work))
        write_text_atomic(_part(config, arm, fold), json.dumps(got, indent=1) + "\n")
        dice = ", ".join(f"{c} {d:.3f}" for c, d in got["test_native_dice"].items())
        print(f"{config} {arm} fold {fold}: val {got['best_val_dice']:.3f}, test {dice} "
              f"({got['seconds']:.0f} s, pid {os.getpid()})", flush=True)


def case_ids(work: Path) -> list[str]:
    from benchmarks.peer_baseline import build_dataset

    ds = work / "ds"
    if not ds.exists():
        build_dataset(ds, test_cases=0)
    return sorted(p.name[: -len("_0000.nii.gz")] for p in (ds / "imagesTr").glob("*_0000.nii.gz"))


def record(config: str, arms: list[str], k: int, workers: int, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    PARTS.mkdir(parents=True, exist_ok=True)
    splits = folds(case_ids(work), k)
    for arm in arms:  # build each cache once, before the workers start
        _prepared(work, arm)
    # fold-major order: a partial run has both arms of its first folds (paired)
    todo = [(config, arm, f, s) for f, s in enumerate(splits) for arm in arms
            if not _part(config, arm, f).exists()]
    print(f"{len(todo)} trainings to run ({config}, arms {arms}, {k} folds, "
          f"{workers} worker(s))", flush=True)
    chunks = [(todo[w::workers], str(work)) for w in range(workers)]
    if workers == 1:
        _worker(chunks[0])
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            pool.map(_worker, chunks)


def paired(a: dict[str, float], b: dict[str, float]) -> dict:
    """Paired difference b - a over the cases both have: mean, t and bootstrap 95 %
    intervals, Wilcoxon p, wins / losses / ties."""
    from scipy import stats

    cases = sorted(set(a) & set(b))
    d = np.array([b[c] - a[c] for c in cases])
    out = {"cases": len(cases), "mean_diff": float(d.mean()) if len(d) else float("nan"),
           "wins": int((d > 0).sum()), "losses": int((d < 0).sum()), "ties": int((d == 0).sum())}
    if len(d) >= 2:
        ci = stats.ttest_rel(np.array([b[c] for c in cases]),
                             np.array([a[c] for c in cases])).confidence_interval(0.95)
        boot = stats.bootstrap((d,), np.mean, n_resamples=10_000, method="percentile",
                               random_state=np.random.default_rng(0)).confidence_interval
        out.update(t_ci=[float(ci.low), float(ci.high)],
                   bootstrap_ci=[float(boot.low), float(boot.high)],
                   wilcoxon_p=float(stats.wilcoxon(d).pvalue) if np.any(d) else 1.0)
    return out


def mean_ci(values: list[float]) -> dict:
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return {"mean": float(v.mean()) if len(v) else float("nan"), "n": int(len(v))}
    ci = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    return {"mean": float(v.mean()), "ci": [float(ci[0]), float(ci[1])], "n": int(len(v))}


def summarise(config: str, arms: list[str]) -> dict:
    parts = {arm: [json.loads(p.read_text()) for p in sorted(PARTS.glob(f"{config}_{arm}_f*.json"))]
             for arm in arms}
    dice = {arm: {c: d for p in ps for c, d in p["test_native_dice"].items()}
            for arm, ps in parts.items()}
    val = {arm: [p["best_val_dice"] for p in ps] for arm, ps in parts.items()}
    out = {"benchmark": "chaos_cv", "config": {"name": config, **CONFIGS[config]},
           "iterations": ITERATIONS, "eval_every": EVAL_EVERY, "seed": SEED,
           "arms": {arm: {"setting": {k: list(v) if isinstance(v, tuple) else v
                                      for k, v in ARMS[arm].items()},
                          "folds": len(parts[arm]), "test_native_dice": dice[arm],
                          "mean": mean_ci(list(dice[arm].values())),
                          "best_val_dice_per_fold": val[arm],
                          "seconds_per_training": float(np.median(
                              [p["seconds"] for p in parts[arm]])) if parts[arm] else None}
                     for arm in arms},
           "paired": {f"{b} - {a}": paired(dice[a], dice[b])
                      for i, a in enumerate(arms) for b in arms[i + 1:]},
           "environment": environment()}
    return out


def _print(summary: dict) -> None:
    arms = list(summary["arms"])
    cases = sorted(set().union(*(summary["arms"][a]["test_native_dice"] for a in arms)))
    print(f"config {summary['config']['name']}: native test Dice per case")
    print("case        " + "  ".join(f"{a:>16}" for a in arms))
    for c in cases:
        print(f"{c:<12}" + "  ".join(
            f"{summary['arms'][a]['test_native_dice'].get(c, float('nan')):>16.3f}" for a in arms))
    for a in arms:
        m = summary["arms"][a]["mean"]
        ci = m.get("ci", [float("nan")] * 2)
        print(f"{a}: mean {m['mean']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] over {m['n']} cases")
    for name, p in summary["paired"].items():
        t = p.get("t_ci", [float("nan")] * 2)
        b = p.get("bootstrap_ci", [float("nan")] * 2)
        print(f"{name}: mean {p['mean_diff']:+.4f}, t [{t[0]:+.4f}, {t[1]:+.4f}], bootstrap "
              f"[{b[0]:+.4f}, {b[1]:+.4f}], Wilcoxon p {p.get('wilcoxon_p', float('nan')):.3f}, "
              f"{p['wins']} wins / {p['losses']} losses over {p['cases']} cases")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=sorted(CONFIGS), default="A")
    ap.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=["grid", "spacing"])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "chaos_cv")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args(argv)
    if not args.summary_only:
        record(args.config, args.arms, args.folds, args.workers, args.work)
    summary = summarise(args.config, args.arms)
    from study.io import write_text_atomic

    name = f"chaos_cv_{args.config}_{'_'.join(args.arms)}.json"
    write_text_atomic(RESULTS / name, json.dumps(summary, indent=1) + "\n")
    _print(summary)
    print(f"wrote {RESULTS / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
