"""The searchable parameters: names, accepted values, and the mapping to ``TrainConfig``.

``PARAMS`` lists every key allowed under ``params:`` / ``per_arch:`` in a search space.
``train_config_kwargs(params, ...)`` turns one sampled configuration into keyword
arguments for ``study.train.engine.TrainConfig``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from study.errors import ConfigError
from study.names import ARCH_NAMES as ARCHS
from study.names import AUGMENT_LEVELS, LOSSES
from study.names import LRDEHL_VARIANTS as LRDEHL
from study.tune.dists import Dist


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _arch(v):
    if v not in ARCHS:
        return f"one of {', '.join(ARCHS)}"


def _pos(v):
    if not (_num(v) and v > 0):
        return "a positive number"


def _nonneg(v):
    if not (_num(v) and v >= 0):
        return "a number >= 0"


def _fraction(v):
    if not (_num(v) and 0 <= v <= 1):
        return "a number in [0, 1]"


def _pos_int_or_null(v):
    if not (v is None or (_int(v) and v >= 1)):
        return "an integer >= 1 or null"


def _pos_int(v):
    if not (_int(v) and v >= 1):
        return "an integer >= 1"


def _among(options):
    def check(v):
        if v not in options:
            return f"one of {', '.join(options)}"

    return check


def _switch(v):
    if v in ("never", None):
        return None
    if not (_num(v) and 0 <= v <= 1):
        return "'never' or a fraction of the budget in [0, 1]"


def _inputs(v):
    if not (isinstance(v, str) and v and all(p for p in v.split("+"))):
        return "'single' (the study phase), 'all' (every phase) or names joined by '+'"


def _patch(v):
    if not (isinstance(v, list) and len(v) == 3 and all(_int(p) and p >= 1 for p in v)):
        return "a list of three positive integers"


# name -> (value check returning None or the accepted form, numeric distributions allowed)
PARAMS: dict[str, tuple[Callable, bool]] = {
    "arch": (_arch, False),
    "lr": (_pos, True),
    "l2": (_nonneg, True),
    "base_channels": (_pos_int_or_null, True),
    "loss": (_among(LOSSES), False),
    "lrdehl": (_among(LRDEHL), False),
    "switch_step": (_switch, True),
    "lr_after_switch": (_pos, True),
    "batch_size": (_pos_int, True),
    "inputs": (_inputs, False),
    "empty_fraction": (_fraction, True),
    "lr_halve_every": (_pos_int_or_null, True),
    "patch": (_patch, False),
    "augment": (_among(AUGMENT_LEVELS), False),
}
INT_PARAMS = {"base_channels", "batch_size", "lr_halve_every"}


def check_param(name: str, dist: Dist, where: str) -> None:
    """Raise ConfigError naming ``where`` when ``name`` or its values are not accepted."""
    if name not in PARAMS:
        raise ConfigError(
            f"{where}: unknown parameter {name!r}; known parameters: {', '.join(PARAMS)}"
        )
    check, numeric = PARAMS[name]
    if dist.kind in ("loguniform", "uniform", "int") and not numeric:
        raise ConfigError(f"{where}: {name} is not numeric; use a constant or {{choice: [...]}}")
    if dist.kind in ("loguniform", "uniform") and name in INT_PARAMS:
        raise ConfigError(f"{where}: {name} is an integer; use {{int: [low, high]}} or choice")
    if name == "switch_step" and dist.kind == "int":
        raise ConfigError(f"{where}: switch_step is a fraction; use uniform or choice")
    for v in dist.values():
        why = check(v)
        if why:
            raise ConfigError(f"{where}: value {v!r} is not accepted; {name} must be {why}")


def resolve_inputs(inputs: str, phase: str, all_phases: list[str]) -> tuple[str, ...]:
    """The input phases (channels) for a study of ``phase``; the study phase comes first."""
    if inputs == "single":
        return (phase,)
    names = list(all_phases) if inputs == "all" else inputs.split("+")
    unknown = [p for p in names if p not in all_phases]
    if unknown:
        raise ConfigError(
            f"parameter inputs={inputs!r}: phase(s) {', '.join(unknown)} not in the data set "
            f"(phases: {', '.join(all_phases)})"
        )
    return (phase, *[p for p in names if p != phase])


def trial_index(trial_dir) -> int:
    """The counter of a trial folder named ``trial_0003_5c1e0a2b`` (`trainable.trial_dirname`);
    0 if the name has none."""
    import re
    from pathlib import Path

    m = re.match(r"trial_(\d+)_", Path(trial_dir or "").name)
    return int(m.group(1)) if m else 0


def trial_seed(study_seed: int, index: int, offset: int = 0) -> int:
    """The training seed of trial number ``index`` (its folder counter) of a study: the one
    formula the trainable and the overhead replay share."""
    return int(study_seed) * 1000 + int(offset) + int(index)


def train_config_kwargs(params: dict, *, phase: str, all_phases: list[str], iterations: int,
                        eval_every: int, seed: int) -> dict:
    """Keyword arguments for ``TrainConfig`` from one sampled set of ``params``."""
    kw: dict = {"iterations": int(iterations), "eval_every": int(eval_every), "seed": int(seed)}
    for name, value in params.items():
        if name not in PARAMS or name == "inputs":
            continue
        if name == "switch_step":
            kw[name] = None if value in ("never", None) else int(round(float(value) * iterations))
        elif name == "patch":
            kw[name] = tuple(int(p) for p in value)
        elif name in INT_PARAMS and value is not None:
            kw[name] = int(value)
        else:
            kw[name] = value
    kw["phases"] = resolve_inputs(params.get("inputs", "single"), phase, all_phases)
    return kw
