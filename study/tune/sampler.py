"""A search space's ``sampler:``: read and checked (`parse_sampler`, no Optuna import) and
built into an Optuna sampler (`make_sampler`).

``tpe`` (the default), ``random``, or ``{name: tpe, n_startup_trials: 10, multivariate:
false, group: false}``; at the top of a space or in one budget (the budget's wins).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from study.errors import ConfigError
from study.tune.yaml_checks import integer, key, mapping, unknown

SAMPLERS = {"tpe": ("n_startup_trials", "multivariate", "group"), "random": ()}
#: the sampler of a space that names none (Optuna's TPE defaults)
DEFAULT_SAMPLER = {"name": "tpe", "n_startup_trials": 10, "multivariate": False, "group": False}


def parse_sampler(raw, path: Path, name_of: str) -> dict:
    """``tpe`` / ``random`` or ``{name: tpe, n_startup_trials: N, multivariate: B,
    group: B}`` -> a full mapping (unnamed options take `DEFAULT_SAMPLER`'s values)."""
    def where_(sub: str = "") -> str:
        return key(path, f"{name_of}.{sub}" if sub else name_of)

    where = where_()
    if isinstance(raw, str):
        raw = {"name": raw}
    raw = mapping(raw, where, "tpe, random or a mapping {name: tpe, n_startup_trials: 10, "
                               "multivariate: false, group: false}")
    name = raw.get("name", "tpe")
    if name not in SAMPLERS:
        raise ConfigError(f"{where_('name')}: use one of {', '.join(SAMPLERS)}, got {name!r}")
    unknown(raw, ("name", *SAMPLERS[name]), where)
    if name == "random":
        return {"name": "random"}
    out = {**DEFAULT_SAMPLER, **raw}
    out["n_startup_trials"] = integer(out["n_startup_trials"], where_("n_startup_trials"), 0)
    for flag in ("multivariate", "group"):
        if not isinstance(out[flag], bool):
            raise ConfigError(f"{where_(flag)}: expected true or false, got {out[flag]!r}")
    if out["group"] and not out["multivariate"]:
        raise ConfigError(f"{where_('group')}: grouped TPE needs multivariate: true")
    return out


def make_sampler(spec: dict | None, seed: int):
    """Optuna sampler of a space's ``sampler:`` (as `parse_sampler` returns it); None = TPE
    with Optuna's defaults. Seeded by the study seed."""
    import optuna

    spec = dict(spec or {"name": "tpe"})
    if spec["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=int(spec.get("n_startup_trials", 10)),
            multivariate=bool(spec.get("multivariate", False)),
            group=bool(spec.get("group", False)))
