"""Modality-aware intensity normalisation, as nnU-Net names it (dataset.json channel names).

* A channel named ``CT``: the Hounsfield scale means the same in every scan, so the data set
  decides: its foreground intensities (voxels with any label > 0 in the training cases of
  ``imagesTr``, up to `SAMPLES_PER_CASE` drawn per case with a fixed seed) give the 0.5 and
  99.5 percentiles, the mean and the standard deviation; every CT volume is clipped to those
  percentiles and standardised with that mean and deviation.
* Any other name (MRI sequences, phases): per volume, as before: clip to the volume's own
  0.5/99.5 percentiles, then z-score (`study.data.resample.normalise`).

The per-channel schemes are part of the preprocessing settings (and so of the cache key, the
run's study.json and an exported model), and `study.apply.predict` applies them to new scans (`study.data.resample.apply_scheme`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SAMPLES_PER_CASE = 10_000
PERCENTILES = (0.5, 99.5)
ZSCORE = {"scheme": "zscore", "clip": "per volume 0.5/99.5 percentiles"}


def is_ct(channel: str) -> bool:
    return str(channel).strip().lower() == "ct"


def _foreground_samples(spec, phase_index: int) -> np.ndarray:
    from study.data.dataset import read_volume

    out = []
    for i, case in enumerate(spec.train_ids):
        image, _ = read_volume(spec.image_paths(case)[phase_index])
        label, _ = read_volume(spec.label_path(case))
        values = image[label > 0]
        if values.size > SAMPLES_PER_CASE:
            values = np.random.default_rng(i).choice(values, SAMPLES_PER_CASE, replace=False)
        out.append(values.astype(np.float64))
    return np.concatenate(out) if out else np.zeros(0)


def ct_scheme(values: np.ndarray) -> dict:
    """The CT scheme of a set of foreground intensities (nnU-Net's CTNormalization)."""
    if values.size == 0:
        return {"scheme": "ct", "clip": [-1024.0, 3071.0], "mean": 0.0, "std": 1.0,
                "note": "no foreground voxels: the full HU range, no standardisation"}
    lo, hi = np.percentile(values, PERCENTILES)
    return {"scheme": "ct", "clip": [float(lo), float(hi)], "mean": float(values.mean()),
            "std": float(max(values.std(), 1e-8)), "voxels": int(values.size)}


def channel_schemes(spec, cache_root: Path, fp: str) -> dict[str, dict]:
    """{phase: scheme} for the data set; the CT statistics are computed once per data set
    fingerprint and kept in ``cache_root/intensity-FP.json``."""
    if not any(is_ct(p) for p in spec.phases):
        return {p: dict(ZSCORE) for p in spec.phases}
    memo = Path(cache_root) / f"intensity-{fp}.json"
    if memo.is_file():
        try:
            return json.loads(memo.read_text(encoding="utf-8"))
        except ValueError:
            pass
    schemes = {p: ct_scheme(_foreground_samples(spec, i)) if is_ct(p) else dict(ZSCORE)
               for i, p in enumerate(spec.phases)}
    from study.io import write_text_atomic

    memo.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(memo, json.dumps(schemes, indent=1, sort_keys=True))
    return schemes
