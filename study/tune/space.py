"""Search spaces: ``search_spaces/NAME.yaml`` loaded and validated into dataclasses.

Top-level keys (unknown keys are errors)::

    description: text
    trainable: engine            # engine (default) | fake (tests: study/tune/fake.py)
    phases: [arterial, portal]   # default phases to study; omitted = every data-set phase
    seed: 0
    max_failures: 0              # Ray FailureConfig: retries of a crashing trial
    params: {NAME: constant or distribution, ...}     # see study/tune/params.py
    per_arch: {ARCH: {NAME: ..., ...}}   # parameters that exist only for that architecture
    resources: {ARCH or default: {cpu: 1, gpu: 0.25}}
    fake: {...}                  # options of the fake trainable (trainable: fake only)
    budgets: {NAME: {iterations, eval_every, grid, trials, max_concurrent, grace_period,
                     reduction_factor, phases, params, per_arch, start_with}}
    start_with: [{arch: unet2d, lr: 1.0e-3, ...}, ...]   # evaluated first (Optuna's
                                 # enqueue_trial), before TPE; a budget's own start_with
                                 # replaces it; unnamed searched parameters are sampled
    sampler: tpe                 # tpe (default) | random, or a mapping: {name: tpe,
                                 # n_startup_trials: 10, multivariate: false, group: false};
                                 # a budget's own sampler replaces it
    # per budget also: early_stopping: asha (default) | none (every trial runs the budget)

``params.arch`` is required (a constant, or a choice to search the architecture itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from study.errors import ConfigError
from study.tune.dists import Dist, parse_dist
from study.tune.params import ARCHS, check_param
from study.tune.sampler import DEFAULT_SAMPLER, parse_sampler
from study.tune.yaml_checks import integer as _int
from study.tune.yaml_checks import key as _k
from study.tune.yaml_checks import mapping as _mapping
from study.tune.yaml_checks import unknown as _unknown

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
TOP_KEYS = ("description", "trainable", "phases", "seed", "max_failures", "params", "per_arch",
            "resources", "fake", "budgets", "start_with", "sampler")
BUDGET_KEYS = ("iterations", "eval_every", "grid", "spacing", "trials", "max_concurrent", "grace_period",
               "reduction_factor", "phases", "params", "per_arch", "start_with", "sampler",
               "early_stopping")
FAKE_KEYS = ("misleading", "sleep", "crash_lr_above", "nan_lr_below", "log_starts", "replay",
             "checkpoints", "cost")
EARLY_STOPPING = ("asha", "none")
RESOURCE_KEYS = ("cpu", "gpu")
TRAINABLES = ("engine", "fake")


@dataclass(frozen=True)
class Budget:
    name: str
    iterations: int
    eval_every: int
    grid: tuple[int, int, int] | None  # one shape for every case, or None: `spacing`
    trials: int
    max_concurrent: int
    grace_period: int
    reduction_factor: int
    phases: tuple[str, ...] | None = None
    sampler: dict | None = None  # None = the space's sampler
    early_stopping: str = "asha"  # or "none": every trial runs the full budget
    spacing: str | tuple | None = None  # "auto" or (x, y, z) mm / "auto" entries

    @property
    def geometry(self) -> dict:
        """What `study.data.prepare` takes: ``{"grid": ...}`` or ``{"spacing": ...}``."""
        from study.data.spacing import geometry

        return geometry(self.grid, self.spacing)

    @property
    def geometry_text(self) -> str:
        if self.spacing is None:
            return f"grid {list(self.grid)}"
        sp = self.spacing if isinstance(self.spacing, str) else list(self.spacing)
        return f"spacing {sp}"


@dataclass(frozen=True)
class SearchSpace:
    name: str
    path: Path
    text: str  # the YAML as read (provenance)
    description: str = ""
    trainable: str = "engine"
    phases: tuple[str, ...] | None = None
    seed: int = 0
    max_failures: int = 0
    params: dict[str, Dist] = field(default_factory=dict)
    per_arch: dict[str, dict[str, Dist]] = field(default_factory=dict)
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    fake: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, Budget] = field(default_factory=dict)
    budget_params: dict[str, dict] = field(default_factory=dict)  # budget -> (params, per_arch)
    start_with: tuple = ()  # configurations to evaluate first (dicts of plain names)
    budget_start: dict[str, tuple] = field(default_factory=dict)  # budget -> its own start_with
    sampler: dict = field(default_factory=lambda: dict(DEFAULT_SAMPLER))

    def sampler_for(self, budget: Budget) -> dict:
        """The budget's sampler, else the space's (normalised: see `parse_sampler`)."""
        return dict(budget.sampler or self.sampler)

    @property
    def archs(self) -> list[str]:
        arch = self.params["arch"]
        return [arch.value] if arch.fixed else list(arch.args)

    def resources_for(self, arch: str) -> dict[str, float]:
        res = {"cpu": 1.0, "gpu": 0.0}
        res.update(self.resources.get("default", {}))
        res.update(self.resources.get(arch, {}))
        return res

    def budget(self, spec: str | int) -> Budget:
        """A named preset, or an iteration count (``--budget 500``) scaled from ``full``."""
        if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
            n = int(spec)
            if n < 1:
                raise ConfigError(f"--budget {spec}: iterations must be >= 1")
            base = self.budgets.get("full") or next(iter(self.budgets.values()))
            eval_every = max(1, min(base.eval_every, n // 10 or 1))
            scale = n / base.iterations
            grace = max(eval_every, int(round(base.grace_period * scale)))
            return Budget(str(n), n, eval_every, base.grid, base.trials, base.max_concurrent,
                          min(grace, n), base.reduction_factor, base.phases, base.sampler,
                          base.early_stopping, base.spacing)
        if spec not in self.budgets:
            raise ConfigError(
                f"{self.path}: no budget {spec!r}; budgets in this space: "
                f"{', '.join(self.budgets)} (or give an iteration count, e.g. --budget 500)"
            )
        return self.budgets[spec]

    def start_points(self, budget: Budget) -> list[dict]:
        """The budget's start_with (else the space's), checked against the budget's
        parameters and named as Optuna knows them (``ARCH.NAME`` for per-arch ones)."""
        from study.tune.searcher import SWITCH_ONLY, switches

        params, per_arch = self.space_for(budget)
        key = f"budgets.{budget.name}.start_with" if budget.name in self.budget_start \
            else "start_with"
        points = []
        for i, entry in enumerate(self.budget_start.get(budget.name, self.start_with)):
            where = _k(self.path, f"{key}[{i}]")
            at = lambda name, i=i: _k(self.path, f"{key}[{i}].{name}")  # noqa: E731
            arch = entry.get("arch", params["arch"].value if params["arch"].fixed else None)
            if arch is None:
                raise ConfigError(f"{where}: name the architecture (arch: ...); the space "
                                  f"searches it")
            dists = {**params, **per_arch.get(arch, {})}
            point = {}
            for name, value in entry.items():
                if name not in dists:
                    raise ConfigError(f"{where}: {name!r} is not a parameter of {arch} in "
                                      f"this space ({', '.join(sorted(dists))})")
                dist = dists[name]
                if not _admits(dist, value):
                    raise ConfigError(f"{at(name)}: {value!r} is outside "
                                      f"{dist.to_yaml()!r}")
                if dist.fixed or (name in SWITCH_ONLY
                                  and not switches(entry.get("switch_step", "never"))):
                    continue  # not drawn for this point: nothing to fix
                optuna_name = f"{arch}.{name}" if name in per_arch.get(arch, {}) else name
                point[optuna_name] = value
            points.append(point)
        return points

    def space_for(self, budget: Budget) -> tuple[dict[str, Dist], dict[str, dict[str, Dist]]]:
        """Parameters and per-architecture parameters with the budget's overrides applied."""
        params = dict(self.params)
        per_arch = {a: dict(p) for a, p in self.per_arch.items()}
        over_p, over_a = self.budget_params.get(budget.name, ({}, {}))
        params.update(over_p)
        for arch, p in over_a.items():
            per_arch.setdefault(arch, {}).update(p)
        return params, per_arch


def resolve_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise ConfigError(f"--space {name_or_path}: no such file")
        return p.resolve()
    candidate = SPACES_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = sorted(q.stem for q in SPACES_DIR.glob("*.yaml"))
        raise ConfigError(
            f"--space {name_or_path}: no search space of that name in {SPACES_DIR}; "
            f"known: {', '.join(known)} (or give a path to a .yaml file)"
        )
    return candidate


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Load and validate a search space; every mistake is a ConfigError naming file and key."""
    path = resolve_path(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_space(raw, path, text)


def _phases(v, where: str) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = [v]
    if not (isinstance(v, list) and v and all(isinstance(p, str) and p for p in v)):
        raise ConfigError(f"{where}: expected a list of phase names, e.g. [arterial, portal]")
    return tuple(v)


def _params(raw, path: Path, key: str) -> dict[str, Dist]:
    out = {}
    for name, value in _mapping(raw or {}, _k(path, key)).items():
        where = _k(path, f"{key}.{name}")
        dist = parse_dist(value, where)
        check_param(str(name), dist, where)
        out[str(name)] = dist
    return out


def _per_arch(raw, path: Path, key: str) -> dict[str, dict[str, Dist]]:
    out = {}
    for arch, params in _mapping(raw or {}, _k(path, key)).items():
        if arch not in ARCHS:
            raise ConfigError(f"{_k(path, key)}: unknown architecture {arch!r}; use "
                              f"{', '.join(ARCHS)}")
        out[arch] = _params(params, path, f"{key}.{arch}")
        if "arch" in out[arch]:
            raise ConfigError(f"{_k(path, key + '.' + arch)}: 'arch' cannot be set per "
                              f"architecture")
    return out


def _admits(dist: Dist, value) -> bool:
    """Whether a start_with value is one the distribution can produce."""
    if dist.kind in ("fixed", "choice"):
        return value in dist.values()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    lo, hi = dist.args[0], dist.args[1]
    if dist.kind == "int":
        step = dist.args[2] if len(dist.args) > 2 else 1
        return float(value).is_integer() and lo <= value <= hi and (value - lo) % step == 0
    return lo <= value <= hi


def _start_with(raw, where: str) -> tuple:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(e, dict) and e for e in raw):
        raise ConfigError(f"{where}: expected a list of parameter mappings, e.g. "
                          f"[{{arch: unet2d, lr: 1.0e-3}}]")
    return tuple(dict(e) for e in raw)


def _geometry(raw: dict, w) -> tuple:
    """A budget's ``grid: [X, Y, Z]`` or ``spacing: auto | [x, y, z]`` (exactly one)."""
    from study.data.spacing import parse_spacing

    if ("grid" in raw) == ("spacing" in raw):
        raise ConfigError(f"{w('grid')}: give either grid: [X, Y, Z] (one shape for every "
                          f"case) or spacing: auto | [x, y, z] (mm), exactly one of them")
    if "spacing" in raw:
        return None, parse_spacing(raw["spacing"], w("spacing"))
    grid = raw["grid"]
    if not (isinstance(grid, list) and len(grid) == 3
            and all(isinstance(g, int) and not isinstance(g, bool) and g >= 1 for g in grid)):
        raise ConfigError(f"{w('grid')}: expected [X, Y, Z] positive integers, got {grid!r}")
    return tuple(grid), None


def _budget(name: str, raw, path: Path) -> tuple[Budget, dict, dict]:
    pre = f"budgets.{name}"

    def w(key: str) -> str:
        return _k(path, f"{pre}.{key}")

    raw = _mapping(raw, _k(path, pre))
    _unknown(raw, BUDGET_KEYS, _k(path, pre))
    for key in ("iterations", "eval_every"):
        if key not in raw:
            raise ConfigError(f"{_k(path, pre)}: missing key {key!r}")
    grid, spacing = _geometry(raw, w)
    iterations = _int(raw["iterations"], w("iterations"))
    eval_every = _int(raw["eval_every"], w("eval_every"))
    if eval_every > iterations:
        raise ConfigError(f"{w('eval_every')}: {eval_every} exceeds iterations {iterations}")
    grace = _int(raw.get("grace_period", eval_every), w("grace_period"))
    if grace > iterations:
        raise ConfigError(f"{w('grace_period')}: {grace} exceeds iterations {iterations}")
    rf = _int(raw.get("reduction_factor", 2), w("reduction_factor"), low=2)
    stopping = raw.get("early_stopping", "asha")
    if stopping not in EARLY_STOPPING:
        raise ConfigError(f"{w('early_stopping')}: use asha (ASHA stops weak trials) or none "
                          f"(every trial runs the full budget), got {stopping!r}")
    budget = Budget(
        name=name, iterations=iterations, eval_every=eval_every, grid=grid, spacing=spacing,
        trials=_int(raw.get("trials", 8), w("trials")),
        max_concurrent=_int(raw.get("max_concurrent", 2), w("max_concurrent")),
        grace_period=grace, reduction_factor=rf,
        phases=_phases(raw.get("phases"), w("phases")),
        sampler=parse_sampler(raw["sampler"], path, f"{pre}.sampler") if "sampler" in raw
        else None,
        early_stopping=stopping,
    )
    return budget, _params(raw.get("params"), path, f"{pre}.params"), _per_arch(
        raw.get("per_arch"), path, f"{pre}.per_arch")


def _resources(raw, path: Path) -> dict[str, dict[str, float]]:
    """``resources:``: per architecture (or ``default``) CPUs and GPU fraction."""
    resources = {}
    for arch, res in _mapping(raw or {}, _k(path, "resources")).items():
        w = _k(path, f"resources.{arch}")
        if arch != "default" and arch not in ARCHS:
            raise ConfigError(f"{w}: unknown architecture; use default or {', '.join(ARCHS)}")
        _unknown(_mapping(res, w), RESOURCE_KEYS, w)
        for k, v in res.items():
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0):
                raise ConfigError(f"{_k(path, f'resources.{arch}.{k}')}: expected a number "
                                  f">= 0, got {v!r}")
        resources[arch] = {k: float(v) for k, v in res.items()}
    return resources


def _budgets(raw, path: Path) -> tuple[dict, dict, dict]:
    """``budgets:`` -> (name -> Budget, name -> (params, per_arch), name -> start_with)."""
    budgets_raw = _mapping(raw, _k(path, "budgets"),
                           "a mapping of budget presets (smoke, demo, full, ...)")
    if not budgets_raw:
        raise ConfigError(f"{_k(path, 'budgets')}: define at least one budget preset")
    budgets, budget_params, budget_start = {}, {}, {}
    for name, b in budgets_raw.items():
        budget, bp, ba = _budget(str(name), b, path)
        budgets[str(name)] = budget
        budget_params[str(name)] = (bp, ba)
        if isinstance(b, dict) and "start_with" in b:
            budget_start[str(name)] = _start_with(b["start_with"],
                                                  _k(path, f"budgets.{name}.start_with"))
    return budgets, budget_params, budget_start


def parse_space(raw: Any, path: Path, text: str = "") -> SearchSpace:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys ({', '.join(TOP_KEYS)})")
    _unknown(raw, TOP_KEYS, f"{path}")
    trainable = raw.get("trainable", "engine")
    if trainable not in TRAINABLES:
        raise ConfigError(f"{_k(path, 'trainable')}: use one of {', '.join(TRAINABLES)}")
    params = _params(raw.get("params"), path, "params")
    if "arch" not in params:
        raise ConfigError(f"{_k(path, 'params')}: 'arch' is required (e.g. arch: hybrid, or "
                          f"arch: {{choice: [hybrid, unet2d]}} to search it)")
    per_arch = _per_arch(raw.get("per_arch"), path, "per_arch")
    resources = _resources(raw.get("resources"), path)
    fake = _mapping(raw.get("fake") or {}, _k(path, "fake"))
    _unknown(fake, FAKE_KEYS, _k(path, "fake"))
    if fake and trainable != "fake":
        raise ConfigError(f"{_k(path, 'fake')}: only allowed with trainable: fake")
    budgets, budget_params, budget_start = _budgets(raw.get("budgets"), path)
    seed = raw.get("seed", 0)
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise ConfigError(f"{_k(path, 'seed')}: expected an integer, got {seed!r}")
    return SearchSpace(
        name=path.stem, path=path, text=text, description=str(raw.get("description") or ""),
        trainable=trainable, phases=_phases(raw.get("phases"), _k(path, "phases")),
        seed=seed, max_failures=_int(raw.get("max_failures", 0), _k(path, "max_failures"), 0),
        params=params, per_arch=per_arch, resources=resources, fake=dict(fake),
        budgets=budgets, budget_params=budget_params,
        start_with=_start_with(raw.get("start_with"), _k(path, "start_with")),
        budget_start=budget_start,
        sampler=parse_sampler(raw.get("sampler", "tpe"), path, "sampler"),
    )
