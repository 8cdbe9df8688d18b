"""Schedule simulation for the projection (`study.tune.projection`): a phase replayed as
events. Trials start while the concurrency limit and the CPUs / GPU fractions allow (each draws
its architecture and width uniformly, as the sampler's random start does), train ``eval_every``
updates per evaluation at the measured rates, and ASHA decides at each evaluation exactly as
Ray's ``_Bracket`` does (rungs ``grace * rf**k``, cut at the ``1 - 1/rf`` percentile of the
trials recorded at that rung), with a random, fixed quality per trial; ``--time`` ends a phase
at its share of the time left. No Ray here."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np

#: seconds measured on the 2-core CPU machine (ray 2.60; 5-8 s / 3.3-5.4 s for the first
#: two, idle to loaded), see docs/CONTRACTS.md
OVERHEADS = {
    "ray_start": 6.0,  # ray.init of a local instance (0 when Ray is running already)
    "phase": 4.5,  # a Tuner's set-up (Optuna storage, first worker) and tear-down
    "trial": 0.1,  # a trial's start and end on a reused worker (report, checkpoint sync)
    "actor": 0.5,  # the first trial of each further concurrent slot: a new worker
}


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
