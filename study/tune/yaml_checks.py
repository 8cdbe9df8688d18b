"""Checks shared by the search-space readers: each mistake is a ConfigError naming the file
and the key (``PATH: key 'budgets.full.trials'``), what was expected and what was found."""

from __future__ import annotations

from pathlib import Path

from study.errors import ConfigError


def key(path: Path, name: str) -> str:
    """How an error names a key of a YAML file."""
    return f"{path}: key '{name}'"


def mapping(v, where: str, what: str = "a mapping") -> dict:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected {what}, got {v!r}")
    return v


def unknown(d: dict, known, where: str) -> None:
    extra = [k for k in d if k not in known]
    if extra:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(str, extra))}; accepted: {', '.join(known)}"
        )


def integer(v, where: str, low: int = 1) -> int:
    if not (isinstance(v, int) and not isinstance(v, bool) and v >= low):
        raise ConfigError(f"{where}: expected an integer >= {low}, got {v!r}")
    return v
