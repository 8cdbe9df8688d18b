"""Uncertainty in the report (issue 13): bootstrap CIs, paired Wilcoxon tests, budget flags.

Expected values are computed by hand (exact Wilcoxon null distribution, bootstrap means whose
extreme values are certain to cover the 2.5% tails)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats

from study.report import tables
from study.report.load import load_runs


def _frames(run_dir):
    runs = load_runs([run_dir])
    return runs[0].metrics, runs[0].trials


def test_bootstrap_ci_by_hand():
    # two values {0, 1}: resampled means are 0, 0.5, 1 with chances 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles are 0 and 1
    assert tables.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    assert tables.bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    assert tables.bootstrap_ci([0.7]) is None and tables.bootstrap_ci([]) is None
    # three values: each extreme mean (all three draws the same value) has chance 1/27 = 3.7%
    # > 2.5%, so the interval runs from the smallest to the largest value
    assert tables.bootstrap_ci([0.5, 0.25, 1.0]) == (0.25, 1.0)
    # seeded: the same as scipy.stats.bootstrap with default_rng(0) and 10,000 resamples
    x = [0.61, 0.72, 0.55, 0.9, 0.31, 0.77, 0.68, 0.49]
    ref = stats.bootstrap((np.array(x),), np.mean, n_resamples=10_000, method="percentile",
                          confidence_level=0.95, rng=np.random.default_rng(0)).confidence_interval
    lo, hi = tables.bootstrap_ci(x)
    assert (lo, hi) == (float(ref.low), float(ref.high))
    assert lo < np.mean(x) < hi and tables.bootstrap_ci(x) == (lo, hi)
    assert tables.BOOTSTRAP_RESAMPLES >= 2000


def test_mean_cis_of_table_1(run_dir):
    metrics, trials = _frames(run_dir)
    cis = tables.mean_cis(tables.test_results(metrics, trials))
    assert cis.height == 2 * 2 * 3
    r = cis.filter((pl.col("phase") == "arterial") & (pl.col("arch") == "unet2d")
                   & (pl.col("metric") == "precision")).to_dicts()[0]
    assert r["n"] == 3 and r["mean"] == pytest.approx(0.5833333333)
    assert (r["ci_low"], r["ci_high"]) == (0.25, 1.0)  # case values 0.5, 0.25, 1.0


def test_wilcoxon_by_hand():
    # 5 positive differences: W- = 0; exact two-sided p = 2 / 2^5 = 0.0625
    t = tables.wilcoxon_pair([0.1, 0.2, 0.3, 0.4, 0.5], [0.0] * 5)
    assert t == {"n": 5, "n_effective": 5, "min_p": 0.0625, "median_diff": pytest.approx(0.3),
                 "statistic": 0.0, "p_value": pytest.approx(0.0625)}
    assert tables.verdict(t["p_value"], t["median_diff"], "a", "b") == "not distinguishable at 5%"
    assert tables.verdict(t["p_value"], t["median_diff"], "a", "b", n_effective=5) == (
        "cannot reach p < 0.05 with n = 5 (non-zero differences); not distinguishable at 5%")
    # 6: p = 2 / 2^6 = 0.03125, b is higher
    t = tables.wilcoxon_pair([0.0] * 6, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert t["p_value"] == pytest.approx(0.03125) and t["median_diff"] == pytest.approx(-0.35)
    assert tables.verdict(t["p_value"], t["median_diff"], "a", "b") == \
        "distinguishable at 5%: b higher"
    # ranks 1, 2, 3 with signs +, -, +: W- = 2, exact p = 2 * P(W <= 2) = 2 * 3/8 = 0.75
    t = tables.wilcoxon_pair([0.2, 0.3, 0.9], [0.1, 0.5, 0.6])
    assert t["statistic"] == 2.0 and t["p_value"] == pytest.approx(0.75)
    assert tables.wilcoxon_pair([0.4, 0.4], [0.4, 0.4])["p_value"] == 1.0  # identical


def test_wilcoxon_effective_n_drops_zero_differences():
    # 7 pairs, 3 of them tied: scipy's default drops the zeros, so 4 count and even four
    # agreeing signs give p = 2 / 2^4 = 0.125 (what scipy says): p < 0.05 is out of reach
    a = [0.5, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9]
    b = [0.4, 0.5, 0.6, 0.7, 0.9, 0.9, 0.9]
    t = tables.wilcoxon_pair(a, b)
    assert (t["n"], t["n_effective"]) == (7, 4)
    assert t["min_p"] == 0.125 and t["p_value"] == pytest.approx(0.125)
    assert tables.verdict(t["p_value"], t["median_diff"], "a", "b",
                          n_effective=t["n_effective"]).startswith(
        "cannot reach p < 0.05 with n = 4")
    assert [tables.min_p_value(n) for n in (0, 1, 5, 6)] == [1.0, 1.0, 0.0625, 0.03125]


def test_paired_tests_pair_by_case():
    rows = []
    for phase, arch, vals in (("arterial", "unet2d", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
                              ("arterial", "hybrid", [0.2, 0.4, 0.6, 0.8, 1.0, 1.2]),
                              ("portal", "hybrid", [0.2, 0.4, 0.6, 0.8, 1.0, 1.2])):
        for i, v in enumerate(vals):
            rows.append({"run": "r", "phase": phase, "arch": arch, "trial": arch,
                         "case": f"c{i}", "metric": "dice", "value": v})
    # a case portal/hybrid lacks: not paired
    rows.append({"run": "r", "phase": "arterial", "arch": "hybrid", "trial": "hybrid",
                 "case": "c9", "metric": "dice", "value": 0.0})
    res = tables.paired_tests(pl.DataFrame(rows))
    got = {(r["compare"], r["within"], r["a"], r["b"]): r for r in res.to_dicts()}
    assert set(got) == {("architectures", "arterial", "unet2d", "hybrid"),
                        ("phases", "hybrid", "arterial", "portal")}
    arch = got[("architectures", "arterial", "unet2d", "hybrid")]
    # unet2d - hybrid = -0.1 .. -0.6 on c0..c5 (c9 has no unet2d value): all negative
    assert arch["n"] == 6 and arch["p_value"] == pytest.approx(0.03125)
    assert arch["median_diff"] == pytest.approx(-0.35)
    assert arch["verdict"] == "distinguishable at 5%: hybrid higher"
    ph = got[("phases", "hybrid", "arterial", "portal")]
    assert ph["n"] == 6 and ph["p_value"] == 1.0 and ph["median_diff"] == 0.0
    assert ph["n_effective"] == 0
    assert ph["verdict"] == "identical on every paired case: not distinguishable at 5%"


def test_budget_flags():
    results = pl.DataFrame({"run": ["r", "r"], "phase": ["arterial"] * 2,
                            "arch": ["unet2d", "hybrid"], "trial": ["t1", "t2"]})
    trials = pl.DataFrame({"run": ["r", "r", "r"], "trial": ["t1", "t2", "t3"],
                           "budget": [40, 20, 40], "max_budget": [40, 40, 40]})
    flags = tables.budget_flags(results, trials)
    assert flags.select("arch", "budget", "full").to_dicts() == [
        {"arch": "hybrid", "budget": 20, "full": False},
        {"arch": "unet2d", "budget": 40, "full": True}]


def test_results_section_shows_cis_paired_tests_and_flags(run_dir):
    from study.report.section_results import results_section

    runs = load_runs([run_dir])
    metrics, trials = runs[0].metrics, runs[0].trials
    html = results_section(runs, metrics, trials)
    # arterial / unet2d precision: mean 0.5833 over 0.5, 0.25, 1.0 -> CI [0.25, 1.0]
    assert '0.5833<br><small class="ci">[0.2500, 1.0000]</small>' in html
    assert "95% bootstrap confidence interval" in html
    assert "Paired comparisons: Wilcoxon signed-rank on per-case Dice" in html
    # 3 cases: the smallest two-sided p is 0.25, so nothing is distinguishable
    assert html.count("not distinguishable at 5%</td>") == 2 + 2  # 2 phases + 2 archs
    assert "†" not in html  # every tested trial reached the full budget (30 of 30)
    short = trials.with_columns(
        pl.when((pl.col("phase") == "portal") & (pl.col("arch") == "hybrid")
                & (pl.col("status") == "TERMINATED")).then(20).otherwise(pl.col("budget"))
        .alias("budget"))
    html = results_section(runs, metrics, short)
    assert html.count('<small class="flag">† 20 of 30 iterations</small>') == 2  # both tables
    assert "stopped before the full budget" in html
