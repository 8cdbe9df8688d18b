"""The plan: what a new scan is compared with, and the target spacing of the data set.

Target spacing: nnU-Net's rule (`study.data.spacing.target_spacing`, where the cache's
``spacing: auto`` also takes it from) over the cases the models learn from. The slice axis
is the coarsest axis of the target spacing; the median shape is the median over cases of
shape x spacing / target spacing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from study.data.spacing import target_spacing

PLANS_FILE = "plans.json"
VERSION = 2  # 2: study_geometry


def _range(values) -> list[float]:
    arr = np.asarray(values, dtype=np.float64)
    return arr.min(axis=0).tolist(), arr.max(axis=0).tolist()


def make_plans(prep, fingerprints: dict[str, dict]) -> dict:
    """The plan of a prepared data set from the fingerprints of its cases; the ranges come
    from the cases the models learn from (train + validation), the target spacing too."""
    learn = [c for c in prep.case_ids if c not in set(prep.split.get("test", []))]
    rows = [fingerprints[c] for c in learn if c in fingerprints] or list(fingerprints.values())
    spacings = [r["spacing"] for r in rows]
    shapes = [r["shape"] for r in rows]
    target, aniso = target_spacing(spacings, shapes)
    median_shape = np.median(np.asarray(shapes) * np.asarray(spacings) / np.asarray(target),
                             axis=0)
    lo, hi = _range(spacings)
    intensity = {}
    for phase in prep.phases:
        vol = [r["intensity"][phase]["volume"] for r in rows if r["intensity"][phase]["volume"]]
        intensity[phase] = {k: [min(v[k] for v in vol), max(v[k] for v in vol)]
                            for k in ("p00_5", "p50", "p99_5")} if vol else {}
    return {
        "version": VERSION, "fingerprint": prep.fingerprint, "phases": list(prep.phases),
        "cases": fingerprints, "learn_cases": learn,
        "target_spacing": target, "anisotropic": aniso,
        "slice_axis": 2 - int(np.argmax(target[::-1])),  # the coarsest; ties: axial (2)
        "median_shape": [int(round(v)) for v in median_shape],
        "ranges": {"spacing": {"min": lo, "max": hi},
                   "axcodes": sorted({r["axcodes"] for r in rows}),
                   "intensity": intensity},
        "normalisation": prep.settings.get("channel_normalisation"),
        # what the study works at: one grid, or each case on its own grid at a spacing
        "study_geometry": {"grid": prep.settings.get("grid"),
                           "spacing": prep.settings.get("spacing"),
                           "median_case_grid": list(getattr(prep, "grid", []) or [])},
    }


def write_plans(prep, path: Path | None = None) -> dict:
    """Fingerprint + plan of ``prep``, written atomically to ``path`` (default: ``plans.json``
    in the cache folder, reused while the data set fingerprint is the same)."""
    from study.io import write_text_atomic

    path = Path(path) if path is not None else Path(prep.cache_dir) / PLANS_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
            if old.get("fingerprint") == prep.fingerprint and old.get("version") == VERSION \
                    and old.get("learn_cases") == [c for c in prep.case_ids
                                                   if c not in set(prep.split.get("test", []))]:
                return old
        except ValueError:
            pass
    from study.plans.fingerprint import fingerprint_cases

    plans = make_plans(prep, fingerprint_cases(prep))
    write_text_atomic(path, json.dumps(plans, indent=1, sort_keys=True) + "\n")
    return plans
