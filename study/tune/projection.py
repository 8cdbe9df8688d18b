"""What a study will cost, before it runs (issue 23): a measured warm-up and a simulation.

1. **Warm-up** (`warm_up`): per architecture of the space, a few timed training updates and
   two evaluations on the validation cases of the actual grid, on this machine's device, with
   the torch threads a trial gets (`study.train.cost.time_training`; the fake trainable:
   two evaluation intervals). When ``base_channels`` is searched, its smallest and largest
   value are measured and the others interpolated (cost ~ channels^a); every other parameter
   takes a typical value (a choice's first, a range's middle, ``switch_step`` never).
2. **Schedule simulation** (`simulate_phase`): the study's schedule is replayed as events:
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

import heapq
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np

#: seconds measured on the 2-core CPU machine (ray 2.60; 5-8 s / 3.3-5.4 s for the first
#: two, idle to loaded), see docs/CONTRACTS.md
OVERHEADS = {
    "ray_start": 6.0,  # ray.init of a local instance (0 when Ray is running already)
    "phase": 4.5,  # a Tuner's set-up (Optuna storage, first worker) and tear-down
    "trial": 0.1,  # a trial's start and end on a reused worker (report, checkpoint sync)
    "actor": 0.5,  # the first trial of each further concurrent slot: a new worker
}
#: the test evaluation per (phase, arch): this many validation-evaluations' worth per case
#: (postprocessing candidates on the validation cases, both grids and NIfTI on the test ones)
FINAL_PER_CASE = 3.0
FINAL_FIXED_S = 1.0
RUNS = 200


@dataclass(frozen=True)
class CostPoint:
    """A configuration's measured rates: seconds per update, per evaluation, trial start."""

    arch: str
    base_channels: int | None
    step_s: float
    eval_s: float
    start_s: float = 0.0

    def interval_s(self, eval_every: int) -> float:
        return eval_every * self.step_s + self.eval_s


@dataclass(frozen=True)
class Schedule:
    """One phase's schedule (what `study.tune.tuner.PhasePlan` will run)."""

    iterations: int
    eval_every: int
    trials: int
    max_concurrent: int
    grace_period: int
    reduction_factor: int
    asha: bool = True
    time_budget_s: float | None = None
    capacity: dict = field(default_factory=lambda: {"cpu": 2.0})  # cpu (and gpu) to share
    resources: dict = field(default_factory=dict)  # arch -> {"cpu", "gpu"}


def asha_rungs(grace: int, max_t: int, rf: int) -> list[int]:
    """Ray's ASHA milestones (one bracket), ascending: ``grace * rf**k``."""
    n = int(math.log(max_t / grace) / math.log(rf) + 1)
    return [grace * rf**k for k in range(n)]


class Asha:
    """Ray's ``_Bracket.on_result`` rule (stop_last_trials=True) on recorded rewards."""

    def __init__(self, grace: int, max_t: int, rf: int):
        self.rf = rf
        self.rungs = [(m, {}) for m in reversed(asha_rungs(grace, max_t, rf))]

    def keep(self, trial: int, iteration: int, reward: float) -> bool:
        for milestone, recorded in self.rungs:
            if iteration < milestone or trial in recorded:
                continue
            cut = np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100) \
                if recorded else None
            recorded[trial] = reward
            return cut is None or reward >= cut
        return True


@dataclass
class PhaseSim:
    seconds: float
    started: int
    full: int  # trials that reached the full budget
    iterations: int  # updates trained, all trials together


def _fits(used: dict, need: dict, capacity: dict) -> bool:
    return all(used.get(k, 0.0) + need.get(k, 0.0) <= capacity[k] + 1e-9 for k in capacity)


def _need(s: Schedule, arch: str) -> dict:
    res = s.resources.get(arch, {"cpu": 1.0})
    return {k: float(res.get(k, 0.0)) for k in s.capacity}


def simulate_phase(draw, s: Schedule, rng: np.random.Generator,
                   overheads: dict | None = None) -> PhaseSim:
    """One simulated phase; ``draw(rng) -> CostPoint`` gives each new trial's costs."""
    o = {**OVERHEADS, **(overheads or {})}
    asha = Asha(s.grace_period, s.iterations, s.reduction_factor) if s.asha else None
    end = s.time_budget_s if s.time_budget_s is not None else math.inf
    events: list = []  # (time, trial, iteration)
    trials: list[tuple[CostPoint, float]] = []
    used: dict = {k: 0.0 for k in s.capacity}
    state = {"now": 0.0, "slots_seen": 0, "full": 0, "its": 0, "pending": None}

    def start_more(now: float) -> None:
        while len(trials) < s.trials and len(events) < s.max_concurrent:
            point = state["pending"] or draw(rng)
            if not _fits(used, _need(s, point.arch), s.capacity):
                state["pending"] = point  # waits for resources, in order (Ray's FIFO)
                return
            state["pending"] = None
            for k, v in _need(s, point.arch).items():
                used[k] += v
            first = 0 < state["slots_seen"] < s.max_concurrent  # a further slot's worker
            state["slots_seen"] += 1
            begin = now + o["trial"] + (o["actor"] if first else 0.0) + point.start_s
            trials.append((point, rng.random()))
            heapq.heappush(events, (begin + point.interval_s(s.eval_every), len(trials) - 1,
                                    s.eval_every))

    start_more(0.0)
    last = 0.0
    while events:
        t, i, it = heapq.heappop(events)
        if t > end:  # the time budget stops every running trial
            state["its"] += _partial(events, (t, i, it), trials, s, end)
            return PhaseSim(end, len(trials), state["full"], state["its"])
        last = t
        point, quality = trials[i]
        state["its"] += s.eval_every
        go_on = it < s.iterations and (asha is None or asha.keep(i, it, quality))
        if go_on:
            heapq.heappush(events, (t + point.interval_s(s.eval_every), i, it + s.eval_every))
            continue
        state["full"] += it >= s.iterations
        for k, v in _need(s, point.arch).items():
            used[k] -= v
        if t + o["trial"] < end:
            start_more(t)
    return PhaseSim(last, len(trials), state["full"], state["its"])


def _partial(events: list, head: tuple, trials: list, s: Schedule, end: float) -> int:
    """Updates trained before ``end`` by the trials still running then."""
    total = 0
    for t, i, _ in [head, *events]:
        point = trials[i][0]
        into = point.interval_s(s.eval_every) - (t - end)  # seconds into the interval
        total += int(max(0.0, min(into, s.eval_every * point.step_s)) / point.step_s) \
            if point.step_s > 0 else 0
    return total


# --------------------------------------------------------------------------- the study


def interpolate(lo: CostPoint, hi: CostPoint, width: int | None) -> CostPoint:
    """Costs at ``width`` between two measured widths: log-linear in the width."""
    if width is None or lo.base_channels is None or hi.base_channels in (None,
                                                                         lo.base_channels):
        return lo
    f = math.log(width / lo.base_channels) / math.log(hi.base_channels / lo.base_channels)

    def mix(a: float, b: float) -> float:
        return a if a <= 0 or b <= 0 else math.exp(math.log(a) + f * (math.log(b) - math.log(a)))

    return CostPoint(lo.arch, width, mix(lo.step_s, hi.step_s), mix(lo.eval_s, hi.eval_s),
                     mix(lo.start_s, hi.start_s))


@dataclass
class ArchCost:
    """An architecture's measured points and the widths the space draws from."""

    arch: str
    points: list[CostPoint]  # the smallest (and largest) width measured
    widths: list  # base_channels values the sampler draws (None: the arch's default)

    def at(self, width) -> CostPoint:
        return interpolate(self.points[0], self.points[-1], width)


def make_draw(costs: list[ArchCost]):
    """``draw(rng)``: a uniform architecture, then a uniform width of it."""
    def draw(rng: np.random.Generator) -> CostPoint:
        arch = costs[int(rng.integers(len(costs)))]
        return arch.at(arch.widths[int(rng.integers(len(arch.widths)))])

    return draw


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


# --------------------------------------------------------------------------- warm-up

WARMUP_STEPS = 5


def typical(dist, name: str):
    """A representative value of a parameter for the warm-up (module docstring)."""
    if dist.fixed:
        return dist.value
    if dist.kind == "choice":
        return "never" if name == "switch_step" and "never" in dist.args else dist.args[0]
    lo, hi = dist.args[0], dist.args[1]
    if dist.kind == "loguniform":
        return math.sqrt(lo * hi)
    if dist.kind == "uniform":
        return (lo + hi) / 2
    step = dist.args[2] if len(dist.args) > 2 else 1
    return lo + ((hi - lo) // 2 // step) * step


def widths(dists: dict) -> list:
    """The base_channels values a trial of this architecture draws from."""
    d = dists.get("base_channels")
    if d is None:
        return [None]
    if d.fixed:
        return [d.value]
    if d.kind == "choice":
        return list(d.args)
    step = d.args[2] if len(d.args) > 2 else 1
    return list(range(d.args[0], d.args[1] + 1, step))


def arch_configs(params: dict, per_arch: dict, arch: str) -> tuple[list[dict], list]:
    """The warm-up configurations of ``arch`` (smallest and largest width) and its widths."""
    dists = {**params, **per_arch.get(arch, {})}
    base = {name: typical(d, name) for name, d in dists.items()}
    base["arch"] = arch
    ws = widths(dists)
    numeric = sorted(w for w in ws if w is not None)
    ends = [None] if not numeric else sorted({numeric[0], numeric[-1]})
    return [{**base, "base_channels": w} if w is not None else base for w in ends], ws


def _engine_point(kw: dict, prep, threads: int | None) -> CostPoint:
    """Rates of one configuration; a trial's start also holds its one cost measurement
    (one validation case predicted: `study.train.cost.measure_checkpoint`)."""
    from study.train.config import TrainConfig
    from study.train.cost import time_training

    r = time_training(TrainConfig(**kw), prep, steps=WARMUP_STEPS, threads=threads)
    start = max(0.0, r["first_s"] - WARMUP_STEPS * r["step_s"] - r["eval_s"]) \
        + r["eval_s"] / max(1, len(prep.split["val"]))
    return CostPoint(kw["arch"], kw.get("base_channels"), r["step_s"], r["eval_s"], start)


def _fake_point(kw: dict, options: dict, val: list[str]) -> CostPoint:
    """Two evaluation intervals of the fake trainable, timed."""
    import tempfile
    from pathlib import Path

    from study.tune import fake

    marks: list[float] = []
    kw = {**kw, "iterations": 2 * int(kw["eval_every"])}
    opts = {k: v for k, v in options.items() if k != "log_starts"}
    with tempfile.TemporaryDirectory(prefix="study-warmup-") as work:
        t0 = time.perf_counter()
        fake.train(kw, opts, val, lambda *a: marks.append(time.perf_counter()),
                   resume_from=None, workdir=Path(work))
    interval = marks[1] - marks[0]
    return CostPoint(kw["arch"], kw.get("base_channels"), interval / kw["eval_every"], 0.0,
                     max(0.0, marks[0] - t0 - interval))


def warm_up(params: dict, per_arch: dict, archs: list[str], *, phase: str, prep,
            iterations: int, eval_every: int, trainable: str, fake_options: dict,
            threads: dict, log=print) -> list[ArchCost]:
    """Measure every architecture's rates (module docstring); ``threads``: arch -> CPUs."""
    from study.tune.params import train_config_kwargs

    out = []
    for arch in archs:
        configs, ws = arch_configs(params, per_arch, arch)
        points = []
        for cfg in configs:
            kw = train_config_kwargs(cfg, phase=phase, all_phases=list(prep.phases),
                                     iterations=iterations, eval_every=eval_every, seed=0)
            kw["arch"] = arch
            points.append(_fake_point(kw, fake_options, list(prep.split["val"]))
                          if trainable == "fake" else
                          _engine_point(kw, prep, int(threads.get(arch, 1)) or None))
        out.append(ArchCost(arch, points, ws))
    return out


def final_seconds(costs: list[ArchCost], phases: int, n_val: int, n_test: int,
                  fake: bool) -> float:
    """The test evaluation after the search: per (phase, arch) tested (module constants)."""
    if fake or n_test == 0:
        return FINAL_FIXED_S * phases
    per_arch = [sum(p.eval_s for p in c.points) / len(c.points) / max(1, n_val) for c in costs]
    return sum(phases * (FINAL_FIXED_S + FINAL_PER_CASE * e * (n_val + n_test))
               for e in per_arch)


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
