"""Budget-aware OptunaSearch: steps are training iterations; ASHA stops become PRUNED."""

from __future__ import annotations

import pickle

import optuna
import pytest

from study.tune.dists import Dist
from study.tune.searcher import BudgetAwareOptunaSearch, DefineByRun, fail_orphans

State = optuna.trial.TrialState


@pytest.fixture
def searcher(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = DefineByRun({"arch": Dist("fixed", ("hybrid",)),
                         "lr": Dist("loguniform", (1e-5, 1e-2))}, {})
    s = BudgetAwareOptunaSearch(space=space, metric="val_dice", mode="max",
                                sampler=optuna.samplers.TPESampler(seed=0), study_name="r-a",
                                storage=optuna.storages.RDBStorage(url), max_iterations=40)
    return s, url


def _res(it, v, n):
    return {"iteration": it, "val_dice": v, "training_iteration": n}


def test_states_and_steps(searcher):
    s, url = searcher
    cfg = [s.suggest(f"t{i}") for i in range(4)]
    assert all(c["arch"] == "hybrid" and 1e-5 <= c["lr"] <= 1e-2 for c in cfg)
    # t0 runs the full budget; t1 is stopped by ASHA at 20 (Ray withholds that last result
    # from on_trial_result and passes it to on_trial_complete); t2 crashes; t3 never reports
    for it in (10, 20, 30, 40):
        s.on_trial_result("t0", _res(it, it / 100, it // 10))
    s.on_trial_complete("t0", _res(40, 0.4, 4))
    s.on_trial_result("t1", _res(10, 0.5, 1))
    s.on_trial_complete("t1", _res(20, 0.6, 2))
    s.on_trial_result("t2", _res(10, 0.1, 1))
    s.on_trial_complete("t2", None, error=True)
    s.on_trial_complete("t3", _res(10, float("nan"), 1))
    s.on_trial_complete("t0", _res(40, 0.4, 4))  # a repeat (after a restore) is ignored
    trials = optuna.load_study(study_name="r-a", storage=url).trials
    assert [t.state for t in trials] == [State.COMPLETE, State.PRUNED, State.FAIL, State.FAIL]
    assert trials[0].value == 0.4
    assert trials[0].intermediate_values == {10: 0.1, 20: 0.2, 30: 0.3, 40: 0.4}
    # pruned: both evaluations recorded at their iteration; value = last intermediate value
    assert trials[1].intermediate_values == {10: 0.5, 20: 0.6} and trials[1].value == 0.6


def test_state_survives_pickle_and_orphans_are_failed(searcher, tmp_path):
    s, url = searcher
    s.suggest("a")
    s.suggest("b")  # asked, but the driver dies before Ray records trial b
    s.on_trial_result("a", _res(10, 0.3, 1))
    path = tmp_path / "searcher.pkl"
    s.save(str(path))
    restored = pickle.loads(pickle.dumps(s))  # Tuner.restore unpickles a copy like this
    restored.restore(str(path))
    restored.on_trial_result("a", _res(10, 0.3, 1))  # re-sent after restore: no error
    restored.on_trial_complete("a", _res(40, 0.5, 4))
    assert fail_orphans(url, "r-a") == 1
    trials = optuna.load_study(study_name="r-a", storage=url).trials
    assert [t.state for t in trials] == [State.COMPLETE, State.FAIL]
    assert trials[0].intermediate_values == {10: 0.3, 40: 0.5}


def test_switch_parameters_are_drawn_only_when_the_loss_switches():
    """Issue 13: lr_after_switch and lrdehl were drawn (and fed to TPE) with switch 'never'."""
    space = DefineByRun(
        {"arch": Dist("choice", ("hybrid", "unet2d")),
         "switch_step": Dist("choice", ("never", 0.75)),
         "lr_after_switch": Dist("loguniform", (0.01, 1.0)),
         "lrdehl": Dist("choice", ("mae", "mse")),
         "lr": Dist("loguniform", (1e-5, 1e-2))},
        {"unet2d": {"lrdehl": Dist("fixed", ("mse",))}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(24):
        trial = study.ask()
        out = space(trial)
        switched = out["switch_step"] != "never"
        seen.add(switched)
        assert ("lr_after_switch" in out) == switched
        assert ("lr_after_switch" in trial.params) == switched
        assert ("lrdehl" in out) == switched
        assert ("lrdehl" in trial.params) == (switched and out["arch"] == "hybrid")
        if switched and out["arch"] == "unet2d":
            assert out["lrdehl"] == "mse"  # the per-architecture value wins
        assert "lr" in out and "lr" in trial.params
        study.tell(trial, 0.5)
    assert seen == {True, False}


def test_the_ray_internals_the_subclass_needs_are_there(searcher, monkeypatch):
    """Fails, naming what is gone, when a Ray upgrade drops what BudgetAwareOptunaSearch
    uses of OptunaSearch (pyproject bounds Ray; constraints.txt pins it)."""
    from study.tune.searcher import INTERNALS, missing_internals

    s, _ = searcher
    assert missing_internals(s) == [], f"Ray's OptunaSearch lacks {missing_internals(s)}"
    assert set(INTERNALS) >= {"_ot_study", "_ot_trials", "_completed_trials"}
    # a Ray without one of them fails at set-up with a message saying what and how to fix
    from ray.tune.search.optuna import OptunaSearch

    real = OptunaSearch._setup_study

    def without(self, mode):
        real(self, mode)
        del self._ot_trials

    monkeypatch.setattr(OptunaSearch, "_setup_study", without)
    with pytest.raises(RuntimeError, match="no longer has _ot_trials.*constraints.txt"):
        BudgetAwareOptunaSearch(space=DefineByRun({"arch": Dist("fixed", ("hybrid",))}, {}),
                                metric="val_dice", mode="max", max_iterations=40)
