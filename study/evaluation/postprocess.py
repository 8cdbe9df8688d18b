"""Postprocessing of predicted masks, chosen on validation (as nnU-Net does).

Candidates (`CANDIDATES`, applied to the binary mask on the native grid, scipy.ndimage):

* ``none``: the mask as predicted;
* ``largest``: keep the largest 3D connected component (26-connectivity, as the lesion
  metrics): organs, or a single lesion;
* ``min_10mm3`` / ``min_50mm3`` / ``min_200mm3``: remove components smaller than that
  volume (voxel count x voxel volume from the spacing): scattered false-positive specks;
* ``fill_2d`` / ``fill_3d``: fill holes in each axial slice, or in 3D;
* ``largest+fill_3d``: both.

`choose` scores every candidate on validation cases (mean Dice against their label files)
and keeps the best one only if it beats ``none`` (a tie keeps ``none``): a step that does
not help on validation is never applied to the test cases.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from study.errors import ConfigError

CONNECTIVITY = ndimage.generate_binary_structure(3, 3)  # 26-connectivity
RECORD_FILE = "postprocessing.json"  # the choice, beside a tested model (best/PHASE/ARCH/)
CANDIDATES = ("none", "largest", "min_10mm3", "min_50mm3", "min_200mm3", "fill_2d", "fill_3d",
              "largest+fill_3d")
WORDS = {"none": "none", "largest": "largest connected component",
         "min_10mm3": "components < 10 mm³ removed", "min_50mm3": "components < 50 mm³ removed",
         "min_200mm3": "components < 200 mm³ removed", "fill_2d": "holes filled per slice",
         "fill_3d": "holes filled in 3D", "largest+fill_3d": "largest component, holes filled"}


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask, structure=CONNECTIVITY)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _min_volume(mask: np.ndarray, spacing, mm3: float) -> np.ndarray:
    lab, n = ndimage.label(mask, structure=CONNECTIVITY)
    if n == 0:
        return mask
    voxel = float(np.prod(np.asarray(spacing, dtype=np.float64)))
    sizes = np.bincount(lab.ravel()) * voxel
    keep = sizes >= mm3
    keep[0] = False
    return keep[lab]


def _fill_2d(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    for z in range(mask.shape[2]):
        if mask[:, :, z].any():
            out[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    return out


def apply(mask: np.ndarray, spacing, name: str) -> np.ndarray:
    """The candidate ``name`` applied to a binary mask (X, Y, Z) -> bool mask."""
    if name not in CANDIDATES:
        raise ConfigError(f"postprocessing {name!r} is unknown; use one of "
                          f"{', '.join(CANDIDATES)}")
    m = np.asarray(mask, dtype=bool)
    if name == "none" or not m.any():
        return m
    if name == "largest":
        return _largest(m)
    if name.startswith("min_"):
        return _min_volume(m, spacing, float(name[4:-3]))
    if name == "fill_2d":
        return _fill_2d(m)
    if name == "fill_3d":
        return ndimage.binary_fill_holes(m)
    return ndimage.binary_fill_holes(_largest(m))  # largest+fill_3d


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(bool), truth.astype(bool)
    den = int(p.sum()) + int(t.sum())
    return 1.0 if den == 0 else 2.0 * int((p & t).sum()) / den


def choose(cases: list[tuple[np.ndarray, np.ndarray, tuple]]) -> dict:
    """``cases`` = [(predicted mask, truth mask, spacing)] of validation cases ->
    ``{"chosen": name, "val_dice": {candidate: mean Dice}}``; ``none`` unless a candidate
    is strictly better (so no case, or a tie, keeps ``none``)."""
    scores = {name: float(np.mean([_dice(apply(p, s, name), t) for p, t, s in cases]))
              if cases else float("nan") for name in CANDIDATES}
    chosen = "none"
    for name in CANDIDATES[1:]:
        if cases and scores[name] > scores[chosen]:
            chosen = name
    return {"chosen": chosen, "val_dice": scores, "cases": len(cases)}
