"""Ray overhead of a finished run: its tuning wall time vs the same trials in a plain loop.

    python -m study.tune.overhead runs/demo [--phase arterial]

Replays every non-failed trial of the run with ``study.train.engine.train`` in one process, one
after the other, each up to the budget it reached (ASHA-stopped trials stop there, with
the learning-rate schedule of the full budget, as in the study), and prints
``tuning wall / plain loop`` per phase (``tune_s`` in study.json is the tuning wall time).
No Ray here; it costs as long as the trials did.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from study.errors import DataError, run_cli
from study.results import read_trials
from study.tune.params import train_config_kwargs, trial_index, trial_seed


def replay(run_dir: Path, phase: str, log=print) -> float:
    """Seconds to train the phase's trials sequentially with the engine."""
    from study.data import prepare
    from study.train.engine import StopTraining, TrainConfig, train

    meta = json.loads((run_dir / "study.json").read_text(encoding="utf-8"))
    b = meta["budget"]
    from study.data.spacing import geometry

    prep = prepare(meta["data"], label=meta.get("label"),
                   **geometry(b.get("grid"), b.get("spacing")),
                   seed=int(meta.get("split_seed", meta["seed"])), progress=False)
    trials = read_trials(run_dir).filter((pl.col("phase") == phase)
                                         & (pl.col("status") != "ERROR"))
    total = 0.0
    for r in trials.iter_rows(named=True):
        # the trial's own seed: from its folder counter (checkpoint .../trial_0003_id/ckpt)
        index = trial_index(Path(r["checkpoint"]).parent) if r["checkpoint"] else 0
        kw = train_config_kwargs(json.loads(r["config"]), phase=phase,
                                 all_phases=list(prep.phases), iterations=b["iterations"],
                                 eval_every=b["eval_every"],
                                 seed=trial_seed(meta["seed"], index))
        budget = int(r["budget"])

        def stop_at_budget(it, metrics, ckpt, budget=budget):
            if it >= budget:
                raise StopTraining

        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="study-replay-") as work:
            train(TrainConfig(**kw), prep, stop_at_budget, workdir=work)
        dt = time.perf_counter() - t
        total += dt
        log(f"  {phase} trial {r['trial']}: {budget} iterations in {dt:.1f} s")
    return total


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.tune.overhead", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--phase", nargs="+")
    args = p.parse_args(argv)
    run_dir = Path(args.run_dir)
    meta_path = run_dir / "study.json"
    if not meta_path.is_file():
        raise DataError(f"{run_dir}: no study.json; give a run directory of study.launch")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    tune_s = meta.get("tune_s") or {}
    for phase in args.phase or list(tune_s):
        if not tune_s.get(phase):
            raise DataError(f"{meta_path}: no tuning time for phase {phase!r} (has: "
                            f"{', '.join(tune_s) or 'none: the run did not finish'})")
        plain = replay(run_dir, phase)
        print(f"phase {phase}: tuning wall {tune_s[phase]:.1f} s, plain loop {plain:.1f} s, "
              f"ratio {tune_s[phase] / plain:.2f}")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
