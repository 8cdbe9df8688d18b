"""The loss schedule: the base loss before ``switch_step``, LRDEHL from it on."""

from __future__ import annotations

import torch

from study.errors import ConfigError
from study.losses.registry import LOSS_FUNCTIONS
from study.names import LOSSES, LRDEHL_VARIANTS, lrdehl_loss_name


class LossSchedule:
    """Base loss before ``switch_step``, LRDEHL (``lrdehl`` variant) from it on.

    Never switches when ``switch_step`` is ``None`` or ``switch_step >= budget`` (a budget
    of ``None`` means unbounded). ``active(step)`` names the loss used at ``step`` (a key of
    ``LOSS_FUNCTIONS``); calling the schedule ``(logits, target, step)`` evaluates it.
    """

    def __init__(
        self,
        base: str = "sqdice",
        switch_step: int | None = None,
        lrdehl: str = "mae",
        budget: int | None = None,
    ):
        if base not in LOSSES:
            raise ConfigError(f"key 'loss' must be one of {', '.join(LOSSES)}, got {base!r}")
        if lrdehl not in LRDEHL_VARIANTS:
            raise ConfigError(f"key 'lrdehl' must be one of {', '.join(LRDEHL_VARIANTS)}, "
                              f"got {lrdehl!r}")
        if switch_step is not None and (not isinstance(switch_step, int) or switch_step < 0):
            raise ConfigError(
                f"key 'switch_step' must be a non-negative integer or None, got {switch_step!r}"
            )
        self.base = base
        self.lrdehl = lrdehl
        self.budget = budget
        never = switch_step is None or (budget is not None and switch_step >= budget)
        self.switch_step = None if never else switch_step

    def active(self, step: int) -> str:
        if self.switch_step is not None and step >= self.switch_step:
            return lrdehl_loss_name(self.lrdehl)
        return self.base

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, step: int) -> torch.Tensor:
        return LOSS_FUNCTIONS[self.active(step)](logits, target)

    def __repr__(self) -> str:
        return (
            f"LossSchedule(base={self.base!r}, switch_step={self.switch_step!r}, "
            f"lrdehl={self.lrdehl!r}, budget={self.budget!r})"
        )
