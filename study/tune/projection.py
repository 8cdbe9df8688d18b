"""What a study will cost, before it runs (issue 23): a measured warm-up and a simulation.

1. **Warm-up** (`study.tune.warmup.warm_up`): per architecture of the space, a few timed training updates and
   two evaluations on the validation cases of the actual grid, on this machine's device, with
   the torch threads a trial gets (`study.train.cost.time_training`; the fake trainable:
   two evaluation intervals). When ``base_channels`` is searched, its smallest and largest
   value are measured and the others interpolated (cost ~ channels^a); every other parameter
   takes a typical value (a choice's first, a range's middle, ``switch_step`` never).
2. **Schedule simulation** (`study.tune.schedule_sim.simulate_phase`): the study's schedule is replayed as events:
   trials start while the concurrency limit and the CPUs / GPU fractions allow (each draws
   its architecture and width uniformly, as the sampler's random start does), train
   ``eval_every`` updates per evaluation at the measured rates, and ASHA decides at each
   evaluation exactly as Ray's ``_Bracket`` does (rungs ``grace * rf**k``, cut at the
   ``1 - 1/rf`` percentile of the trials recorded at that rung), with a random, fixed
   quality per trial; ``--time`` ends a phase at its share of the time left.
3. **Projection** (`project`): ``runs`` simulations (seeded) of every phase, plus Ray's start,
   each phase's fixed cost and each trial's start (constants measured on the 2-core CPU
   machine, `OVERHEADS`), plus the test evaluation of the best models and, with
   ``--finalists``, their cross-validation. Low / high = the 10th / 90th percentile.

No Ray here: ``--dry-run`` prints the projection without starting Ray.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

from study.tune.schedule_sim import OVERHEADS, Schedule, simulate_phase
from study.tune.warmup import final_seconds, make_draw, warm_up

RUNS = 200


@dataclass
class Projection:
    low_s: float
    mid_s: float
    high_s: float
    phases: dict  # phase -> {"seconds": [lo, mid, hi], "full": [..], "started": [..], ...}
    before_s: float  # preparation + warm-up, already spent when the projection is printed
    final_s: float  # test evaluation (and finalists) after the search
    trials: int
    asha: bool
    time_s: float | None = None
    warmup: list = field(default_factory=list)  # measured points, as dicts

    def line(self) -> str:
        if _duration(self.low_s) == _duration(self.high_s):
            span = f"about {_duration(self.mid_s)}"
        elif _unit(self.low_s) == _unit(self.high_s):
            span = f"{_duration(self.low_s, unit=False)}-{_duration(self.high_s)}"
        else:
            span = f"{_duration(self.low_s)} to {_duration(self.high_s)}"
        full = [v["full"][1] for v in self.phases.values()]
        started = [v["started"][1] for v in self.phases.values()]
        per = " per phase" if len(self.phases) > 1 else ""
        if self.time_s is not None:
            what = (f"about {min(full)} full-budget trial(s) (of ~{min(started)} started) fit "
                    f"in the time{per}")
        elif self.asha:
            what = f"ASHA keeps about {min(full)} of {self.trials} trials{per} to the full budget"
        else:
            what = f"{self.trials} trials{per}, all to the full budget"
        return (f"projected {span} ({what}; includes {_duration(self.before_s)} of preparation "
                f"and warm-up, {_duration(self.final_s)} of testing)")

    def record(self) -> dict:
        return {"low_s": round(self.low_s, 1), "mid_s": round(self.mid_s, 1),
                "high_s": round(self.high_s, 1), "before_s": round(self.before_s, 1),
                "final_s": round(self.final_s, 1), "phases": self.phases,
                "warmup": self.warmup, "line": self.line()}


def _unit(seconds: float) -> str:
    return "s" if seconds < 120 else ("min" if seconds < 3 * 3600 else "h")


def _duration(seconds: float, unit: bool = True) -> str:
    u = _unit(seconds)
    v = seconds if u == "s" else seconds / 60 if u == "min" else seconds / 3600
    text = f"{v:.0f}" if u != "h" else f"{v:.1f}"
    return f"{text} {u}" if unit else text


def _percentiles(values) -> list:
    lo, mid, hi = np.percentile(np.asarray(values, dtype=float), [10, 50, 90])
    return [float(lo), float(mid), float(hi)]


def project(draw, schedules: dict[str, Schedule], *, before_s: float, final_s: float,
            time_s: float | None = None, finalists: Schedule | None = None,
            runs: int = RUNS, seed: int = 0, overheads: dict | None = None) -> Projection:
    """Simulate the study ``runs`` times (phases in order; ``time_s``: each phase gets the
    time left divided by the phases left, as `study.tune.study` does)."""
    o = {**OVERHEADS, **(overheads or {})}
    rng = np.random.default_rng(seed)
    totals, per = [], {p: {"seconds": [], "full": [], "started": [], "iterations": []}
                       for p in schedules}
    for _ in range(runs):
        clock = before_s
        for i, (phase, s) in enumerate(schedules.items()):
            if time_s is not None:
                s = replace(s, time_budget_s=max(1.0, (time_s - clock) / (len(schedules) - i)))
            clock += o["ray_start"] if i == 0 else 0.0
            sim = simulate_phase(draw, s, rng, o)
            clock += sim.seconds + o["phase"]
            for key, v in (("seconds", sim.seconds + o["phase"]), ("full", sim.full),
                           ("started", sim.started), ("iterations", sim.iterations)):
                per[phase][key].append(v)
        if finalists is not None:
            clock += simulate_phase(draw, finalists, rng, o).seconds + o["phase"]
        totals.append(clock + final_s)
    lo, mid, hi = _percentiles(totals)
    phases = {p: {k: [round(x, 1) if k == "seconds" else int(round(x))
                      for x in _percentiles(v)] for k, v in d.items()}
              for p, d in per.items()}
    s0 = next(iter(schedules.values()))
    return Projection(lo, mid, hi, phases, before_s, final_s, s0.trials, s0.asha, time_s)


def capacity(cpus: int | None, address: str | None, use_gpu: bool) -> dict:
    """What the trials share: this machine's CPUs (``--cpus``) and GPUs; a cluster
    (``--address``) is taken as large enough for the concurrency limit."""
    import os

    if address and address.lower() not in ("none", "local"):
        return {"cpu": math.inf}
    out = {"cpu": float(cpus or os.cpu_count() or 1)}
    if use_gpu:
        import torch

        out["gpu"] = float(max(1, torch.cuda.device_count()))
    return out


def project_study(s, prep, phases: list[str], archs: list[str], space: tuple, *,
                  before_s: float, cap: dict, overheads: dict | None = None,
                  log=print) -> Projection:
    """The projection of study ``s`` (a `study.tune.study.StudySettings`) on ``prep``."""
    params, per_arch = space
    b = s.budget
    resources = {a: s.space.resources_for(a) for a in archs}
    t = time.perf_counter()
    costs = warm_up(params, per_arch, archs, phase=phases[0], prep=prep,
                    iterations=b.iterations, eval_every=b.eval_every,
                    trainable=s.space.trainable, fake_options=dict(s.space.fake or {}),
                    threads={a: r.get("cpu", 1) for a, r in resources.items()}, log=log)
    before_s += time.perf_counter() - t
    one = Schedule(iterations=b.iterations, eval_every=b.eval_every, trials=s.trials,
                   max_concurrent=s.max_concurrent, grace_period=b.grace_period,
                   reduction_factor=b.reduction_factor, asha=b.early_stopping == "asha",
                   capacity=cap, resources=resources)
    finalists = replace(one, trials=s.finalists * s.folds, asha=False) if s.finalists else None
    final = final_seconds(costs, len(phases), len(prep.split["val"]), len(prep.split["test"]),
                          s.space.trainable == "fake")
    p = project(make_draw(costs), {ph: one for ph in phases}, before_s=before_s,
                final_s=final, time_s=s.time_s, finalists=finalists, seed=s.seed,
                overheads=overheads)
    p.warmup = [{"arch": q.arch, "base_channels": q.base_channels,
                 "s_per_update": round(q.step_s, 4), "s_per_evaluation": round(q.eval_s, 3),
                 "start_s": round(q.start_s, 2)} for c in costs for q in c.points]
    return p
