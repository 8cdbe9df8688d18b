"""The HPO replay benchmark (benchmarks/hpo_replay): a recorded table replayed through the
real tuner, on a tiny hand-made table whose answers are known."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from benchmarks.hpo_replay import analysis
from benchmarks.hpo_replay.replay import TPE, Policy, run_policy, table_settings
from study.errors import ConfigError
from study.tune.fake import replay_curve
from tests.tune.conftest import replay_kw as _kw

# A leads early and ends worse; B starts slow and ends best (ASHA's known trap)
CURVES = {1e-2: [0.5, 0.55, 0.58, 0.6], 1e-3: [0.2, 0.4, 0.7, 0.9]}


@pytest.fixture
def table(tmp_path):
    rows = []
    for config, (lr, values) in enumerate(CURVES.items()):
        for k, v in enumerate(values):
            rows.append({"config": config, "lr": lr, "l2": 1e-5, "base_channels": 8,
                         "loss": "dice", "switch_step": "never", "iteration": 10 * (k + 1),
                         "val_dice": v, "seconds": 1.0})
    path = tmp_path / "curves.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def test_replay_curve_finds_the_configuration(table):
    assert replay_curve(table, _kw(1e-3)) == {10: 0.2, 20: 0.4, 30: 0.7, 40: 0.9}
    assert replay_curve(table, _kw(0.01 * (1 + 1e-12)))[40] == 0.6  # float noise tolerated


def test_replay_curve_errors_name_the_fix(table):
    with pytest.raises(ConfigError, match="no configuration of .*curves.parquet"):
        replay_curve(table, _kw(3e-3))
    with pytest.raises(ConfigError, match="recorded to 40 iterations; set the budget"):
        replay_curve(table, _kw(1e-3, iterations=80, switch_step=None))
    with pytest.raises(ConfigError, match="parameter 'loss', which the space does not set"):
        replay_curve(table, {k: v for k, v in _kw(1e-3).items() if k != "loss"})


def _events(*evs):
    out, spent = [], 0
    last = {}
    for trial, config, it, dice in evs:
        spent += it - last.get(trial, 0)
        last[trial] = it
        out.append({"trial": trial, "config": config, "iteration": it, "dice": dice,
                    "compute": spent})
    return out


def test_analysis_by_hand():
    ev = _events(("a", "A", 10, 0.5), ("a", "A", 20, 0.6), ("b", "B", 10, 0.7),
                 ("c", "C", 10, 0.1), ("c", "C", 20, 0.65))
    incs = analysis.incumbents(ev)
    # a@10 -> a@20 -> a@20 (b only reached 10) -> a -> c@20 (same budget, higher Dice)
    assert [i["trial"] for i in incs] == ["a", "a", "a", "a", "c"]
    assert [i["compute"] for i in incs] == [10, 20, 30, 40, 50]
    assert analysis.reach(incs, 0.62) == 50 and analysis.reach(incs, 0.9) is None
    assert analysis.value_at(incs, 45) == 0.6 and math.isnan(analysis.value_at(incs, 5))
    final = {"A": 0.6, "B": 0.95, "C": 0.65}
    assert analysis.picked_true_best(ev, incs, final) is False  # B was started, never chosen
    assert analysis.picked_true_best(ev, incs, final, compute=20) is True  # only A by then
    lo, mid, hi = analysis.ratio_interval([2, 2, 2], [4, 4, 4])
    assert lo == mid == hi == 0.5
    # Wilson: 8 of 10 -> [0.490, 0.943] (z = 1.96)
    assert analysis.share_interval([True] * 8 + [False] * 2) == pytest.approx([0.4902, 0.9433],
                                                                           abs=1e-4)


@pytest.mark.ray
def test_asha_trap_and_full_budget_replayed_through_the_tuner(ray_session, table, tmp_path):
    settings = table_settings(pl.read_parquet(table))
    assert settings["iterations"] == 40 and settings["eval_every"] == 10
    first = ({"lr": 1e-2}, {"lr": 1e-3})  # asked in this order: A, then B
    final = analysis.finals(pl.read_parquet(table), 40)
    asha = Policy("asha", TPE, "asha", grace=0.25, reduction_factor=2, trials=2,
                  start_with=first)
    got = run_policy(table, settings, asha, 0, tmp_path / "w")
    # A runs first and is never stopped; B scores 0.2 < median(0.5, 0.2) at the first rung
    assert [(e["trial"] == got["events"][0]["trial"], e["iteration"], e["compute"])
            for e in got["events"]] == [(True, 10, 10), (True, 20, 20), (True, 30, 30),
                                        (True, 40, 40), (False, 10, 50)]
    row = analysis.per_seed(got, final, 40, at_budgets=8)
    assert got["chosen"]["val_dice"] == 0.6 and row["chosen_matches"]  # budget-aware: A
    assert row["true_best_end"] is False and row["c95_censored"]  # B (0.9) was cut
    assert row["spent"] == 50 / 40
    full = Policy("full", TPE, "none", trials=2, start_with=first)
    got = run_policy(table, settings, full, 0, tmp_path / "w")
    row = analysis.per_seed(got, final, 40, at_budgets=8)
    assert got["events"][-1]["compute"] == 80 and got["chosen"]["val_dice"] == 0.9
    assert row["true_best_end"] is True and row["c95"] == 2.0 and not row["c95_censored"]
    assert json.loads(got["events"][-1]["config"])["lr"] == "0.001"


def test_anytime_data_and_page():
    from benchmarks.hpo_replay import figures

    runs = [{"policy": "p", "events": _events(("a", "A", 40, 0.5))},
            {"policy": "p", "events": _events(("a", "A", 20, 0.3), ("a", "A", 40, 0.7))}]
    d = figures.anytime_data(runs, iterations=40, upto=1.0, step=0.5)["p"]
    assert d["x"] == [0.5, 1.0]
    # at 20 iterations: seed 1 has nothing yet (NaN, left out), seed 2 has 0.3
    assert d["mid"][0] == pytest.approx(0.3) and d["mid"][1] == pytest.approx(0.6)
    summary = [{"policy": "p", "c95_ratio": [0.2, 0.3, 0.4], "c99_ratio": [0.5, 0.6, 0.7],
                "dice_at": [0.5, 0.6, 0.7], "true_best_at": 0.5}]
    html = figures.page([figures.anytime_figure({"p": d}, 0.7), figures.ratio_figure(summary),
                         figures.at_budget_figure(summary, 8)], "<p>intro</p>", "<table></table>")
    assert html.startswith("<!DOCTYPE html>") and html.count('class="fig"') == 3
    assert "50% true best" in html


# --- censoring-aware analysis (issue 29): Kaplan-Meier by hand ---------------------------

def test_km_median_by_hand():
    from benchmarks.hpo_replay.analysis import km_median

    # events at 1, 2, 4; censored at 3 and 5. S(1) = 4/5, S(2) = 4/5 * 3/4 = 0.6,
    # S(4) = 0.6 * 1/2 (2 at risk after the censoring at 3) = 0.3 -> median 4
    k = km_median([1, 2, 3, 4, 5], [False, False, True, False, True])
    assert k["median"] == 4.0 and k["reached"] == 3 and k["share"] == 0.6
    assert k["ci"][0] is not None and k["ci"][0] <= 4.0


def test_a_censored_seed_is_not_counted_at_what_it_spent():
    from benchmarks.hpo_replay.analysis import km_median

    # two seeds stop at compute 1 without reaching the target: counted at 1 the median of
    # (1, 1, 5, 10, 10) would be 5; Kaplan-Meier: S(5) = 2/3, S(10) = 0 -> median 10
    k = km_median([1, 1, 5, 10, 10], [True, True, False, False, False])
    assert k["median"] == 10.0
    # fewer than half reach the target: no median, although the estimate falls to 0
    none = km_median([1, 2, 3], [True, True, False])
    assert none["median"] is None and none["ci"][1] is None and none["share"] == 1 / 3
    # every seed at the same compute: the median and both interval ends are that compute
    same = km_median([2, 2, 2, 2], [False] * 4)
    assert same["median"] == 2.0 and same["ci"] == [2.0, 2.0]


def test_km_ratio_and_survival_table():
    from benchmarks.hpo_replay.analysis import km_ratio, survival

    fast = {"times": [1, 1, 1], "censored": [False] * 3}
    slow = {"times": [2, 2, 2], "censored": [False] * 3}
    never = {"times": [5, 5, 5], "censored": [True] * 3}
    assert km_ratio(fast, slow) == [0.5, 0.5, 0.5]
    assert km_ratio(never, slow) == [None, None, None]  # no median: unbounded, no ratio
    rows = [{"policy": p, "seed": s, "c95": t, "c95_censored": False, "c99": t * 2,
             "c99_censored": p == "asha" and s == 0} for p, t in (("random", 2.0), ("asha", 1.0))
            for s in range(4)]
    surv = {s["policy"]: s for s in survival(rows)}
    assert surv["asha"]["c95"]["median"] == 1.0 and surv["asha"]["c95_ratio"][1] == 0.5
    assert surv["asha"]["c99"]["share"] == 0.75 and surv["random"]["c99"]["median"] == 4.0
