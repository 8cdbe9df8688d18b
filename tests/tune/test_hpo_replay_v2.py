"""Issue 29's HPO replay pieces: the Sobol design over the continuous space, the nearest
recorded configuration as the replay's answer, its held-out error, and replays with trials
side by side, on hand-made tables whose answers are known."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest

from benchmarks.hpo_replay import analysis, record
from benchmarks.hpo_replay.lookup import held_out_error, noise_floor, rung_iterations
from benchmarks.hpo_replay.replay import (
    TPE,
    Policy,
    events,
    policy_key,
    run_policy,
    space_dict,
    table_settings,
)
from study.tune.fake import mean_curves, nearest_id, replay_entry
from tests.tune.conftest import replay_kw as _kw

SCALES = {"lr": [1e-4, 1e-2], "l2": [1e-6, 1e-3], "lr_after_switch": [0.01, 1.0]}


# --- the design -------------------------------------------------------------------------

def test_sobol_design_is_seeded_in_bounds_and_valid():
    points = record.sobol_points()
    assert len(points) >= 48 and points == record.sobol_points()
    assert points != record.sobol_points(seed=record.SOBOL_SEED + 1)
    assert record.sobol_points(64)[:48] == points  # a larger design extends this one
    for p in points:
        for name, dist in record.SPACE.items():
            if "loguniform" in dist:
                lo, hi = dist["loguniform"]
                assert lo <= p[name] <= hi and isinstance(p[name], float)
            else:
                assert p[name] in dist["choice"]
    # every value of every categorical is drawn, lr covers its decades
    for name, dist in record.SPACE.items():
        if "choice" in dist:
            assert {p[name] for p in points} == set(dist["choice"])
    decades = {math.floor(math.log10(p["lr"])) for p in points}
    assert decades == {-4, -3}
    assert record.NEAREST == SCALES


def test_v2_order_puts_seed_0_of_the_sobol_points_first():
    order = record.design_v2(points=48, seeds=(0, 1))
    assert len(order) == (48 + 64) * 2
    assert {(p["design"], p["seed"]) for p in order[:48]} == {("sobol", 0)}
    assert sorted(p["config"] for p in order[:48]) == list(range(48))
    assert [p["config"] for p in order[:48]] != list(range(48))  # shuffled
    assert {(p["design"], p["seed"]) for p in order[112:160]} == {("sobol", 1)}
    grid = [p for p in order if p["design"] == "grid"]
    assert {p["lrdehl"] for p in grid} == {"mae"} and {p["lr_after_switch"] for p in grid} == {1.0}
    assert len({(p["design"], p["config"], p["seed"]) for p in order}) == len(order)


def test_merge_v2_takes_what_is_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(record, "environment", lambda: {})
    order = record.design_v2(points=2, seeds=(0, 1), grid=False)
    done = order[0]
    rows = [{**done, "switch_step": str(done["switch_step"]), "iteration": it,
             "val_dice": 0.1 * it / 80, "val_precision": 0.5, "val_recall": 0.5,
             "train_loss": 0.3, "seconds": it / 10} for it in (80, 160)]
    path = record._part_v2(tmp_path / record.PARTS_NAME, done)
    path.parent.mkdir(parents=True)
    pl.DataFrame(rows).select(record.V2_COLUMNS).write_parquet(path)
    out = record.merge_v2(tmp_path, order, {"points": 2})
    table = pl.read_parquet(out)
    assert table.columns == list(record.V2_COLUMNS) and table.height == 2
    meta = json.loads((tmp_path / record.SETTINGS_V2_NAME).read_text())
    assert len(meta["missing"]) == 3 and meta["curves"] == 1 and meta["space"] == record.SPACE


# --- the lookup -------------------------------------------------------------------------

def _row(design, config, seed, it, dice, *, lr, l2=1e-5, base=8, loss="dice",
         switch="never", las=1.0, lrdehl="mae", seconds=None):
    return {"design": design, "config": config, "seed": seed, "lr": lr, "l2": l2,
            "base_channels": base, "loss": loss, "switch_step": switch,
            "lr_after_switch": las, "lrdehl": lrdehl, "iteration": it, "val_dice": dice,
            "val_precision": 0.5, "val_recall": 0.5, "train_loss": 0.5,
            "seconds": seconds if seconds is not None else float(it)}


@pytest.fixture
def tiny(tmp_path):
    """Four configurations x 2 seeds, 4 evaluations of 10 iterations."""
    spec = [  # (config, lr, loss, switch, lrdehl, base Dice)
        (0, 1e-4, "dice", "never", "mae", 0.1),
        (1, 1e-3, "dice", "never", "mse", 0.5),
        (2, 1e-2, "dice", "0.5", "mse", 0.3),
        (3, 2e-3, "sqdice", "never", "mae", 0.7),
    ]
    rows = []
    for config, lr, loss, switch, lrdehl, base in spec:
        for seed, delta in ((0, -0.02), (1, 0.02)):
            for k in range(4):
                rows.append(_row("sobol", config, seed, 10 * (k + 1), base + 0.05 * k + delta,
                                 lr=lr, loss=loss, switch=switch, lrdehl=lrdehl,
                                 seconds=2.0 * (k + 1) * (config + 1)))
    path = tmp_path / "v2.parquet"
    pl.DataFrame(rows).write_parquet(path)
    return path


def test_lookup_answers_a_recorded_point_with_its_curve(tiny):
    options = {"replay": {"table": str(tiny), "nearest": SCALES}}
    got = replay_entry(options, _kw(1e-3, lr_after_switch=0.5, lrdehl="mae"))
    # config 1, the mean of its two seeds (0.48 / 0.52 -> 0.5, ...)
    assert got["dice"] == pytest.approx({10: 0.5, 20: 0.55, 30: 0.6, 40: 0.65})
    assert got["seconds"] == pytest.approx({10: 4.0, 20: 8.0, 30: 12.0, 40: 16.0})
    # a switching point: config 2 (lr factor / LRDEHL count only when both switch)
    got = replay_entry(options, _kw(1e-2, switch_step=20, lr_after_switch=0.1, lrdehl="mse"))
    assert got["dice"][10] == pytest.approx(0.3)


def test_lookup_answers_a_nearby_point_with_the_nearest(tiny):
    curves = mean_curves(pl.read_parquet(tiny))
    assert sorted(curves) == ["sobol:0", "sobol:1", "sobol:2", "sobol:3"]
    point = {"lr": 1.5e-3, "l2": 1e-5, "base_channels": 8, "loss": "dice",
             "switch_step": "never"}
    assert nearest_id(curves, point, SCALES) == "sobol:1"
    assert nearest_id(curves, {**point, "lr": 2e-4}, SCALES) == "sobol:0"
    # categoricals first: sqdice goes to config 3 whatever its lr
    assert nearest_id(curves, {**point, "loss": "sqdice", "lr": 1e-4}, SCALES) == "sobol:3"
    # a switching point near a record that does not switch: the one that switches
    switching = {**point, "switch_step": "0.5", "lr": 1e-4, "lr_after_switch": 1.0}
    assert nearest_id(curves, {**switching, "lrdehl": "mse"}, SCALES) == "sobol:2"
    # ... unless its LRDEHL differs too: one categorical off either way, then the distance
    assert nearest_id(curves, {**switching, "lrdehl": "mae"}, SCALES) == "sobol:0"


def test_held_out_error_by_hand(tmp_path):
    # A (lr 1e-4) 0.1 +- 0.05 over seeds, B (2e-4) 0.2, C (1e-2) 0.6: leave A out -> B
    # (0.1), B -> A (0.1), C -> B (0.4): MAE 0.2; the mean of the others: 0.3, 0.15, 0.45
    rows = []
    for config, lr, values in ((0, 1e-4, (0.05, 0.15)), (1, 2e-4, (0.2, 0.2)),
                               (2, 1e-2, (0.6, 0.6))):
        for seed, v in enumerate(values):
            rows += [_row("sobol", config, seed, it, v, lr=lr) for it in (10, 20, 30, 40, 50)]
    table = pl.DataFrame(rows)
    got = held_out_error(table, SCALES)
    assert got["at"] == [10, 30, 50] and got["configurations"] == 3
    assert got["mae"]["50"] == pytest.approx(0.2) and got["max"]["50"] == pytest.approx(0.4)
    assert got["median"]["10"] == pytest.approx(0.1)
    assert got["mae_mean_model"]["30"] == pytest.approx(0.3)
    assert [p["nearest"] for p in got["per_config"]] == ["sobol:1", "sobol:0", "sobol:1"]
    # seeds: |0.05 - 0.15| = 0.1 for A, 0 for B and C -> mean 1/30, / sqrt(2)
    assert noise_floor(table, [50])["50"] == pytest.approx(0.1 / 3 / math.sqrt(2))
    assert rung_iterations(800, 80) == [160, 480, 800]
    assert rung_iterations(800, 80, grace=0.125, reduction_factor=2) == [160, 240, 400, 800]


def test_held_out_error_of_the_first_table_runs_without_seeds():
    table = pl.DataFrame([{"config": c, "lr": lr, "l2": 1e-5, "base_channels": 8,
                           "loss": "dice", "switch_step": "never", "iteration": it,
                           "val_dice": v, "seconds": 1.0}
                          for c, (lr, v) in enumerate(((1e-3, 0.5), (3e-3, 0.6)))
                          for it in (10, 20)])
    got = held_out_error(table, SCALES, at=[20])
    assert got["mae"]["20"] == pytest.approx(0.1) and got["noise_floor"] is None
    assert analysis.finals(table, 20)  # the first table's keys are unchanged


# --- replays side by side ---------------------------------------------------------------

def test_space_of_a_continuous_replay(tiny):
    settings = table_settings(pl.read_parquet(tiny), tiny)
    assert settings["continuous"] and settings["iterations"] == 40
    pol = Policy("p", TPE, "asha", 0.25, 2, 4, start_with=(
        {"lr": 1e-3, "l2": 1e-5, "base_channels": 16, "loss": "dice", "switch_step": 0.75},))
    space = space_dict(tiny, settings, pol, 0, concurrency=4, time_scale=0.01,
                       log_events="ev.jsonl")
    assert space["params"]["lr"] == {"loguniform": [1e-4, 1e-2]}
    assert space["params"]["augment"] == "none" and space["params"]["inputs"] == "single"
    assert space["fake"]["replay"]["nearest"] == SCALES
    assert space["fake"]["replay"]["time_scale"] == 0.01
    assert space_dict(tiny, {**settings, "continuous": False, "grid": {"lr": [1e-3]}}, pol,
                      0)["fake"]["replay"] == str(tiny.resolve())  # the first replay's form
    assert space["budgets"]["replay"]["max_concurrent"] == 4
    assert space["resources"]["default"]["cpu"] == 0.5  # 4 trials on 2 Ray CPUs
    assert space["budgets"]["replay"]["start_with"][0]["lrdehl"] == "mae"
    assert policy_key(pol) != policy_key(pol, 2, 0.01)


def test_events_follow_the_reported_order():
    trials = pl.DataFrame({"trial": ["a", "b"], "config": [json.dumps({"lr": 1e-3}),
                                                           json.dumps({"lr": 1e-2})]})
    metrics = pl.DataFrame([{"trial": t, "iteration": it, "split": "val", "case": "mean",
                             "metric": "dice", "value": v}
                            for t, it, v in (("a", 10, 0.1), ("a", 20, 0.2), ("b", 10, 0.5),
                                             ("b", 20, 0.6))])
    settings = {"grid": {"lr": [1e-3, 1e-2]}}
    seq = events(trials, metrics, settings, {"a": 0, "b": 1})
    assert [(e["trial"], e["iteration"], e["compute"]) for e in seq] == [
        ("a", 10, 10), ("a", 20, 20), ("b", 10, 30), ("b", 20, 40)]
    times = {("a", 10): 1.0, ("b", 10): 1.5, ("a", 20): 2.0, ("b", 20): 2.5}
    seq = events(trials, metrics, settings, {"a": 0, "b": 1}, times)
    assert [(e["trial"], e["iteration"], e["compute"]) for e in seq] == [
        ("a", 10, 10), ("b", 10, 20), ("a", 20, 30), ("b", 20, 40)]
    incs = analysis.incumbents(seq)  # b@10 leads a@10; a@20 reached more budget
    assert [i["trial"] for i in incs] == ["a", "b", "a", "b"]


@pytest.mark.ray
def test_replay_at_concurrency_2_through_the_tuner(ray_session, tiny, tmp_path):
    table = pl.read_parquet(tiny)
    settings = table_settings(table, tiny)
    final = analysis.finals(table, 40)
    assert final["sobol:3"] == pytest.approx(0.85)
    pol = Policy("c2", {"name": "random"}, "asha", 0.25, 2, 6)
    got = run_policy(tiny, settings, pol, 0, tmp_path / "w", concurrency=2, time_scale=0.005)
    ev = got["events"]
    assert got["concurrency"] == 2 and len({e["trial"] for e in ev}) == 6
    assert all(e["config"] in final for e in ev)
    # compute = the iterations trained by all trials, counted in the order of events
    last = {}
    for e in ev:
        last[e["trial"]] = e["iteration"]
    assert ev[-1]["compute"] == sum(last.values())
    assert [e["compute"] for e in ev] == sorted(e["compute"] for e in ev)
    row = analysis.per_seed(got, final, 40, at_budgets=8)
    assert row["chosen_matches"] and row["spent"] == sum(last.values()) / 40


def test_rbf_comparison_is_exact_on_a_linear_landscape():
    # Dice linear in log lr: a thin-plate RBF (linear polynomial part) answers every
    # held-out point exactly; the nearest configuration is off by the step to it
    lrs = (1e-4, 10 ** -3.5, 1e-3, 1e-2)
    rows = [_row("sobol", c, 0, it, 0.1 + 0.2 * (math.log10(lr) + 4) / 2, lr=lr)
            for c, lr in enumerate(lrs) for it in (10, 20, 30, 40, 50)]
    table = pl.DataFrame(rows)
    rbf = held_out_error(table, SCALES, at=[50], method="rbf")
    assert rbf["mae"]["50"] == pytest.approx(0.0, abs=1e-9)
    near = held_out_error(table, SCALES, at=[50])
    # steps 0.05 (1e-4 <-> 10^-3.5, twice), 0.05 (1e-3 -> 10^-3.5), 0.1 (1e-2 -> 1e-3)
    assert near["mae"]["50"] == pytest.approx((0.05 * 3 + 0.1) / 4)


def test_exact_lookup_gives_the_recorded_seconds_too(tiny):
    got = replay_entry({"replay": str(tiny)}, _kw(1e-3, lrdehl="mse", lr_after_switch=1.0))
    assert got["dice"][40] == pytest.approx(0.65) and got["seconds"][40] == pytest.approx(16.0)


# --- the replay measures what ships --------------------------------------------------------

def test_cpu_budget_policy_and_recorded_space_are_the_shipped_unet2d_cpu_budget():
    """If search_spaces/unet2d.yaml's cpu budget changes, the replay's "cpu budget" policy
    and the v2 recording's space must follow (or the README cites another schedule)."""
    from benchmarks.hpo_replay.replay import POLICIES
    from study.tune.space import load_space

    space = load_space("unet2d")
    b = space.budget("cpu")
    policy = next(p for p in POLICIES if p.name == "cpu budget")
    assert policy.grace == pytest.approx(b.grace_period / b.iterations)
    assert policy.reduction_factor == b.reduction_factor
    assert policy.early_stopping == b.early_stopping == "asha"
    shipped = space.sampler_for(b)
    assert {k: policy.sampler[k] for k in ("name", "multivariate", "group")} \
        == {k: shipped[k] for k in ("name", "multivariate", "group")}
    raw = space.budget_start["cpu"]
    assert len(raw) == len(policy.start_with)
    for mine, theirs in zip(policy.start_with, raw, strict=True):
        assert {k: theirs[k] for k in mine} == mine
    # the v2 recording's continuous space is the cpu budget's (lr narrowed there)
    params, _ = space.space_for(b)
    for name in ("lr", "l2", "lr_after_switch"):
        assert [params[name].args[0], params[name].args[1]] == record.SPACE[name]["loguniform"]
    for name in ("base_channels", "loss", "switch_step", "lrdehl"):
        assert sorted(map(str, params[name].args)) \
            == sorted(map(str, record.SPACE[name]["choice"]))


def test_every_shipped_space_cites_the_replay_of_the_schedules_it_ships():
    """The comment above each shipped space's `sampler:` is `cli.citation` of the committed
    replay result, verbatim, and the schedules it cites are the ones the spaces ship."""
    from benchmarks.common import REPO
    from benchmarks.hpo_replay.cli import CITED_RESULT, SHIPPED, citation
    from benchmarks.hpo_replay.replay import POLICIES
    from study.tune.space import load_space

    lines = citation(json.loads(CITED_RESULT.read_text(encoding="utf-8")))
    policies = {p.name: p for p in POLICIES}
    spaces = [p for p in sorted((REPO / "search_spaces").glob("*.yaml"))
              if "\nsampler:" in p.read_text(encoding="utf-8")]
    assert {p.stem for p in spaces} >= {"all", "hybrid", "simplified3d", "unet2d", "unet3d"}
    for path in spaces:
        text = path.read_text(encoding="utf-8")
        missing = [line for line in lines if line not in text.splitlines()]
        assert not missing, f"{path.name} does not cite the replay: {missing[0]!r}"
        space = load_space(path.stem)
        for budget, policy, _k in SHIPPED:
            b, p = space.budget(budget), policies[policy]
            shipped = space.sampler_for(b)
            assert {k: p.sampler[k] for k in ("name", "n_startup_trials", "multivariate")} \
                == {k: shipped[k] for k in ("name", "n_startup_trials", "multivariate")}
            assert b.early_stopping == p.early_stopping
            if budget == "full":  # cpu grace differs per model (3D: 0.3); unet2d's is tied above
                assert (b.grace_period / b.iterations, b.reduction_factor) \
                    == pytest.approx((p.grace, p.reduction_factor))
