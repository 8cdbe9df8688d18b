"""The fake trainable's curves, and ASHA rungs refilled from the parquet after a restart."""

from __future__ import annotations

import json

import pytest

from study.results import ResultsStore
from study.tune import fake
from study.tune.scheduler import ResumableASHA


def test_misleading_curve_reverses_the_ranking():
    lrs = [1e-5, 1e-4, 1e-3, 1e-2]
    early = [fake.curve(lr, 0.25, True) for lr in lrs]
    final = [fake.curve(lr, 1.0, True) for lr in lrs]
    assert early == sorted(early) and final == sorted(final, reverse=True)
    # hand-computed: x = 1 (lr 1e-2) at f = 1: 0.8 (1 - e^-20) - 0.6; x = 0: 0.7
    assert final[3] == pytest.approx(0.2, abs=1e-6) and final[0] == pytest.approx(0.7)
    plain = [fake.curve(lr, 1.0, False) for lr in (1e-5, 10 ** -3.2, 1e-2)]
    assert max(plain) == plain[1]  # plain curve peaks at x = 0.6 (lr 10^-3.2)


def test_fake_train_reports_resumes_and_fails(tmp_path):
    seen = []
    kw = {"lr": 1e-3, "iterations": 30, "eval_every": 10}
    fake.train(kw, {}, ["a", "b"], lambda it, m, d: seen.append((it, m, d)),
               resume_from=None, workdir=tmp_path / "w")
    assert [s[0] for s in seen] == [10, 20, 30]
    it, m, d = seen[-1]
    assert m["val_dice"] == pytest.approx(fake.curve(1e-3, 1.0, False))
    assert len(m["per_case"]) == 6 and json.loads((d / "state.json").read_text())["iteration"] == 30
    again = []
    fake.train(kw, {}, ["a"], lambda it, m, d: again.append(it), resume_from=seen[0][2],
               workdir=tmp_path / "w2")
    assert again == [20, 30]
    with pytest.raises(FloatingPointError, match="NaN loss"):
        fake.train(kw, {"nan_lr_below": 1e-2}, ["a"], lambda *a: None, resume_from=None,
                   workdir=tmp_path / "w3")


def test_resumable_asha_refills_rungs_from_metrics(tmp_path):
    store = ResultsStore(tmp_path)
    rows = []
    for trial, vals in {"t1": [0.1, 0.2, 0.3, 0.4], "t2": [0.5, 0.6]}.items():
        for k, v in enumerate(vals):
            rows.append({"study": "s", "trial": trial, "arch": "hybrid", "phase": "arterial",
                         "iteration": 10 * (k + 1), "split": "val", "case": "mean",
                         "metric": "dice", "value": v})
    rows.append({**rows[0], "phase": "portal", "trial": "other"})  # another phase: ignored
    store.add_metrics(rows)
    store.flush()
    asha = ResumableASHA(time_attr="iteration", metric="val_dice", mode="max", max_t=40,
                         grace_period=10, reduction_factor=2, run_dir=tmp_path, study="s",
                         phase="arterial")
    asha._seed()
    rungs = {milestone: dict(rec) for milestone, rec in asha._brackets[0]._rungs}
    assert rungs == {40: {"t1": 0.4}, 20: {"t1": 0.2, "t2": 0.6}, 10: {"t1": 0.1, "t2": 0.5}}
