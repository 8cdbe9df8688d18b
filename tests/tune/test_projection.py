"""The cost projection (`study.tune.projection`): ASHA's rule, the schedule simulation worked
out by hand, the warm-up's configurations, and a fake study of known costs against its
actual wall time."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from study.tune.dists import Dist
from study.tune.projection import project
from study.tune.schedule_sim import Asha, CostPoint, Schedule, asha_rungs, simulate_phase
from study.tune.warmup import ArchCost, arch_configs, interpolate, make_draw, typical

NONE = {"ray_start": 0.0, "phase": 0.0, "trial": 0.0, "actor": 0.0}


class Qualities:
    """An rng whose ``random()`` hands out given trial qualities in order."""

    def __init__(self, values):
        self.values = list(values)

    def random(self):
        return self.values.pop(0)


def _schedule(**kw) -> Schedule:
    base = {"iterations": 40, "eval_every": 10, "trials": 4, "max_concurrent": 1,
            "grace_period": 10, "reduction_factor": 2, "capacity": {"cpu": 2.0},
            "resources": {"hybrid": {"cpu": 1.0}}}
    return Schedule(**{**base, **kw})


ONE_SECOND = CostPoint("hybrid", 8, step_s=0.1, eval_s=0.0)  # 10 updates = 1 s


def test_rungs_are_rays():
    assert asha_rungs(10, 40, 2) == [10, 20, 40]
    assert asha_rungs(100, 400, 2) == [100, 200, 400]
    assert asha_rungs(300, 1500, 3) == [300, 900]
    assert asha_rungs(8000, 40000, 3) == [8000, 24000]


def test_asha_rule_by_hand():
    a = Asha(10, 40, 2)
    assert a.keep(0, 10, 0.5)  # first at the rung: nothing to compare with
    assert a.keep(1, 10, 0.9)  # median of [0.5] = 0.5
    assert not a.keep(2, 10, 0.1)  # median of [0.5, 0.9] = 0.7
    assert a.keep(3, 10, 0.5)  # median of [0.5, 0.9, 0.1] = 0.5: equal passes
    assert a.keep(0, 30, 0.5)  # already recorded at 10 and not at 40 yet: goes on


def test_asha_schedule_by_hand():
    # one slot, 1 s per 10 updates; qualities 0.5, 0.9, 0.1, 0.6:
    # t0 runs 40 (0-4 s); t1 40 (4-8 s); t2 stopped at 10 (median 0.7 of 0.5, 0.9: 8-9 s);
    # t3 passes 10 (median of 0.5, 0.9, 0.1 = 0.5), stopped at 20 (median 0.7): 9-11 s
    sim = simulate_phase(lambda rng: ONE_SECOND, _schedule(), Qualities([0.5, 0.9, 0.1, 0.6]),
                         NONE)
    assert (sim.seconds, sim.started, sim.full, sim.iterations) == (11.0, 4, 2, 110)


def test_concurrency_and_overheads_by_hand():
    # no ASHA, 3 trials, 2 slots, 1.5 s per evaluation interval (1 s of updates + 0.5 s
    # evaluation); each trial start costs 1 s, the second slot's new worker 2 s more:
    # A 1-7 s, B 3-9 s, C starts when A ends: 8-14 s
    point = CostPoint("hybrid", 8, step_s=0.1, eval_s=0.5)
    sim = simulate_phase(lambda rng: point, _schedule(asha=False, trials=3, max_concurrent=2),
                         np.random.default_rng(0), {**NONE, "trial": 1.0, "actor": 2.0})
    assert (sim.seconds, sim.full, sim.iterations) == (14.0, 3, 120)


def test_cpus_limit_the_concurrency():
    # two slots allowed, but each trial takes both CPUs: they run one after the other
    sim = simulate_phase(lambda rng: ONE_SECOND,
                         _schedule(asha=False, trials=2, max_concurrent=2,
                                   resources={"hybrid": {"cpu": 2.0}}),
                         np.random.default_rng(0), NONE)
    assert sim.seconds == 8.0


def test_time_budget_ends_the_phase():
    # 6.5 s: t0 runs its 40 updates (0-4 s), t1 reaches 20 at 6 s and is 0.5 s into its
    # next interval (5 updates) when the time is up
    sim = simulate_phase(lambda rng: ONE_SECOND,
                         _schedule(asha=False, trials=1000, time_budget_s=6.5),
                         np.random.default_rng(0), NONE)
    assert (sim.seconds, sim.started, sim.full, sim.iterations) == (6.5, 2, 1, 65)


def test_projection_adds_the_fixed_costs_and_is_seeded():
    s = _schedule(asha=False, trials=2)
    p = project(lambda rng: ONE_SECOND, {"arterial": s, "portal": s}, before_s=3.0,
                final_s=2.0, overheads={**NONE, "ray_start": 5.0, "phase": 1.0})
    # 3 before + 5 Ray + 2 x (8 s of trials + 1 s phase) + 2 testing
    assert (p.low_s, p.mid_s, p.high_s) == (28.0, 28.0, 28.0)
    assert p.phases["arterial"] == {"seconds": [9.0, 9.0, 9.0], "full": [2, 2, 2],
                                    "started": [2, 2, 2], "iterations": [80, 80, 80]}
    assert p.line() == ("projected about 28 s (2 trials per phase, all to the full budget; "
                        "includes 3 s of preparation and warm-up, 2 s of testing)")
    json.dumps(p.record())  # goes into study.json as is
    costs = [ArchCost("hybrid", [CostPoint("hybrid", 8, 0.1, 0.0),
                                 CostPoint("hybrid", 16, 0.3, 0.0)], [8, 16])]
    s = _schedule()
    a = project(make_draw(costs), {"arterial": s}, before_s=0.0, final_s=0.0, seed=1)
    b = project(make_draw(costs), {"arterial": s}, before_s=0.0, final_s=0.0, seed=1)
    assert a.record() == b.record() and a.low_s < a.high_s


def test_interpolation_between_measured_widths():
    lo, hi = CostPoint("unet2d", 8, 1.0, 2.0), CostPoint("unet2d", 32, 4.0, 8.0)
    mid = interpolate(lo, hi, 16)  # half way in log width: the geometric mean
    assert mid.base_channels == 16
    assert math.isclose(mid.step_s, 2.0) and math.isclose(mid.eval_s, 4.0)
    assert interpolate(lo, hi, 32).step_s == pytest.approx(4.0)
    assert interpolate(lo, lo, 8) is lo


def test_warm_up_configurations():
    assert typical(Dist("loguniform", (1e-4, 1e-2)), "lr") == pytest.approx(1e-3)
    assert typical(Dist("choice", (0.75, "never")), "switch_step") == "never"
    assert typical(Dist("int", (8, 32, 8)), "base_channels") == 16
    params = {"arch": Dist("choice", ("hybrid", "unet2d")), "lr": Dist("fixed", (1e-3,)),
              "batch_size": Dist("fixed", (4,))}
    per_arch = {"hybrid": {"base_channels": Dist("choice", (16, 8, 32))}}
    configs, widths = arch_configs(params, per_arch, "hybrid")
    assert [c["base_channels"] for c in configs] == [8, 32] and widths == [16, 8, 32]
    assert configs[0] == {"arch": "hybrid", "lr": 1e-3, "batch_size": 4, "base_channels": 8}
    configs, widths = arch_configs(params, per_arch, "unet2d")
    assert widths == [None] and configs == [{"arch": "unet2d", "lr": 1e-3, "batch_size": 4}]


@pytest.mark.slow
@pytest.mark.ray
def test_projection_of_a_fake_study_is_within_10_percent(ray_session, small_phantom, tmp_path,
                                                         capsys):
    """A fake trainable of known costs (3 s per 10 updates), 6 trials of 40 updates, 2 at a
    time, no early stopping: 36 s of training plus the fixed costs; the projection printed
    before the first trial is within 10 % of the wall time study.json records."""
    import yaml

    from study.launch import main

    space = tmp_path / "fake.yaml"
    space.write_text(yaml.safe_dump({
        "trainable": "fake", "params": {"arch": "hybrid", "lr": {"loguniform": [1e-4, 1e-2]}},
        "fake": {"sleep": 3.0, "cost": {"hybrid": {"params": 1000,
                                                   "infer_s": {"per_lr": 0.1}}}},
        "budgets": {"smoke": {"iterations": 40, "eval_every": 10, "grid": [32, 32, 8],
                              "trials": 6, "max_concurrent": 2, "grace_period": 10,
                              "early_stopping": "none", "phases": ["arterial"]}}}))
    assert main(["--space", str(space), "--data", str(small_phantom), "--name", "p",
                 "--out", str(tmp_path), "--no-report"]) == 0
    meta = json.loads((tmp_path / "p" / "study.json").read_text())
    p = meta["projection"]
    assert p["warmup"][0]["s_per_update"] == pytest.approx(0.3, rel=0.1)
    assert p["phases"]["arterial"]["full"] == [6, 6, 6]
    assert abs(p["mid_s"] - meta["wall_s"]) <= 0.10 * meta["wall_s"], (p, meta["wall_s"])
    # every trial recorded its known cost: 0.1 s per volume at lr 1e-3, in proportion
    from study.results import read_trials

    for r in read_trials(tmp_path / "p").iter_rows(named=True):
        lr = json.loads(r["config"])["lr"]
        assert r["params"] == 1000 and r["infer_device"] == "fake"
        assert r["infer_s"] == pytest.approx(0.1 * lr / 1e-3, rel=1e-9)
    out = capsys.readouterr().out
    assert out.index("projected ") < out.index("trial 0001 started")
    assert "A new study created" not in out and "View detailed results" not in out
