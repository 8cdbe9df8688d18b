"""A space's ``sampler:`` and a budget's ``early_stopping:`` reach the tuner as written."""

from __future__ import annotations

import optuna
import pytest
import yaml

from study.errors import ConfigError
from study.tune.sampler import DEFAULT_SAMPLER, make_sampler
from study.tune.space import load_space


def _space(tmp_path, *, sampler=None, budget_extra=None):
    data = {"params": {"arch": "unet2d", "lr": {"loguniform": [1e-5, 1e-2]}},
            "budgets": {"smoke": {"iterations": 20, "eval_every": 10, "grid": [32, 32, 8],
                                  **(budget_extra or {})},
                        "other": {"iterations": 20, "eval_every": 10, "grid": [32, 32, 8]}}}
    if sampler is not None:
        data["sampler"] = sampler
    p = tmp_path / "space.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def test_default_is_tpe_with_optuna_defaults_and_asha(tmp_path):
    space = load_space(_space(tmp_path))
    b = space.budget("smoke")
    assert space.sampler_for(b) == DEFAULT_SAMPLER
    assert b.early_stopping == "asha"


def test_string_and_mapping_forms_and_budget_override(tmp_path):
    space = load_space(_space(tmp_path, sampler="random",
                              budget_extra={"sampler": {"name": "tpe", "n_startup_trials": 4,
                                                        "multivariate": True, "group": True},
                                            "early_stopping": "none"}))
    assert space.sampler_for(space.budget("other")) == {"name": "random"}
    smoke = space.budget("smoke")
    assert space.sampler_for(smoke) == {"name": "tpe", "n_startup_trials": 4,
                                        "multivariate": True, "group": True}
    assert smoke.early_stopping == "none"
    # an iteration-count budget keeps the base budget's choices
    assert load_space(_space(tmp_path, budget_extra={"early_stopping": "none"})).budget(
        "smoke").early_stopping == "none"


@pytest.mark.parametrize("sampler, words", [
    ("cmaes", "key 'sampler.name': use one of tpe, random"),
    ({"name": "tpe", "group": True}, "key 'sampler.group': grouped TPE needs multivariate"),
    ({"name": "tpe", "multivariate": "yes"}, "key 'sampler.multivariate': expected true or"),
    ({"name": "tpe", "n_startup_trials": -1}, "'sampler.n_startup_trials': expected an integer"),
    ({"name": "random", "n_startup_trials": 3}, "unknown key(s) n_startup_trials"),
])
def test_bad_sampler_names_the_key(tmp_path, sampler, words):
    with pytest.raises(ConfigError) as e:
        load_space(_space(tmp_path, sampler=sampler))
    assert "space.yaml" in str(e.value) and words in str(e.value)


def test_bad_early_stopping(tmp_path):
    with pytest.raises(ConfigError, match=r"budgets.smoke.early_stopping.*asha.*none"):
        load_space(_space(tmp_path, budget_extra={"early_stopping": "hyperband"}))


def test_make_sampler_builds_what_the_space_says():
    assert isinstance(make_sampler({"name": "random"}, 3), optuna.samplers.RandomSampler)
    tpe = make_sampler({"name": "tpe", "n_startup_trials": 4, "multivariate": True,
                        "group": True}, 3)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert (tpe._n_startup_trials, tpe._multivariate, tpe._group) == (4, True, True)
    assert make_sampler(None, 0)._n_startup_trials == 10


def test_make_sampler_is_seeded():
    def draws(seed):
        study = optuna.create_study(sampler=make_sampler({"name": "random"}, seed))
        return [study.ask().suggest_float("x", 0, 1) for _ in range(3)]

    assert draws(5) == draws(5) != draws(6)


@pytest.mark.parametrize("name", ["hybrid", "unet2d", "unet3d", "simplified3d", "all"])
def test_shipped_spaces_carry_the_replay_defaults(name):
    """benchmarks/README.md section 7: multivariate grouped TPE; the full budgets keep ASHA
    from 1/8 of the budget with reduction factor 2 (the replay found nothing better)."""
    space = load_space(name)
    full = space.budget("full")
    assert space.sampler_for(full) == {"name": "tpe", "n_startup_trials": 10,
                                       "multivariate": True, "group": True}
    assert (full.grace_period / full.iterations, full.reduction_factor) == (0.125, 2)
    assert full.early_stopping == "asha"
