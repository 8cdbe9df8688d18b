"""--time: the search ends on time, every trial that ran is recorded, the best is tested;
start_with configurations run first; phases default to the data set's when none match."""

from __future__ import annotations

import json
import re
import time

import optuna
import polars as pl
import pytest
import yaml

from study.errors import ConfigError
from study.launch import main
from study.results import read_metrics, read_trials
from study.tune.study import parse_duration

pytestmark = pytest.mark.ray
State = optuna.trial.TrialState


def test_parse_duration():
    assert parse_duration("90s") == 90 and parse_duration("30m") == 1800
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45 and parse_duration(None) is None
    for bad in ("soon", "0s", "-5m", "m", "10x"):
        with pytest.raises(ConfigError, match="--time"):
            parse_duration(bad)


def test_time_budget_stops_the_study_and_records_every_trial(ray_session, fake_space,
                                                             small_phantom, tmp_path, capsys):
    # a trial needs 30 x 1 s at full budget, more than the whole 25 s: the trials running
    # when the time is up are stopped there, after a few evaluations each (25 s leaves
    # room for slow Ray worker starts on a loaded machine)
    space = fake_space(fake={"sleep": 1.0}, trials=8, iterations=300, eval_every=10,
                       grace=300)
    t0 = time.time()
    assert main(["--space", str(space), "--data", str(small_phantom), "--name", "t",
                 "--out", str(tmp_path), "--no-report", "--time", "25s",
                 "--budget", "smoke"]) == 0
    wall = time.time() - t0
    run = tmp_path / "t"
    trials = read_trials(run)
    assert 1 <= trials.height <= 2  # the two that started (2 slots); the clock ended it
    assert wall < 25 + 30  # the budget plus Ray's start and stop and the test evaluation
    assert set(trials["status"]) == {"STOPPED"}
    assert all(r.startswith("stopped by the time budget at iteration")
               for r in trials["stop_reason"])
    assert all(10 <= b < 300 for b in trials["budget"])  # recorded at the budget reached
    # every trial that reported is recorded with all its evaluations, and Optuna agrees
    m = read_metrics(run).filter((pl.col("split") == "val") & (pl.col("case") == "mean")
                                 & (pl.col("metric") == "dice"))
    assert set(m["trial"]) == set(trials["trial"])
    for r in trials.iter_rows(named=True):
        assert sorted(m.filter(pl.col("trial") == r["trial"])["iteration"]) == list(
            range(10, r["budget"] + 1, 10))
    study = optuna.load_study(study_name="t-arterial", storage=f"sqlite:///{run}/optuna.db")
    pruned = [t for t in study.trials if t.state == State.PRUNED]
    assert len(pruned) == trials.height
    assert not [t for t in study.trials if t.state in (State.RUNNING, State.COMPLETE)]
    # the best trial was tested
    assert read_metrics(run).filter(pl.col("split") == "test").height > 0
    out = capsys.readouterr().out  # the phase gets what preprocessing left of the 25 s
    assert re.search(r"phase arterial: time budget of (\d+) s reached", out)
    assert re.search(r"[12] stopped by the time budget, 0 failed", out)


def test_start_with_runs_first(ray_session, fake_space, small_phantom, tmp_path):
    space = fake_space(trials=3, iterations=10, eval_every=10, grace=10)
    raw = yaml.safe_load(space.read_text())
    raw["start_with"] = [{"lr": 0.00123}, {"lr": 0.0042}]
    space.write_text(yaml.safe_dump(raw))
    assert main(["--space", str(space), "--data", str(small_phantom), "--name", "s",
                 "--out", str(tmp_path), "--no-report", "--max-concurrent", "1"]) == 0
    study = optuna.load_study(study_name="s-arterial",
                              storage=f"sqlite:///{tmp_path / 's'}/optuna.db")
    lrs = [t.params["lr"] for t in sorted(study.trials, key=lambda t: t.number)]
    assert lrs[:2] == [0.00123, 0.0042] and len(lrs) == 3
    configs = [json.loads(c)["lr"] for c in read_trials(tmp_path / "s")["config"]]
    assert 0.00123 in configs and 0.0042 in configs


def test_start_with_is_checked_against_the_space(fake_space, small_phantom, tmp_path, capsys):
    from study.errors import run_cli
    from study.launch import _main

    space = fake_space()
    raw = yaml.safe_load(space.read_text())
    for bad, words in (([{"lr": 5.0}], "'start_with[0].lr': 5.0 is outside"),
                       ([{"momentum": 0.9}], "'momentum' is not a parameter"),
                       ({"lr": 1e-3}, "expected a list")):
        raw["start_with"] = bad
        space.write_text(yaml.safe_dump(raw))
        assert run_cli(_main, ["--space", str(space), "--data", str(small_phantom),
                               "--out", str(tmp_path), "--name", "x"]) == 2
        assert words in capsys.readouterr().err
        assert not (tmp_path / "x").exists()


def test_phases_default_to_the_data_sets_when_none_match(ray_session, fake_space,
                                                        tiny_dataset_factory, tmp_path, capsys):
    from study.errors import run_cli
    from study.launch import _main

    t2 = tiny_dataset_factory("t2", cases=6, phases=("T2SPIR",), shape=(32, 32, 8),
                              labels={"background": 0, "liver": 1})
    space = fake_space(trials=2, iterations=10, eval_every=10, grace=10)  # phases: [arterial]
    assert main(["--space", str(space), "--data", str(t2), "--name", "p", "--out",
                 str(tmp_path), "--no-report", "--label", "liver"]) == 0
    out = capsys.readouterr().out
    assert "studying the data set's phases instead: T2SPIR" in out
    assert set(read_trials(tmp_path / "p")["phase"]) == {"T2SPIR"}
    # a partial mismatch stays an error, found before any preprocessing
    two = tiny_dataset_factory("two", cases=6, phases=("pre", "arterial"), shape=(32, 32, 8))
    assert run_cli(_main, ["--space", str(space), "--data", str(two), "--name", "q",
                           "--out", str(tmp_path), "--phase", "arterial", "portal"]) == 2
    assert "phase(s) portal not in the data set" in capsys.readouterr().err
    # a bad label is found before preprocessing too
    assert run_cli(_main, ["--space", str(space), "--data", str(two), "--name", "r",
                           "--out", str(tmp_path), "--label", "vessel"]) == 2
    assert "vessel" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["hybrid", "unet2d", "unet3d", "simplified3d", "all"])
def test_every_shipped_space_has_a_cpu_budget_that_starts_from_a_default(name):
    from study.models import MODELS
    from study.tune.space import load_space

    space = load_space(name)
    b = space.budget("cpu")
    # 2.5 mm in-plane (CHAOS T2: 128 x 128), the slice axis from the data set's plan
    assert b.grid is None and b.spacing == (2.5, 2.5, "auto")
    assert b.geometry == {"spacing": (2.5, 2.5, "auto")} and b.eval_every * 10 <= b.iterations
    points = space.start_points(b)  # checked against the cpu budget's distributions
    assert points and all(p["lr"] == 1.0e-3 for p in points)
    params, per_arch = space.space_for(b)
    for arch in space.archs:  # sizes fit every architecture's down-samplings
        m = 2 ** MODELS[arch].default_depth
        patch = {**params, **per_arch.get(arch, {})}.get("patch")
        if MODELS[arch].kind != "3d":
            continue  # 2D windows are planned per data set as multiples (test_samplers)
        sizes = patch.value if patch is not None else (64, 64, 64)
        assert all(s % m == 0 for s in sizes), (arch, sizes)
