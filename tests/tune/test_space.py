"""Search-space YAML: the shipped spaces load; every mistake names file, key and forms."""

from __future__ import annotations

import re

import optuna
import pytest
import yaml

from study.errors import ConfigError
from study.tune.params import train_config_kwargs
from study.tune.searcher import DefineByRun, searched_params
from study.tune.space import SPACES_DIR, load_space

SHIPPED = ("hybrid", "unet2d", "unet3d", "simplified3d", "all", "smoke")


def _write(tmp_path, data, name="space.yaml"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return p


def _base():
    return {"params": {"arch": "hybrid", "lr": {"loguniform": [1e-5, 1e-2]}},
            "budgets": {"smoke": {"iterations": 20, "eval_every": 10, "grid": [32, 32, 8]}}}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spaces_load_with_smoke_demo_full(name):
    space = load_space(name)
    assert space.path == SPACES_DIR / f"{name}.yaml"
    assert {"smoke", "demo", "full"} <= set(space.budgets)
    full = space.budget("full")
    assert (full.iterations, full.grid, full.spacing) == (40000, None, "auto")
    for b in space.budgets.values():
        assert b.eval_every <= b.iterations and b.grace_period <= b.iterations


def test_all_space_searches_arch_with_conditional_params():
    space = load_space("all")
    assert space.archs == ["hybrid", "unet2d", "unet3d", "simplified3d"]
    params, per_arch = space.space_for(space.budget("smoke"))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = {}
    for _ in range(30):
        trial = study.ask()
        cfg = DefineByRun(params, per_arch)(trial)
        seen[cfg["arch"]] = cfg
        # only the drawn architecture's conditional parameters exist in Optuna
        per = [k for k in trial.params if "." in k]
        assert all(k.startswith(cfg["arch"] + ".") for k in per)
        study.tell(trial, 0.0)
    assert set(seen) == set(space.archs)
    assert seen["unet3d"]["patch"] == [32, 32, 16] and seen["unet3d"]["base_channels"] == 2
    assert "patch" not in seen["hybrid"] and seen["hybrid"]["base_channels"] == 4


def test_budget_overrides_and_iteration_budget():
    space = load_space("hybrid")
    params, _ = space.space_for(space.budget("smoke"))
    assert params["base_channels"].args == (4, 8) and params["batch_size"].value == 2
    assert space.params["base_channels"].args == (8, 16, 32)  # the top level is untouched
    b = space.budget("500")
    assert (b.iterations, b.eval_every, b.spacing) == (500, 50, "auto")
    assert b.eval_every <= b.grace_period <= 500
    with pytest.raises(ConfigError, match="no budget 'huge'.*smoke, demo, cpu, full"):
        space.budget("huge")


def test_train_config_kwargs_resolves_switch_inputs_and_seed():
    kw = train_config_kwargs({"arch": "hybrid", "lr": 1e-3, "switch_step": 0.75,
                              "inputs": "all", "base_channels": 8, "arch.x": 1},
                             phase="portal", all_phases=["pre", "arterial", "portal"],
                             iterations=200, eval_every=50, seed=7)
    assert kw["switch_step"] == 150 and kw["phases"] == ("portal", "pre", "arterial")
    assert kw["iterations"] == 200 and kw["seed"] == 7 and "arch.x" not in kw
    kw = train_config_kwargs({"arch": "unet2d", "switch_step": "never"}, phase="arterial",
                             all_phases=["arterial"], iterations=10, eval_every=5, seed=0)
    assert kw["switch_step"] is None and kw["phases"] == ("arterial",)
    assert searched_params({"arch": "a", "hybrid.base_channels": 4, "_x": 1}) == {"arch": "a"}


@pytest.mark.parametrize("mutate, key, form", [
    (lambda d: d.update(colour="red"), "unknown key", "accepted: description"),
    (lambda d: d["params"].update(lerning_rate=0.1), "unknown parameter 'lerning_rate'",
     "known parameters: arch, lr"),
    (lambda d: d["params"].update(lr={"loguniform": [0, 1]}), "params.lr", "0 < low"),
    (lambda d: d["params"].update(lr={"lognormal": [1, 2]}), "unknown distribution",
     "accepted forms"),
    (lambda d: d["params"].update(lr={"uniform": [1, 2], "choice": [1]}), "params.lr",
     "exactly one key"),
    (lambda d: d["params"].update(loss={"uniform": [0, 1]}), "params.loss", "not numeric"),
    (lambda d: d["params"].update(loss={"choice": ["sqdice", "focal"]}), "'focal'",
     "sqdice, dice, bce"),
    (lambda d: d["params"].update(base_channels={"uniform": [4, 8]}), "base_channels",
     "int: \\[low, high\\]"),
    (lambda d: d["params"].update(switch_step=2.0), "switch_step", "fraction"),
    (lambda d: d["params"].update(arch="resnet"), "'resnet'", "unet3d, simplified3d, unet2d, hybrid"),
    (lambda d: d["params"].pop("arch"), "'arch' is required", "choice"),
    (lambda d: d["budgets"]["smoke"].pop("grid"), "budgets.smoke", "either grid.*or spacing"),
    (lambda d: d["budgets"]["smoke"].update(spacing="auto"), "budgets.smoke",
     "either grid.*or spacing"),
    (lambda d: d["budgets"]["smoke"].pop("grid") and d["budgets"]["smoke"].update(
        spacing=[1.0, -2, "auto"]), "budgets.smoke.spacing'", "auto or \\[x, y, z\\]"),
    (lambda d: d["budgets"]["smoke"].update(grid=[32, 32]), "budgets.smoke.grid'", "\\[X, Y, Z\\]"),
    (lambda d: d["budgets"]["smoke"].update(eval_every=50), "eval_every", "exceeds"),
    (lambda d: d["budgets"]["smoke"].update(reduction_factor=1), "reduction_factor", ">= 2"),
    (lambda d: d["budgets"]["smoke"].update(trails=3), "unknown key", "trials"),
    (lambda d: d.update(budgets={}), "budgets", "at least one"),
    (lambda d: d.update(fake={"sleep": 1}), "'fake'", "trainable: fake"),
    (lambda d: d.update(resources={"hybrid": {"cpu": -1}}), "resources.hybrid.cpu'", ">= 0"),
    (lambda d: d.update(resources={"hybrid": {"tpu": 1}}), "unknown key", "cpu, gpu"),
    (lambda d: d.update(per_arch={"vnet": {}}), "per_arch", "unknown architecture 'vnet'"),
    (lambda d: d.update(trainable="torch"), "trainable", "engine, fake"),
    (lambda d: d["budgets"]["smoke"].update(grace_period=30), "budgets.smoke.grace_period'",
     "30 exceeds iterations 20"),
    (lambda d: d["params"].update(loss={"choice": []}), "params.loss'", "at least one value"),
    (lambda d: d["params"].update(loss={"choice": ["dice", "bce", "dice"]}), "params.loss'",
     "choice values repeat"),
    (lambda d: d["params"].update(base_channels={"int": [16, 8]}), "params.base_channels'",
     "low <= high"),
    (lambda d: d["params"].update(base_channels={"int": [8, 16, 0]}), "params.base_channels'",
     "step >= 1"),
    (lambda d: d.update(per_arch={"unet2d": {"arch": "hybrid"}}), "per_arch.unet2d'",
     "'arch' cannot be set per architecture"),
    (lambda d: d.update(seed="zero"), "'seed'", "expected an integer, got 'zero'"),
    (lambda d: d.update(seed=True), "'seed'", "expected an integer, got True"),
    (lambda d: d.update(phases=[]), "'phases'", "list of phase names"),
    (lambda d: d.update(phases=["arterial", 3]), "'phases'", "list of phase names"),
    (lambda d: d["budgets"]["smoke"].update(phases=[""]), "budgets.smoke.phases'",
     "list of phase names"),
])
def test_yaml_mistakes_name_file_key_and_forms(tmp_path, mutate, key, form):
    d = _base()
    mutate(d)
    path = _write(tmp_path, d)
    with pytest.raises(ConfigError) as info:
        load_space(path)
    msg = str(info.value)
    assert str(path) in msg
    assert key in msg or re.search(key, msg), msg
    assert re.search(form, msg), msg


def test_not_yaml_and_unknown_names(tmp_path):
    bad = _write(tmp_path, "params: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_space(bad)
    with pytest.raises(ConfigError, match="no search space of that name.*known: all"):
        load_space("nonexistent")
    with pytest.raises(ConfigError, match="no such file"):
        load_space(tmp_path / "missing.yaml")
