"""Test evaluation on the native grid: what a clinician, nnU-Net and MONAI users measure.

Models train and are ranked on the resampled study grid. For the final numbers each
probability map is mapped back onto the case's source NIfTI grid (`study.evaluation.inference.to_native`: linear,
voxel centres aligned, the same mapping `write_prediction_nifti` and `study.apply.predict` use),
thresholded there, and compared with the original label file at its own voxel spacing.
The mask written to ``CASE.nii.gz`` is exactly the one scored, so
``study.apply.evaluate LABELS PREDICTIONS`` reproduces these numbers from the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from study.evaluation.inference import save_nifti, to_source
from study.evaluation.predictors import case_spacing, model_predictor


def native_truth(prep, case_id: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The case's original label file as a 0/1 mask of the study's label, and its spacing."""
    from study.data.dataset import read_mask, voxel_spacing

    mask, affine = read_mask(prep.source(case_id)["label_path"], prep.settings["label_value"])
    return mask, voxel_spacing(affine)


def evaluate_test(model, config, prep, case_ids, *, out_dir: Path | None = None,
                  postprocessing: str = "none", log=None) -> list[dict]:
    """Per-case metrics of one model on both grids (see `evaluate_predictions`)."""
    return evaluate_predictions(model_predictor(model, config, prep), config.threshold, prep,
                                case_ids, out_dir=out_dir, postprocessing=postprocessing,
                                log=log)


def evaluate_predictions(predict, threshold: float, prep, case_ids, *,
                         out_dir: Path | None = None, postprocessing: str = "none",
                         log=None) -> list[dict]:
    """Per-case metrics on both grids -> rows ``{case, metric, value, grid, postprocessing}``.

    ``predict(case)`` gives the probability map on the study grid. ``grid == "study"``: as
    `study.train.engine.evaluate` (the grid validation ranks on); ``grid == "native"``: on the
    source grid against the label file, raw (postprocessing ``"none"``) and, when
    ``postprocessing`` names a candidate of `study.evaluation.postprocess`, after it. ``out_dir``
    receives ``CASE.nii.gz`` (uint8 mask, source affine) for every case: the mask with
    ``postprocessing`` applied, i.e. the one the shown numbers score.
    """
    from study.evaluation.metrics import case_metrics
    from study.evaluation.postprocess import apply

    study: list[dict] = []
    native: list[dict] = []
    for case in case_ids:
        prob = predict(case)
        m = case_metrics(prob, np.asarray(prep.mask(case)), case_spacing(prep, case),
                         threshold=threshold)
        study.extend({"case": case, "metric": k, "value": float(v)} for k, v in m.items())
        truth, spacing = native_truth(prep, case)
        mask = to_source(prob, prep.source(case)) >= threshold
        variants = {"none": mask}
        if postprocessing != "none":
            variants[postprocessing] = apply(mask, spacing, postprocessing)
        for name, m_ in variants.items():
            m = case_metrics(m_, truth, spacing)
            native.extend({"case": case, "metric": k, "value": float(v), "grid": "native",
                           "postprocessing": name} for k, v in m.items())
        if out_dir is not None:
            save_nifti(variants[postprocessing].astype(np.uint8), prep.source(case)["affine"],
                       Path(out_dir) / f"{case}.nii.gz")
        if log is not None:
            log(f"  {case}: native dice {m['dice']:.4f}")
    return [{**r, "grid": "study", "postprocessing": "none"} for r in study] + native


def choose_postprocessing(model, config, prep, val_cases) -> dict:
    """Predict the validation cases, map them to their native grids and pick the
    postprocessing of `study.evaluation.postprocess.choose` (``none`` unless one beats it)."""
    return choose_postprocessing_for(model_predictor(model, config, prep), config.threshold,
                                     prep, val_cases)


def choose_postprocessing_for(predict, threshold: float, prep, cases) -> dict:
    """`choose_postprocessing` for any ``case -> probability`` (e.g. out-of-fold predictions)."""
    from study.evaluation.postprocess import choose

    scored = []
    for case in cases:
        truth, spacing = native_truth(prep, case)
        scored.append((to_source(predict(case), prep.source(case)) >= threshold, truth,
                       spacing))
    return choose(scored)
