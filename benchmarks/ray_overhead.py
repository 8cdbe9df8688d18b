"""Ray overhead: K trials through the study runner (Ray Tune + Optuna + ASHA, one at a time)
÷ the same K configurations trained by `study.train.engine.train` in a plain loop.

A generated search space (hybrid, base 8, batch 2, ``--iterations`` updates with 4
evaluations (default: calibrated on this machine now so a plain trial takes
``--trial-seconds``, 20 s), grid ``--grid``; ASHA's grace period = the budget, so nothing is stopped early)
runs through ``python -m study.launch`` in-process with ``--max-concurrent 1`` and 2 CPUs
per trial. Its Tune time is ``study.json``'s ``tune_s`` (the phase's ``Tuner.fit`` with
trial start-up, reporting, checkpoints, the results recorder); ``ray.init`` is timed
apart. The plain loop trains the very same configurations (each trial's ``config.json``)
with the same evaluations and checkpoints, in a fresh process per round (as Ray's trial
worker is fresh; imports excluded, first-call warm-up included). Rounds alternate (Ray, plain, plain, Ray, ...);
ratio = Tune time ÷ plain time per round. Target ≤ 1.10 for trials of ≥ 20 s.

Ray starts trial workers at nice 15 (``RAY_worker_niceness``): on a machine shared with
other work they get the CPU last, while the plain loop runs at nice 0. ``--niceness 0``
measures Ray's own overhead without that effect (results in ``ray_overhead_nice0.json``).
Also reported, within each Ray round: Tune time ÷ the trials' own time inside Ray
(``trials.parquet`` ``wall_s``), a figure the machine's load drift cannot skew.

    .venv/bin/python -m benchmarks.ray_overhead [--trials 3] [--trial-seconds 20] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402

from benchmarks.common import (  # noqa: E402
    banner,
    paired_ratios,
    parse_size,
    print_table,
    summary,
    write_result,
)

TARGET = 1.10


def write_space(path: Path, *, trials: int, iterations: int, grid) -> Path:
    space = {
        "description": "ray_overhead benchmark: fixed-budget engine trials, one at a time",
        "trainable": "engine",
        "seed": 0,
        "params": {"arch": "hybrid", "lr": {"loguniform": [1.0e-4, 1.0e-2]},
                   "base_channels": 8, "batch_size": 2},
        "resources": {"default": {"cpu": 2, "gpu": 0}},
        "budgets": {"bench": {"iterations": iterations, "eval_every": max(1, iterations // 4),
                              "grid": list(grid), "trials": trials, "max_concurrent": 1,
                              "grace_period": iterations, "reduction_factor": 2,
                              "phases": ["arterial"]}},
    }
    path.write_text(yaml.safe_dump(space), encoding="utf-8")
    return path


def ray_round(space: Path, data: Path, out: Path, name: str) -> dict:
    from study.launch import main as launch

    t0 = time.perf_counter()
    rc = launch(["--space", str(space), "--budget", "bench", "--data", str(data),
                 "--name", name, "--out", str(out), "--cpus", "2", "--no-report"])
    wall = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"the study failed (exit {rc})")
    import polars as pl

    meta = json.loads((out / name / "study.json").read_text())
    inside = float(pl.read_parquet(out / name / "trials.parquet")["wall_s"].sum())
    return {"tune_s": float(meta["tune_s"]["arterial"]), "launch_s": wall, "inside_s": inside}


def trial_configs(run: Path) -> list:
    """The TrainConfig of every trial of a finished run, from its checkpoint."""
    import polars as pl

    from study.train.engine import TrainConfig

    trials = pl.read_parquet(run / "trials.parquet").sort("trial")
    out = []
    for ckpt in trials["checkpoint"]:
        cfg = json.loads((Path(ckpt) / "config.json").read_text())
        out.append(TrainConfig.from_dict(cfg))
    return out


def plain_round(configs, grid, cases: int, work: Path) -> float:
    """Seconds the plain loop takes in a fresh process (as a Ray trial's worker is fresh):
    imports and data opening excluded, first-call warm-up included."""
    spec = work / "plain.json"
    work.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"configs": [c.to_dict() for c in configs], "grid": list(grid),
                                "cases": cases, "work": str(work)}))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.ray_overhead", "--plain", str(spec)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"plain loop failed:\n{proc.stderr[-3000:]}")
    return float(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])


def _plain_child(spec_path: str) -> int:
    from benchmarks.common import bench_prepared
    from study.train.engine import TrainConfig, train

    spec = json.loads(Path(spec_path).read_text())
    prep = bench_prepared(tuple(spec["grid"]), cases=spec["cases"])
    configs = [TrainConfig.from_dict(c) for c in spec["configs"]]
    t0 = time.perf_counter()
    for i, cfg in enumerate(configs):
        train(cfg, prep, lambda *a: None, workdir=Path(spec["work"]) / f"t{i}")
    print(json.dumps({"seconds": time.perf_counter() - t0}))
    return 0


def calibrate(prep, seconds: float) -> int:
    """Iterations for a plain trial of about ``seconds`` (measured on 40 updates + 1 eval)."""
    from study.train.engine import TrainConfig, train

    cfg = TrainConfig(arch="hybrid", base_channels=8, batch_size=2, iterations=40,
                      eval_every=40, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, prep, None, workdir=tmp)  # warm-up
        t0 = time.perf_counter()
        train(cfg, prep, None, workdir=tmp)
        per_it = (time.perf_counter() - t0) / 40
    return max(40, int(round(seconds / per_it / 4)) * 4)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=3, help="K trials per round (default 3)")
    ap.add_argument("--iterations", type=int, default=None,
                    help="updates per trial (default: calibrated so a plain trial takes "
                         "--trial-seconds)")
    ap.add_argument("--trial-seconds", type=float, default=20.0)
    ap.add_argument("--grid", type=parse_size, default=(64, 48, 16))
    ap.add_argument("--cases", type=int, default=4, help="phantom cases (default 4)")
    ap.add_argument("--reps", type=int, default=2, help="rounds of each side (default 2)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    ap.add_argument("--niceness", type=int, default=None,
                    help="RAY_worker_niceness for the trial workers (Ray's default is 15: "
                         "trials yield the CPU to every other process on the machine)")
    ap.add_argument("--plain", help=argparse.SUPPRESS)  # internal: run one plain round
    args = ap.parse_args(argv)
    if args.plain:
        return _plain_child(args.plain)
    banner("Ray overhead: study runner vs plain engine loop")
    import ray

    from benchmarks.common import bench_prepared
    from study.data.phantom import default_phantom

    prep = bench_prepared(args.grid, cases=args.cases)  # build the cache before timing
    if args.iterations is None:
        args.iterations = calibrate(prep, args.trial_seconds)
        print(f"   calibrated: {args.iterations} iterations per trial for ~{args.trial_seconds:g} s",
              flush=True)
    data = default_phantom(cases=args.cases)
    if args.niceness is not None:
        import os

        os.environ["RAY_worker_niceness"] = str(args.niceness)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_init_s = time.perf_counter() - t0
    rounds_ray, rounds_plain, launch_s, inside_s = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp:
        tmp = Path(tmp)
        space = write_space(tmp / "overhead.yaml", trials=args.trials,
                            iterations=args.iterations, grid=args.grid)
        configs = None
        for r in range(args.reps):
            order = ("ray", "plain") if r % 2 == 0 else ("plain", "ray")
            if configs is None:
                order = ("ray", "plain")
            for side in order:
                if side == "ray":
                    res = ray_round(space, data, tmp / "runs", f"r{r}")
                    rounds_ray.append(res["tune_s"])
                    launch_s.append(res["launch_s"])
                    inside_s.append(res["inside_s"])
                    if configs is None:
                        configs = trial_configs(tmp / "runs" / f"r{r}")
                else:
                    rounds_plain.append(plain_round(configs, args.grid, args.cases, tmp / f"plain{r}"))
                print(f"   round {r} {side}: {(rounds_ray if side == 'ray' else rounds_plain)[-1]:.1f} s",
                      flush=True)
    ray.shutdown()
    per_trial = summary([p / args.trials for p in rounds_plain])
    ratio = summary(paired_ratios(rounds_ray, rounds_plain))
    in_run = summary(paired_ratios(rounds_ray, inside_s))
    with_init = summary(paired_ratios([x + ray_init_s for x in rounds_ray], rounds_plain))
    print_table(
        ["K", "s/trial (plain)", "Tune s", "plain s", "Tune ÷ plain", "spread",
         "(+ ray.init) ÷ plain", "ray.init s", "Tune ÷ inside trials"],
        [[args.trials, per_trial["median"], summary(rounds_ray)["median"],
          summary(rounds_plain)["median"], ratio["median"], ratio["spread"],
          with_init["median"], ray_init_s, in_run["median"]]],
        title=f"hybrid base 8, batch 2, {args.iterations} iterations, grid {tuple(args.grid)}, "
              f"1 trial at a time, 2 CPUs (target ≤ {TARGET:g} for trials ≥ 20 s)")
    name = "ray_overhead" if args.niceness is None else f"ray_overhead_nice{args.niceness}"
    write_result(name, {
        "settings": {"trials": args.trials, "iterations": args.iterations,
                     "grid": list(args.grid), "reps": args.reps, "arch": "hybrid",
                     "base_channels": 8, "batch_size": 2, "max_concurrent": 1,
                     "cpus_per_trial": 2, "cases": args.cases,
                     "ray_worker_niceness": "ray default (15)" if args.niceness is None
                     else args.niceness},
        "target": TARGET,
        "seconds_per_trial_plain": per_trial,
        "tune_s": summary(rounds_ray),
        "plain_s": summary(rounds_plain),
        "launch_s": summary(launch_s),
        "ray_init_s": ray_init_s,
        "ratio": ratio,
        "ratio_with_ray_init": with_init,
        "inside_trials_s": summary(inside_s),
        "ratio_tune_vs_inside_trials": in_run,
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
