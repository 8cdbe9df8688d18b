"""Tuning, the only package that imports Ray: takes a search space, a budget and a Prepared
data set, gives a run directory (trials and metrics tables, Optuna storage, best checkpoints).

`run_study(StudySettings(...))` is what `study.launch` calls; the names load lazily so that
importing one module of the package (e.g. `study.tune.space`) does not start Ray's imports.
See docs/CONTRACTS.md ("study/tune").
"""

from __future__ import annotations

__all__ = ["StudySettings", "run_study"]


def __getattr__(name: str):
    if name in __all__:
        from study.tune import study

        return getattr(study, name)
    raise AttributeError(f"module 'study.tune' has no attribute {name!r}")
