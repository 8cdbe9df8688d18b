import json
import shutil

import optuna
import polars as pl
import pytest

from study.report import figures
from study.report.load import load_run


def test_history_best_so_far_is_cumulative_max():
    trials = pl.DataFrame({
        "run": ["r"] * 4, "phase": ["p"] * 4, "trial": ["t_2", "t_10", "t_1", "t_3"],
        "arch": ["a"] * 4, "status": ["TERMINATED", "STOPPED", "TERMINATED", "ERROR"],
        "budget": [30, 10, 30, 5], "max_budget": [30] * 4,
        "best_val_dice": [0.2, 0.9, 0.5, None],
    })
    h = figures.history_data(trials)
    assert h["trial"].to_list() == ["t_1", "t_2", "t_3", "t_10"]  # natural order
    assert h["best_so_far"].to_list() == [0.5, 0.5, 0.5, 0.9]
    assert h["stopped"].to_list() == [False, False, True, True]
    fig = figures.history_figure(h, "x")
    assert fig.data[-1].y == (0.5, 0.5, 0.5, 0.9)


def test_curves_mean_over_validation_cases_and_stops(run_dir):
    run = load_run(run_dir)
    c = figures.curves_data(run.metrics, run.trials)
    one = c.filter(pl.col("trial") == "arterial_unet2d_00000").sort("iteration")
    # val cases are the curve value +- 0.05: the mean is the curve value
    assert one["val_dice"].to_list() == pytest.approx([0.1, 0.3, 0.45])
    assert one["last"].to_list() == [False, False, True]
    stopped = c.filter(pl.col("trial") == "arterial_unet2d_00001")
    assert stopped["stopped"].to_list() == [True] and stopped["iteration"].to_list() == [10]
    fig = figures.curves_figure(c.filter(pl.col("phase") == "arterial"), "t")
    names = {t.name for t in fig.data}
    assert {"stopped by ASHA", "full budget"} <= names


def test_curves_prefer_the_reported_mean_over_per_case_rows():
    cols = ["study", "trial", "arch", "phase", "iteration", "split", "case", "metric", "value", "run"]
    m = pl.DataFrame([
        ("s", "t", "a", "p", 10, "val", "c1", "dice", 0.2, "r"),
        ("s", "t", "a", "p", 10, "val", "c2", "dice", 0.4, "r"),
        ("s", "t", "a", "p", 10, "val", "mean", "dice", 0.35, "r"),  # reported: wins
        ("s", "t", "a", "p", 20, "val", "c1", "dice", 0.5, "r"),  # no mean row: per-case mean
        ("s", "t", "a", "p", 20, "val", "c2", "dice", 0.7, "r"),
        ("s", "t", "a", "p", 20, "train", "mean", "loss", 0.1, "r"),
    ], schema=cols, orient="row")
    t = pl.DataFrame({"run": ["r"], "trial": ["t"], "budget": [20], "max_budget": [40],
                      "status": ["STOPPED"]})
    c = figures.curves_data(m, t).sort("iteration")
    assert c["val_dice"].to_list() == pytest.approx([0.35, 0.6])
    assert c["stopped"].to_list() == [True, True] and c["last"].to_list() == [False, True]


def test_study_rebuilt_from_trials_has_varying_params(run_dir):
    run = load_run(run_dir)
    study, source = figures.phase_study(run, "arterial")
    assert "trials.parquet" in source
    params = set(study.trials[0].params)
    assert params == {"lr", "loss", "base_channels", "arch"}  # all vary between trials
    assert figures.importance_figure(study, "t") is not None
    data, dists = figures.parallel_data(study)
    assert data.height == 4
    assert figures.parallel_figure(data, dists, "t") is not None


def test_study_read_from_optuna_db_without_modifying_it(tmp_path, run_dir):
    run_copy = tmp_path / "demo"
    shutil.copytree(run_dir, run_copy)
    storage = f"sqlite:///{run_copy / 'optuna.db'}"
    s = optuna.create_study(study_name="demo-arterial", storage=storage, direction="maximize")
    for i in range(3):
        t = s.ask({"lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)})
        s.tell(t, 0.1 * i)
    before = (run_copy / "optuna.db").read_bytes()
    run = load_run(run_copy)
    study, source = figures.phase_study(run, "arterial")
    assert source == "from optuna.db"
    assert len(study.trials) == 3 and set(study.trials[0].params) == {"lr"}
    assert (run_copy / "optuna.db").read_bytes() == before
    # a phase missing from the db falls back to the trials table
    _, source = figures.phase_study(run, "portal")
    assert "trials.parquet" in source


def test_importance_needs_two_finished_trials():
    trials = pl.DataFrame({"run": ["r"], "phase": ["p"], "trial": ["t"], "arch": ["a"],
                           "status": ["TERMINATED"], "best_val_dice": [0.3],
                           "config": [json.dumps({"lr": 0.1})]})

    class R:  # the attributes phase_study reads
        name, optuna_db = "r", None
    R.trials = trials
    study, _ = figures.phase_study(R, "p")
    assert figures.importance_figure(study, "t") is None
    assert figures.importance_figure(None, "t") is None


def test_trial_creation_order_from_ray_folders(tmp_path):
    from study.report.load import with_trial_numbers

    (tmp_path / "ray" / "arterial" / "trial_0001_ffff0000").mkdir(parents=True)
    trials = pl.DataFrame({
        "run": ["r"] * 3, "phase": ["arterial"] * 3, "trial": ["aaaa1111", "ffff0000", "cccc2222"],
        "arch": ["a"] * 3, "status": ["TERMINATED"] * 3, "budget": [30] * 3, "max_budget": [30] * 3,
        "best_val_dice": [0.1, 0.2, 0.3],
        "checkpoint": ["/runs/x/ray/arterial/trial_0003_aaaa1111/checkpoint_000002",
                       None, "/runs/x/ray/arterial/trial_0002_cccc2222/checkpoint_000001"],
    })
    numbered = with_trial_numbers(trials, tmp_path)
    assert numbered["number"].to_list() == [3, 1, 2]
    h = figures.history_data(numbered)
    assert h["trial"].to_list() == ["ffff0000", "cccc2222", "aaaa1111"]
    assert h["best_so_far"].to_list() == [0.2, 0.3, 0.3]


def test_importance_labels_are_escaped():
    from optuna.distributions import FloatDistribution

    study = optuna.create_study(direction="maximize")
    for i in range(4):
        study.add_trial(optuna.trial.create_trial(
            params={"<b>x</b>": float(i), "y": float(i % 2)},
            distributions={"<b>x</b>": FloatDistribution(0, 5), "y": FloatDistribution(0, 1)},
            value=float(i)))
    fig = figures.importance_figure(study, "<i>t</i>")
    assert set(fig.data[0].y) == {"&lt;b&gt;x&lt;/b&gt;", "y"}
    assert all("<b>" not in h for h in fig.data[0].hovertemplate)
    assert fig.layout.title.text == "&lt;i&gt;t&lt;/i&gt;"


def test_test_means_joined_with_seed(run_dir):
    from study.report import tables

    run = load_run(run_dir)
    data = figures.test_means_data(tables.test_results(run.metrics, run.trials))
    row = data.filter((pl.col("phase") == "portal") & (pl.col("arch") == "hybrid")
                      & (pl.col("metric") == "dice")).to_dicts()[0]
    assert row["mean"] == pytest.approx((0.9 + 0.3 + 0.0) / 1.5 / 3)
    assert row["seed"] == pytest.approx(0.4447) and row["n"] == 3
    fig = figures.test_means_figure(data, "t")
    assert len(fig.data) == 2 * 3 * 2  # phases x metrics x (bars, seed diamonds)
