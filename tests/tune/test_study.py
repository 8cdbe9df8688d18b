"""Whole studies through ``study.launch.main`` in-process, on the session's Ray instance."""

from __future__ import annotations

import json

import optuna
import polars as pl
import pytest

from study.launch import main
from study.results import METRIC_KEY, best_trials, read_metrics, read_trials

pytestmark = pytest.mark.ray
State = optuna.trial.TrialState


def _launch(space, data, out, name, *extra):
    return main(["--space", str(space), "--data", str(data), "--name", name,
                 "--out", str(out), "--no-report", *extra])


def test_fake_study_asha_prunes_and_best_is_budget_aware(ray_session, fake_space,
                                                        small_phantom, tmp_path, capsys):
    space = fake_space(fake={"misleading": True}, trials=8)
    assert _launch(space, small_phantom, tmp_path, "f") == 0
    run = tmp_path / "f"
    trials = read_trials(run)
    assert trials.height == 8 and trials["trial"].n_unique() == 8
    assert set(trials["phase"]) == {"arterial"} and set(trials["arch"]) == {"hybrid"}
    full = trials.filter(pl.col("status") == "TERMINATED")
    stopped = trials.filter(pl.col("status") == "STOPPED")
    assert full.height >= 1 and stopped.height >= 1  # ASHA stopped some (counts vary)
    assert set(full["budget"]) == {40} and stopped["budget"].max() < 40
    assert set(stopped["budget"]) <= {10, 20}
    assert all(r.startswith("stopped by ASHA at iteration") for r in stopped["stop_reason"])
    # Optuna: ASHA-stopped trials are PRUNED, full-budget ones COMPLETE; steps = iterations
    study = optuna.load_study(study_name="f-arterial", storage=f"sqlite:///{run}/optuna.db")
    states = [t.state for t in study.trials]
    assert len(states) == 8
    assert states.count(State.PRUNED) == stopped.height
    assert states.count(State.COMPLETE) == full.height
    # exactly the evaluations each trial reached, at their iterations, with the recorded
    # values (Optuna trials matched to rows by their sampled lr)
    m = read_metrics(run)
    by_lr = {json.loads(r["config"])["lr"]: r for r in trials.iter_rows(named=True)}
    assert len(by_lr) == 8
    for t in study.trials:
        r = by_lr[t.params["lr"]]
        steps = list(range(10, r["budget"] + 1, 10))
        assert sorted(t.intermediate_values) == steps, (r["trial"], r["status"])
        dice = m.filter((pl.col("trial") == r["trial"]) & (pl.col("split") == "val")
                        & (pl.col("case") == "mean") & (pl.col("metric") == "dice"))
        recorded = dict(zip(dice["iteration"], dice["value"], strict=True))
        assert t.intermediate_values == pytest.approx(recorded)
        assert t.state == (State.COMPLETE if r["status"] == "TERMINATED" else State.PRUNED)
        if t.state == State.COMPLETE:
            assert t.value == pytest.approx(r["final_val_dice"])
    # the best trial is one with the full budget although a stopped trial scored higher at
    # the budget it reached: the misleading curve must have misled, or this proves nothing
    best = best_trials(trials)
    assert best.height == 1 and best["budget"].item() == 40
    assert best["final_val_dice"].item() == full["final_val_dice"].max()
    assert stopped["final_val_dice"].max() > best["final_val_dice"].item(), \
        trials.select("trial", "status", "budget", "final_val_dice").rows()
    # validation rows: every evaluation of every trial, per case, once
    assert m.select(METRIC_KEY).is_duplicated().sum() == 0
    val_cases = json.loads((run / "study.json").read_text())["split"]["val"]
    for r in trials.iter_rows(named=True):
        per_case = m.filter((pl.col("trial") == r["trial"]) & (pl.col("split") == "val")
                            & (pl.col("case") != "mean"))
        assert per_case.height == (r["budget"] // 10) * len(val_cases) * 3
    # test rows for the chosen trial only, one per test case and metric
    test = m.filter(pl.col("split") == "test")
    assert set(test["trial"]) == {best["trial"].item()}
    assert test.height == 3 * len(json.loads((run / "study.json").read_text())["split"]["test"])
    out = capsys.readouterr().out
    assert "phase arterial: 8 trial(s)" in out and "highest rung reached" in out
    assert "phase     arch    metric" in out


def test_failed_trials_are_recorded_and_the_study_finishes(ray_session, fake_space,
                                                           small_phantom, tmp_path):
    space = fake_space(fake={"nan_lr_below": 3e-4, "crash_lr_above": 1e-3}, trials=6,
                       iterations=20, grace=20)
    assert _launch(space, small_phantom, tmp_path, "e") == 0
    trials = read_trials(tmp_path / "e")
    assert trials.height == 6
    kinds = set()
    for r in trials.iter_rows(named=True):
        lr = json.loads(r["config"])["lr"]
        if lr < 3e-4:
            assert r["status"] == "ERROR" and "FloatingPointError: NaN loss" in r["stop_reason"]
            kinds.add("nan")
        elif lr > 1e-3:
            assert r["status"] == "ERROR" and "RuntimeError: fake crash" in r["stop_reason"]
            kinds.add("crash")
        else:
            assert r["status"] == "TERMINATED" and r["budget"] == 20
            kinds.add("ok")
    assert kinds == {"nan", "crash", "ok"}  # seeded TPE: the same lrs every run
    study = optuna.load_study(study_name="e-arterial",
                              storage=f"sqlite:///{tmp_path / 'e'}/optuna.db")
    errors = trials.filter(pl.col("status") == "ERROR").height
    assert [t.state for t in study.trials].count(State.FAIL) == errors


def test_engine_smoke_study_writes_predictions(ray_session, small_phantom, tmp_path, capsys,
                                              monkeypatch):
    import nibabel as nib

    assert _launch("smoke", small_phantom, tmp_path, "s", "--samples", "3") == 0
    run = tmp_path / "s"
    trials = read_trials(run)
    assert trials.height == 3 and set(trials["status"]) <= {"TERMINATED", "STOPPED"}
    meta = json.loads((run / "study.json").read_text())
    assert meta["finished"] and meta["versions"]["ray"] and meta["fingerprint"]
    assert meta["space"]["name"] == "smoke" and "budgets:" in meta["space"]["yaml"]
    m = read_metrics(run)
    test = m.filter(pl.col("split") == "test")
    for r in best_trials(trials).iter_rows(named=True):
        for case in meta["split"]["test"]:
            img = nib.load(run / "predictions" / "arterial" / r["arch"] / f"{case}.nii.gz")
            assert img.shape == (80, 64, 16)  # back in the source geometry
            got = test.filter((pl.col("case") == case) & (pl.col("arch") == r["arch"]))
            assert {"dice", "precision", "recall", "hd95"} <= set(got["metric"])
        assert (run / "best" / "arterial" / r["arch"] / "model.pt").is_file()
    assert m.filter((pl.col("split") == "val") & (pl.col("case") == "mean")
                    & (pl.col("metric") == "hd95")).height > 0
    # the same trials in a plain engine loop, for the Ray overhead ratio, with the seeds
    # the trials trained with (each checkpoint's config.json)
    import study.train.engine
    from study.tune.overhead import main as overhead

    seeds, real = [], study.train.engine.train
    monkeypatch.setattr(study.train.engine, "train",
                        lambda cfg, *a, **k: seeds.append(cfg.seed) or real(cfg, *a, **k))
    assert overhead([str(run)]) == 0
    from pathlib import Path

    assert sorted(seeds) == sorted(json.loads((Path(c) / "config.json").read_text())["seed"]
                                   for c in trials["checkpoint"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("phase arterial: tuning wall") and float(line.split()[-1]) > 0
