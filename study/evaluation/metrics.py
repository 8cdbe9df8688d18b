"""Per-case segmentation metrics on whole volumes (positive class only).

``case_metrics(prob_or_pred, truth, spacing, threshold=0.5)`` returns floats under the keys
``tp fp fn precision recall dice hd95 lesion_recall lesion_precision z_continuity``.
Arrays are ``(X, Y, Z)`` (NIfTI order, axial slice = ``[:, :, z]``); ``spacing`` is the
voxel size in mm along X, Y, Z. The prediction is ``prob >= threshold`` (``binarize``);
a boolean or 0/1 mask passes through unchanged.

Definitions
-----------
- ``precision = TP/(TP+FP)``, ``recall = TP/(TP+FN)``, ``dice = 2TP/(2TP+FP+FN)``.
- **Empty cases (0/0)**: a ratio whose numerator and denominator are both 0 is **1.0
  when truth and prediction are both empty** (the case is handled perfectly) and **0.0
  otherwise**. So empty truth + empty prediction gives precision = recall = dice = 1;
  empty prediction + tumour gives precision = recall = dice = 0; prediction + no tumour
  gives precision = recall = dice = 0. No metric is ever NaN, so plain means work.
- ``hd95``: symmetric 95th-percentile Hausdorff distance in mm between the surfaces of
  prediction and truth (MONAI ``compute_hausdorff_distance(percentile=95)``, i.e. the larger
  of the two directed 95th percentiles), using ``spacing``. Both empty: 0.0. Exactly one
  empty: the volume diagonal in mm (``sqrt(sum((shape * spacing)^2))``), a finite
  worst case instead of MONAI's inf/NaN.
- ``lesion_recall``: fraction of truth lesions (3D connected components, 26-connectivity)
  that any predicted voxel overlaps. ``lesion_precision``: fraction of predicted
  components that overlap any truth voxel. Same 0/0 rule as above.
- ``z_continuity`` (how free of slice-to-slice "steps" the prediction is, along z):
  ``1 - sum_z |P_z xor P_z+1| / sum_z |P_z or P_z+1|`` over adjacent axial slice pairs of
  the predicted mask P (pairs where both slices are empty add nothing). 1.0 means every
  slice equals its neighbour; an object that appears or vanishes between two slices, or
  jumps sideways, lowers it. It is voxel-weighted (a big jump costs more than a speck)
  and measures the prediction only: the truth's own value (``z_continuity(truth)``) is the
  natural reference, since real lesions start and end too (a 5-slice prism scores 0.67).
  An empty prediction (or a single slice) scores 1.0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

KEYS = (
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "dice",
    "hd95",
    "lesion_recall",
    "lesion_precision",
    "z_continuity",
)
CONNECTIVITY = ndimage.generate_binary_structure(3, 3)  # 26-connectivity


def binarize(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The predicted mask: ``prob >= threshold`` (bool)."""
    prob = np.asarray(prob)
    if prob.dtype == bool:
        return prob
    return prob >= threshold


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return float(num) / float(den)


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    """Symmetric 95th-percentile Hausdorff distance in mm (see module doc for empties)."""
    has_p, has_t = bool(pred.any()), bool(truth.any())
    if not has_p and not has_t:
        return 0.0
    if has_p != has_t:
        return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(pred.shape, spacing, strict=True))))
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = compute_hausdorff_distance(
            pred[None, None],
            truth[None, None],
            include_background=True,
            percentile=95,
            spacing=[float(s) for s in spacing],
        )
    return float(np.asarray(d).reshape(-1)[0])


def lesion_detection(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(lesion_recall, lesion_precision) from 26-connected components."""
    t_lab, n_t = ndimage.label(truth, structure=CONNECTIVITY)
    p_lab, n_p = ndimage.label(pred, structure=CONNECTIVITY)
    found = len(np.unique(t_lab[pred & (t_lab > 0)]))
    true_pred = len(np.unique(p_lab[truth & (p_lab > 0)]))
    both_empty = n_t == 0 and n_p == 0
    return _ratio(found, n_t, both_empty), _ratio(true_pred, n_p, both_empty)


def z_continuity(mask: np.ndarray) -> float:
    """``1 - sum |P_z xor P_z+1| / sum |P_z or P_z+1|`` over adjacent axial slices."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape[-1] < 2:
        return 1.0
    a, b = mask[..., :-1], mask[..., 1:]
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return 1.0 - int(np.count_nonzero(a ^ b)) / union


def _check(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> None:
    if pred.shape != truth.shape:
        raise ValueError(f"prediction shape {pred.shape} != truth shape {truth.shape}")
    if pred.ndim != 3:
        raise ValueError(f"metrics need (X, Y, Z) volumes, got shape {pred.shape}")
    if len(spacing) != 3 or not all(float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be 3 positive mm sizes (X, Y, Z), got {spacing!r}")


def case_metrics(
    prob_or_pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float],
    threshold: float = 0.5,
) -> dict[str, float]:
    """All metrics of one case (see the module docstring for definitions)."""
    pred = binarize(prob_or_pred, threshold)
    truth = np.asarray(truth) > 0
    _check(pred, truth, spacing)
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(truth)) - tp
    both_empty = tp + fp + fn == 0
    l_rec, l_prec = lesion_detection(pred, truth)
    return {
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
        "precision": _ratio(tp, tp + fp, both_empty),
        "recall": _ratio(tp, tp + fn, both_empty),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, both_empty),
        "hd95": hd95(pred, truth, spacing),
        "lesion_recall": l_rec,
        "lesion_precision": l_prec,
        "z_continuity": z_continuity(pred),
    }


def mean_metrics(cases: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean of every key over cases (keys of the first case); empty input -> {}."""
    cases = list(cases)
    if not cases:
        return {}
    return {k: float(np.mean([c[k] for c in cases])) for k in cases[0]}
