"""The cross-validated paired benchmark (benchmarks/chaos_cv.py): folds and statistics."""

from __future__ import annotations

import pytest

from benchmarks.chaos_cv import folds, mean_ci, paired


def test_every_case_is_a_test_case_once_and_splits_are_disjoint():
    ids = [f"c{i:02d}" for i in range(15)]
    got = folds(ids, 5)
    assert len(got) == 5
    assert sorted(c for f in got for c in f["test"]) == ids
    for f in got:
        assert len(f["test"]) == 3 and len(f["val"]) == 2 and len(f["train"]) == 10
        assert not (set(f["train"]) & set(f["val"])) and not (set(f["val"]) & set(f["test"]))
        assert sorted(f["train"] + f["val"] + f["test"]) == ids
    assert folds(ids, 5) == got  # seeded


def test_paired_difference_by_hand():
    a = {"x": 0.5, "y": 0.6, "z": 0.7, "only_a": 0.1}
    b = {"x": 0.6, "y": 0.6, "z": 0.9}
    p = paired(a, b)  # differences 0.1, 0.0, 0.2 over the 3 shared cases
    assert p["cases"] == 3
    assert p["mean_diff"] == pytest.approx(0.1)
    assert (p["wins"], p["losses"], p["ties"]) == (2, 0, 1)
    # t interval: mean 0.1, sd 0.1, n 3 -> 0.1 +- t(0.975, 2) * 0.1 / sqrt(3) = 0.1 +- 0.2484
    assert p["t_ci"] == pytest.approx([0.1 - 0.24841, 0.1 + 0.24841], abs=1e-4)
    lo, hi = p["bootstrap_ci"]
    assert -1e-12 <= lo <= 0.1 <= hi <= 0.2 + 1e-12  # within the range of the differences


def test_mean_interval_by_hand():
    m = mean_ci([0.7, 0.8, 0.9])  # sd 0.1 -> 0.8 +- 4.3027 * 0.1 / sqrt(3)
    assert m["mean"] == pytest.approx(0.8)
    assert m["ci"] == pytest.approx([0.8 - 0.24841, 0.8 + 0.24841], abs=1e-4)
    assert mean_ci([0.5]) == {"mean": 0.5, "n": 1}
