"""Provenance of a study: what ``study.json`` records about where and how it ran."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path


def versions() -> dict:
    import platform

    import optuna
    import ray
    import torch

    import study

    return {"python": platform.python_version(), "torch": torch.__version__,
            "ray": ray.__version__, "optuna": optuna.__version__,
            "study": getattr(study, "__version__", "0.1.0")}


def hardware() -> dict:
    import platform

    import torch

    hw = {"machine": platform.machine(), "system": platform.system(),
          "cpus": os.cpu_count(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        hw["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return hw


def study_meta(s, prep, data: Path, phases: list[str], archs: list[str],
          saved: dict | None, plans: dict | None = None) -> dict:
    """The run's provenance; ``plans`` = `study.plans.write_plans` of ``prep`` (a resumed run
    keeps the plans it started with)."""
    b = s.budget
    plans = (saved or {}).get("plans") or plans
    return {
        "name": s.name, "data": str(data), "label": s.label or prep.label_name,
        "phases": phases, "archs": archs,
        "space": {"name": s.space.name, "path": str(s.space.path), "yaml": s.space.text},
        "budget": {"name": b.name, "iterations": b.iterations, "eval_every": b.eval_every,
                   "grid": None if b.grid is None else list(b.grid),
                   "spacing": b.spacing if b.spacing is None or isinstance(b.spacing, str)
                   else list(b.spacing), "trials": s.trials, "max_concurrent": s.max_concurrent,
                   "grace_period": b.grace_period, "reduction_factor": b.reduction_factor,
                   "early_stopping": b.early_stopping, "sampler": s.space.sampler_for(b)},
        "seed": s.seed, "split_seed": s.split_seed, "fingerprint": prep.fingerprint,
        "preprocessing": prep.settings, "plans": plans,
        "split": {k: list(v) for k, v in prep.split.items()}, "trainable": s.space.trainable,
        "args": s.args, "versions": versions(), "hardware": hardware(),
        "started": (saved or {}).get("started")
        or now_utc(),
        "finished": None, "resumes": int((saved or {}).get("resumes", -1)) + 1,
        "wall_s": (saved or {}).get("wall_s"), "tune_s": dict((saved or {}).get("tune_s") or {}),
    }


def now_utc() -> str:
    """The time now, UTC, to the second (``2026-12-01T12:00:00+00:00``)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
