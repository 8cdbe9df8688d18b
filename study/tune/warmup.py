"""The warm-up of the projection (`study.tune.projection`): per architecture of the space,
a few timed training updates and two evaluations on the validation cases of the actual grid, on
this machine's device, with the torch threads a trial gets (`study.train.cost.time_training`;
the fake trainable: two evaluation intervals). When ``base_channels`` is searched, its smallest
and largest value are measured and the others interpolated (cost ~ channels^a); every other
parameter takes a typical value (a choice's first, a range's middle, ``switch_step`` never,
``augment`` default where it is searched: its cost is in the loader, part of each update)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from study.tune.schedule_sim import CostPoint

WARMUP_STEPS = 5  # timed training updates per measured configuration
#: the test evaluation per (phase, arch): this many validation-evaluations' worth per case
#: (postprocessing candidates on the validation cases, both grids and NIfTI on the test ones)
FINAL_PER_CASE = 3.0
FINAL_FIXED_S = 1.0


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


def typical(dist, name: str):
    """A representative value of a parameter for the warm-up (module docstring)."""
    if dist.fixed:
        return dist.value
    if dist.kind == "choice":
        prefer = {"switch_step": "never", "augment": "default"}.get(name)
        return prefer if prefer is not None and prefer in dist.args else dist.args[0]
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
