"""Early-stopping efficiency: iterations ASHA + TPE spend to reach 95% of the best validation
Dice ÷ iterations random search at full budget spends to reach it, over several seeds.

Per seed, on the phantom at ``--grid`` (default 64x48x16), the same search space (unet2d,
base 8, batch 4; lr log-uniform in [1e-4, 3e-2], L2 log-uniform in [1e-6, 1e-3]), ``--trials``
trials of ``--iterations`` updates with an evaluation every ``--eval-every``:

* **ASHA + TPE**: the study runner (``python -m study.launch``, in-process, one trial at a
  time, ASHA grace period = one evaluation, reduction factor 2; TPE seeded by the seed);
* **random search**: the same number of configurations drawn uniformly (log-uniform) from
  the same ranges with the seed, each trained to the full budget by `study.train.engine.train`.

With one trial at a time, the iterations spent up to an evaluation are the sum of the
iterations of the trials run before it plus its own iteration count. Target value
T = 0.95 × the best validation Dice either method found for that seed; each method's cost
is the iterations it had spent when one of its evaluations first reached T (if it never
did: everything it spent, marked as censored). Ratio = ASHA+TPE ÷ random, per seed; the
median and spread over seeds are reported. Target ≤ 0.35. The two methods alternate order
from seed to seed (the machine's load drifts; only iteration counts enter the ratio).

    .venv/bin/python -m benchmarks.early_stopping [--seeds 0,1,2] [--trials 6] [--iterations 160]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from benchmarks.common import banner, parse_size, print_table, summary, write_result  # noqa: E402

TARGET = 0.35
FRACTION = 0.95
LR = (1.0e-4, 3.0e-2)
L2 = (1.0e-6, 1.0e-3)
FIXED = {"arch": "unet2d", "base_channels": 8, "batch_size": 4}


def write_space(path: Path, *, seed, trials, iterations, eval_every, grid) -> Path:
    space = {
        "description": "early_stopping benchmark: ASHA + TPE",
        "trainable": "engine",
        "seed": int(seed),
        "params": {**FIXED, "lr": {"loguniform": list(LR)}, "l2": {"loguniform": list(L2)}},
        "resources": {"default": {"cpu": 2, "gpu": 0}},
        "budgets": {"bench": {"iterations": iterations, "eval_every": eval_every,
                              "grid": list(grid), "trials": trials, "max_concurrent": 1,
                              "grace_period": eval_every, "reduction_factor": 2,
                              "phases": ["arterial"]}},
    }
    path.write_text(yaml.safe_dump(space), encoding="utf-8")
    return path


def asha_curves(space: Path, data: Path, out: Path, name: str) -> list[list[tuple[int, float]]]:
    """Per trial in start order: [(iteration, val_dice), ...]."""
    import polars as pl

    from study.launch import main as launch

    rc = launch(["--space", str(space), "--budget", "bench", "--data", str(data), "--name", name,
                 "--out", str(out), "--cpus", "2", "--no-report"])
    if rc != 0:
        raise SystemExit(f"the ASHA study failed (exit {rc})")
    run = out / name
    order = {}
    for d in (run / "ray" / "arterial").glob("trial_*_*"):
        _, counter, tid = d.name.split("_", 2)
        order[tid] = int(counter)
    m = pl.read_parquet(run / "metrics.parquet").filter(
        (pl.col("split") == "val") & (pl.col("case") == "mean") & (pl.col("metric") == "dice"))
    curves = []
    for tid in sorted(order, key=order.get):
        rows = m.filter(pl.col("trial") == tid).sort("iteration")
        curves.append(list(zip(rows["iteration"].to_list(), rows["value"].to_list(), strict=True)))
    return curves


def random_curves(seed, prep, *, trials, iterations, eval_every, work: Path):
    from study.train.engine import TrainConfig, train

    rng = np.random.default_rng([seed, 424242])
    curves = []
    for i in range(trials):
        lr = float(math.exp(rng.uniform(math.log(LR[0]), math.log(LR[1]))))
        l2 = float(math.exp(rng.uniform(math.log(L2[0]), math.log(L2[1]))))
        cfg = TrainConfig(**FIXED, phases=("arterial",), lr=lr, l2=l2, iterations=iterations,
                          eval_every=eval_every, seed=seed * 1000 + i + 1, device="cpu")
        curve = []
        train(cfg, prep, lambda it, m, _d, c=curve: c.append((int(it), float(m["val_dice"]))),
              workdir=work / f"t{i}")
        curves.append(curve)
    return curves


def best(curves) -> float:
    vals = [v for c in curves for _, v in c if v == v]
    return max(vals) if vals else float("nan")


def iterations_to_reach(curves, target: float) -> tuple[int, bool]:
    """(iterations spent when an evaluation first reached target, reached?)."""
    spent = 0
    for curve in curves:
        for it, v in curve:
            if v >= target:
                return spent + it, True
        spent += curve[-1][0] if curve else 0
    return spent, False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--iterations", type=int, default=160)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--grid", type=parse_size, default=(64, 48, 16))
    ap.add_argument("--cases", type=int, default=6, help="phantom cases (default 6)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    banner("early stopping: ASHA + TPE vs random search at full budget")
    import ray

    from benchmarks.common import bench_prepared
    from study.data.phantom import default_phantom

    t_start = time.perf_counter()
    prep = bench_prepared(args.grid, cases=args.cases)
    data = default_phantom(cases=args.cases)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="early-stopping-") as tmp:
        tmp = Path(tmp)
        for k, seed in enumerate(int(s) for s in args.seeds.split(",")):
            space = write_space(tmp / f"es{seed}.yaml", seed=seed, trials=args.trials,
                                iterations=args.iterations, eval_every=args.eval_every,
                                grid=args.grid)
            curves = {}
            for method in (("asha", "random") if k % 2 == 0 else ("random", "asha")):
                t0 = time.perf_counter()
                if method == "asha":
                    curves[method] = asha_curves(space, data, tmp / "runs", f"s{seed}")
                else:
                    curves[method] = random_curves(seed, prep, trials=args.trials,
                                                   iterations=args.iterations,
                                                   eval_every=args.eval_every,
                                                   work=tmp / f"random{seed}")
                print(f"   seed {seed} {method}: {time.perf_counter() - t0:.0f} s", flush=True)
            top = max(best(curves["asha"]), best(curves["random"]))
            target = FRACTION * top
            res = {"seed": seed, "best_val_dice": top, "target": target}
            for method, c in curves.items():
                spent, reached = iterations_to_reach(c, target)
                res[method] = {"iterations_to_target": spent, "reached": reached,
                               "iterations_total": sum(cv[-1][0] for cv in c if cv),
                               "best_val_dice": best(c), "curves": c}
            res["ratio"] = res["asha"]["iterations_to_target"] / res["random"]["iterations_to_target"]
            per_seed.append(res)
    ray.shutdown()
    ratios = summary([r["ratio"] for r in per_seed])
    rows = [[r["seed"], r["best_val_dice"], r["target"],
             f"{r['asha']['iterations_to_target']}{'' if r['asha']['reached'] else ' (never)'}",
             r["asha"]["iterations_total"],
             f"{r['random']['iterations_to_target']}{'' if r['random']['reached'] else ' (never)'}",
             r["random"]["iterations_total"], r["ratio"]] for r in per_seed]
    print_table(["seed", "best val Dice", "T = 95%", "ASHA+TPE it to T", "ASHA it total",
                 "random it to T", "random it total", "ratio"], rows,
                title=f"{args.trials} trials x {args.iterations} iterations, unet2d base 8, grid "
                      f"{tuple(args.grid)}; ratio median {ratios['median']:.3f} "
                      f"(min {ratios['min']:.3f}, max {ratios['max']:.3f}); target ≤ {TARGET:g}")
    write_result("early_stopping", {
        "settings": {"seeds": args.seeds, "trials": args.trials, "iterations": args.iterations,
                     "eval_every": args.eval_every, "grid": list(args.grid), "cases": args.cases,
                     **FIXED, "lr": list(LR), "l2": list(L2), "fraction": FRACTION,
                     "asha": {"grace_period": args.eval_every, "reduction_factor": 2,
                              "max_concurrent": 1}},
        "target": TARGET,
        "ratio": ratios,
        "wall_s": time.perf_counter() - t_start,
        "seeds": per_seed,
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
