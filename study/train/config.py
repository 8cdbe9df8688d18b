"""`TrainConfig`: everything one training run needs, JSON round-trippable.

Exposed by `study.train`; see docs/CONTRACTS.md ("study/train").
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from study.errors import ConfigError
from study.names import AUGMENT_LEVELS, LOSSES, LRDEHL_VARIANTS

#: The reference schedule: lr halved every 5000 of 40000 iterations.
REFERENCE_HALVE_EVERY = 5000
REFERENCE_ITERATIONS = 40000


@dataclass
class TrainConfig:
    arch: str = "hybrid"
    phases: tuple[str, ...] = ("arterial",)
    base_channels: int | None = None  # None = the architecture's default
    lr: float = 1e-3
    l2: float = 5e-4  # strength of the L2 term l2/2 * sum(w^2) over conv/linear weights
    loss: str = "sqdice"
    lrdehl: str = "mae"
    switch_step: int | None = None  # iteration at which the loss becomes LRDEHL
    lr_after_switch: float = 1.0  # lr factor applied from switch_step on
    iterations: int = 40000
    eval_every: int = 1000
    batch_size: int = 4
    lr_halve_every: int | None = None  # None = 5000 scaled to budget (5000*iterations/40000,
    #                                    unrounded: 7 halvings at any budget, as the report)
    patch: tuple[int, int, int] = (64, 64, 64)
    # 3D: share of tumor-free patches; 2D/2.5D: share of the tumor-free slices kept;
    # None = the kind's default (3D 0.5 = the report's balance, 2D/2.5D 1.0 = every slice)
    empty_fraction: float | None = None
    seed: int = 0
    # training-time augmentation level (study.data.augment.LEVELS); "none" = no augmentation
    augment: str = "none"
    num_workers: int = 0
    device: str | None = None  # None = cuda if available, else cpu
    # extensions beyond the contract (defaults keep the contract's behaviour)
    overlap: float = 0.5  # sliding-window overlap for 3D inference
    eval_batch_size: int = 8  # windows (3D) / slices (2D, 2.5D) per inference forward
    threshold: float = 0.5
    extra: dict = field(default_factory=dict)  # free-form provenance (ignored by train)

    def __post_init__(self) -> None:
        """The one place values are normalised: phases and patch become tuples (a single
        phase name is a 1-tuple); `check` only checks."""
        if isinstance(self.phases, str):
            self.phases = (self.phases,)
        self.phases = tuple(self.phases)
        try:
            self.patch = tuple(int(p) for p in self.patch)
        except (TypeError, ValueError):
            pass  # check() names the key

    # ------------------------------------------------------------------ derived values
    @property
    def halve_every(self) -> float:
        """Effective lr halving period in iterations: ``lr_halve_every``, else the reference
        5000 of 40000 scaled to the budget, unrounded (20 iterations: 2.5)."""
        if self.lr_halve_every is not None:
            return int(self.lr_halve_every)
        return REFERENCE_HALVE_EVERY * self.iterations / REFERENCE_ITERATIONS

    def halvings(self, step: int) -> int:
        """Number of halvings applied at 0-based ``step``. Scaled: ``floor(8 * step /
        iterations)`` in exact integer arithmetic, so every budget of at least 8 iterations
        keeps the report's 7 halvings (a rounded period would give 9 at 20 iterations)."""
        if self.lr_halve_every is not None:
            return int(step) // int(self.lr_halve_every)
        return (int(step) * REFERENCE_ITERATIONS) // (REFERENCE_HALVE_EVERY * int(self.iterations))

    def lr_at(self, step: int) -> float:
        """Learning rate used for the update at 0-based ``step``."""
        lr = self.lr * 0.5 ** self.halvings(step)
        if self.switch_step is not None and step >= self.switch_step:
            lr *= self.lr_after_switch
        return lr

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["phases"] = list(self.phases)
        d["patch"] = list(self.patch)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"train config: unknown key(s) {', '.join(unknown)}; "
                f"known keys are {', '.join(sorted(names))}"
            )
        return cls(**d).check()

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls.from_dict(json.loads(text))

    # ------------------------------------------------------------------ validation
    def check(self, phases_available=None) -> TrainConfig:
        """Raise ConfigError naming the key when a value is out of range; returns self
        unchanged (values are normalised once, in ``__post_init__``)."""
        from study.models import MODELS

        if self.arch not in MODELS:
            self._bad("arch", f"unknown architecture; use one of {', '.join(sorted(MODELS))}")
        self._check_phases(phases_available)
        self._check_optimisation()
        self._check_sampling(MODELS[self.arch].kind)
        return self

    def _bad(self, key: str, why: str):
        raise ConfigError(f"train config key {key!r} = {getattr(self, key)!r}: {why}")

    def _check_phases(self, available) -> None:
        if not self.phases:
            self._bad("phases", "give at least one phase name")
        if len(set(self.phases)) != len(self.phases):
            self._bad("phases", "a phase is listed twice")
        missing = [p for p in self.phases if available is not None and p not in available]
        if missing:
            self._bad("phases", f"not in the data set; available: {', '.join(available)}")

    def _check_optimisation(self) -> None:
        bad = self._bad
        if self.base_channels is not None and int(self.base_channels) < 1:
            bad("base_channels", "must be >= 1 (or None for the default)")
        for key in ("lr", "lr_after_switch"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                bad(key, "must be a positive number")
        if not (math.isfinite(self.l2) and self.l2 >= 0):
            bad("l2", "must be >= 0")
        if self.loss not in LOSSES:
            bad("loss", f"use one of {', '.join(LOSSES)}")
        if self.lrdehl not in LRDEHL_VARIANTS:
            bad("lrdehl", f"use one of {', '.join(LRDEHL_VARIANTS)}")
        for key in ("iterations", "eval_every", "batch_size", "eval_batch_size"):
            if int(getattr(self, key)) < 1:
                bad(key, "must be >= 1")
        if self.switch_step is not None and int(self.switch_step) < 0:
            bad("switch_step", "must be >= 0 (or None for no switch)")
        if self.lr_halve_every is not None and int(self.lr_halve_every) < 1:
            bad("lr_halve_every", "must be >= 1 (or None to scale 5000 to the budget)")

    def _check_sampling(self, kind: str) -> None:
        bad = self._bad
        if not isinstance(self.patch, tuple) or len(self.patch) != 3 or min(self.patch) < 1:
            bad("patch", "must be three positive integers (X, Y, Z)")
        if self.empty_fraction is not None:
            if not 0.0 <= self.empty_fraction <= 1.0:
                bad("empty_fraction", "must be in [0, 1] (3D: share of tumor-free patches; "
                    "2D/2.5D: fraction of tumor-free slices kept), or None for the default")
            if kind == "3d" and self.empty_fraction >= 1.0:
                bad("empty_fraction", "for 3D patches it is the share of tumor-free patches: "
                    "1 leaves no tumor-centred patch; use a value below 1 (0.5 = balanced)")
        if not 0.0 <= self.overlap < 1.0:
            bad("overlap", "must be in [0, 1)")
        if not 0.0 < self.threshold < 1.0:
            bad("threshold", "must be in (0, 1)")
        if int(self.num_workers) < 0:
            bad("num_workers", "must be >= 0")
        if self.augment not in AUGMENT_LEVELS:
            bad("augment", f"use one of {', '.join(AUGMENT_LEVELS)}")
        if self.device is not None and str(self.device).split(":")[0] not in ("cpu", "cuda"):
            bad("device", "use 'cpu', 'cuda', 'cuda:N' or None")
