"""`TrialSettings`: the fixed settings every trial of a phase study gets (no Ray here).

Bound to the trainable with ``tune.with_parameters`` (``run`` in `study.tune.trainable`);
the sampled parameters come separately, in the trial config. A frozen dataclass, so a
misspelt setting is an AttributeError rather than a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class TrialSettings:
    trainable: str  # "engine" or "fake" (tests)
    phase: str
    all_phases: tuple[str, ...]  # the data set's phases (inputs resolve against them)
    iterations: int  # the full budget
    eval_every: int
    seed: int  # the study seed (trial seeds: `study.tune.params.trial_seed`)
    data: str  # data set folder
    grid: tuple[int, int, int] | None  # None: `spacing`
    cache_root: str
    val_cases: tuple[str, ...]
    label: str | None = None
    data_seed: int = 0  # split seed of `study.data.prepare`
    fake: dict = field(default_factory=dict)  # options of the fake trainable
    folds: tuple[dict, ...] = ()  # cross-validation folds (`study.tune.crossval`)
    seed_offset: int = 0  # added to trial seeds (fold models never share a search seed)
    spacing: str | tuple | None = None  # target spacing request (`study.data.spacing`)

    @property
    def geometry(self) -> dict:
        """What `study.data.prepare` takes: ``{"grid": ...}`` or ``{"spacing": ...}``."""
        from study.data.spacing import geometry

        return geometry(self.grid, self.spacing)

    def with_(self, **changes) -> TrialSettings:
        return replace(self, **changes)
