"""Search-space distributions: parsing from YAML values and sampling with Optuna.

A parameter in a search-space YAML is either a constant (a number, string, bool, null or
list) or a one-key mapping naming a distribution::

    lr: {loguniform: [1.0e-5, 1.0e-2]}
    dropout: {uniform: [0.0, 0.5]}
    base_channels: {int: [8, 32]}          # inclusive; {int: [8, 32, 8]} adds a step
    loss: {choice: [sqdice, dice]}

No Ray import here: the tuner turns these into an Optuna define-by-run function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from study.errors import ConfigError

KINDS = ("loguniform", "uniform", "int", "choice")
FORMS = (
    "a constant (number, string, bool, null or list), "
    "{loguniform: [low, high]} with 0 < low < high, "
    "{uniform: [low, high]} with low < high, "
    "{int: [low, high]} or {int: [low, high, step]} (inclusive), "
    "{choice: [v1, v2, ...]} (scalars)"
)


@dataclass(frozen=True)
class Dist:
    """One parameter: ``kind`` is ``"fixed"`` or one of :data:`KINDS`."""

    kind: str
    args: tuple

    @property
    def fixed(self) -> bool:
        return self.kind == "fixed"

    @property
    def value(self) -> Any:
        """The constant (only for ``kind == "fixed"``)."""
        return self.args[0]

    def values(self) -> list:
        """Every value the user named (constant, choices or bounds) - for validation."""
        if self.kind == "fixed":
            return [self.args[0]]
        return list(self.args)

    def suggest(self, trial, name: str) -> Any:
        """Draw from an ``optuna.Trial`` (or Ray's captor, which has the same methods)."""
        if self.kind == "fixed":
            return self.args[0]
        if self.kind == "loguniform":
            return trial.suggest_float(name, self.args[0], self.args[1], log=True)
        if self.kind == "uniform":
            return trial.suggest_float(name, self.args[0], self.args[1])
        if self.kind == "int":
            step = self.args[2] if len(self.args) > 2 else 1
            return trial.suggest_int(name, self.args[0], self.args[1], step=step)
        return trial.suggest_categorical(name, list(self.args))

    def to_yaml(self) -> Any:
        return self.args[0] if self.kind == "fixed" else {self.kind: list(self.args)}


def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_dist(raw: Any, where: str) -> Dist:
    """Parse one YAML value; ``where`` ("file: key 'params.lr'") prefixes errors."""

    def bad(why: str):
        raise ConfigError(f"{where}: {why}; accepted forms: {FORMS}")

    if not isinstance(raw, dict):
        return _fixed(raw, bad)
    if len(raw) != 1:
        bad(f"a distribution is a mapping with exactly one key, got {sorted(raw)!r}")
    (kind, args), = raw.items()
    if kind not in KINDS:
        bad(f"unknown distribution {kind!r}")
    if not isinstance(args, list):
        bad(f"{kind} takes a list, got {args!r}")
    check = {"choice": _choice, "int": _int_range}.get(kind, _float_range)
    return Dist(kind, check(kind, args, bad))


def _fixed(raw, bad) -> Dist:
    if isinstance(raw, list):
        if not all(_is_scalar(v) for v in raw):
            bad(f"a constant list may hold only scalars, got {raw!r}")
        return Dist("fixed", (list(raw),))
    if not _is_scalar(raw):
        bad(f"unsupported value {raw!r}")
    return Dist("fixed", (raw,))


def _choice(kind: str, args: list, bad) -> tuple:
    if not args:
        bad("choice needs at least one value")
    if not all(_is_scalar(v) for v in args):
        bad(f"choice values must be scalars, got {args!r}")
    if len({repr(v) for v in args}) != len(args):
        bad(f"choice values repeat: {args!r}")
    return tuple(args)


def _int_range(kind: str, args: list, bad) -> tuple:
    if len(args) not in (2, 3) or not all(isinstance(v, int) and not isinstance(v, bool)
                                          for v in args):
        bad(f"int takes [low, high] or [low, high, step] integers, got {args!r}")
    if args[0] > args[1] or (len(args) == 3 and args[2] < 1):
        bad(f"int needs low <= high and step >= 1, got {args!r}")
    return tuple(args)


def _float_range(kind: str, args: list, bad) -> tuple:
    if len(args) != 2 or not all(_num(v) for v in args):
        bad(f"{kind} takes [low, high] numbers, got {args!r}")
    lo, hi = float(args[0]), float(args[1])
    if not lo < hi:
        bad(f"{kind} needs low < high, got {args!r}")
    if kind == "loguniform" and lo <= 0:
        bad(f"loguniform needs 0 < low, got {args!r}")
    return (lo, hi)
