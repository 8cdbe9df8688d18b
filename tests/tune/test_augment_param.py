"""The ``augment`` parameter (issue 22) through the tuning layer: every shipped space searches
it, the cpu budgets start from ``default``, a drawn configuration becomes a TrainConfig that
augments, and the importances see it (no Ray cluster: Optuna in memory)."""

from __future__ import annotations

import optuna
import pytest

from study.errors import ConfigError
from study.names import AUGMENT_LEVELS
from study.train.config import TrainConfig
from study.tune.dists import Dist
from study.tune.params import check_param, train_config_kwargs
from study.tune.searcher import DefineByRun, searched_params
from study.tune.space import load_space

SEARCHING = ("all", "hybrid", "unet2d", "unet3d", "simplified3d")


@pytest.mark.parametrize("name", SEARCHING)
def test_every_shipped_space_searches_augment(name):
    space = load_space(name)
    for budget in space.budgets:
        params, _ = space.space_for(space.budget(budget))
        if (name, budget) == ("hybrid", "demo"):  # `make demo` on the phantom: pinned off
            assert params["augment"].value == "none"
            continue
        assert params["augment"].kind == "choice"
        assert tuple(params["augment"].values()) == AUGMENT_LEVELS
    points = space.start_points(space.budget("cpu"))
    assert points and all(p["augment"] == "default" for p in points)


def test_smoke_space_keeps_augment_off():
    space = load_space("smoke")
    params, _ = space.space_for(space.budget("smoke"))
    assert params["augment"].fixed and params["augment"].value == "none"


def test_bad_augment_value_is_a_config_error():
    with pytest.raises(ConfigError, match="augment must be one of none, light, default, heavy"):
        check_param("augment", Dist("choice", ("none", "strong")), "space.yaml: params.augment")
    with pytest.raises(ConfigError, match="augment is not numeric"):
        check_param("augment", Dist("uniform", (0.0, 1.0)), "space.yaml: params.augment")


def test_drawn_augment_reaches_the_train_config_and_the_importances():
    space = load_space("hybrid")
    params, per_arch = space.space_for(space.budget("cpu"))
    draw = DefineByRun(params, per_arch)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = draw(trial)
        kw = train_config_kwargs(searched_params(config), phase="arterial",
                                 all_phases=["arterial", "portal"], iterations=10,
                                 eval_every=5, seed=0)
        cfg = TrainConfig(**kw).check()
        assert cfg.augment == config["augment"] in AUGMENT_LEVELS
        seen.add(cfg.augment)
        # a value that depends on augment only, so the importances must rank it first
        study.tell(trial, AUGMENT_LEVELS.index(cfg.augment) / 3)
    assert len(seen) >= 3
    importances = optuna.importance.get_param_importances(study)
    assert next(iter(importances)) == "augment", importances


def test_warm_up_times_the_default_augmentation():
    """The projection's warm-up trains at ``default`` where augment is searched (the loader's
    cost is part of each update), else at the fixed value."""
    from study.tune.warmup import typical

    assert typical(Dist("choice", tuple(AUGMENT_LEVELS)), "augment") == "default"
    assert typical(Dist("choice", ("none", "light")), "augment") == "none"
    assert typical(Dist("fixed", ("heavy",)), "augment") == "heavy"
    assert typical(Dist("choice", (16, None)), "base_channels") == 16


@pytest.mark.parametrize("resources, augment, cuda, workers", [
    ({"CPU": 3.0, "GPU": 0.25}, "default", True, 2),  # GPU trial with 3 CPUs: 2 loader workers
    ({"CPU": 1.0, "GPU": 0.25}, "heavy", True, 0),  # the shipped 1 CPU: in-process
    ({"CPU": 3.0, "GPU": 0.25}, "none", True, 0),  # nothing to do beside the GPU
    ({"CPU": 3.0, "GPU": 0.25}, "default", False, 0),  # reserved a GPU, none there
    ({"CPU": 2.0}, "default", True, 0),  # CPU trial: the loader is far ahead in-process
    ({}, "default", True, 0),  # no reservation known (outside Tune)
])
def test_loader_workers_only_beside_a_gpu(resources, augment, cuda, workers):
    from study.tune.trainable import loader_workers

    assert loader_workers(resources, augment, cuda) == workers
