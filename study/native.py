"""Test evaluation on the native grid: what a clinician, nnU-Net and MONAI users measure.

Models train and are ranked on the resampled study grid. For the final numbers each
probability map is mapped back onto the case's source NIfTI grid (`to_native`: linear,
voxel centres aligned, the same mapping `write_prediction_nifti` and `study.predict` use),
thresholded there, and compared with the original label file at its own voxel spacing.
The mask written to ``CASE.nii.gz`` is exactly the one scored, so
``study.evaluate LABELS PREDICTIONS`` reproduces these numbers from the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from study.inference import resample_to_shape, save_nifti


def to_native(prob: np.ndarray, shape) -> np.ndarray:
    """Probability map on the study grid -> float32 on the source grid ``shape``."""
    shape = tuple(int(s) for s in shape)[:3]
    return resample_to_shape(np.asarray(prob, dtype=np.float32), shape, order=1).astype(
        np.float32, copy=False)


def native_truth(prep, case_id: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The case's original label file as a 0/1 mask of the study's label, and its spacing."""
    from study.data.dataset import read_mask, voxel_spacing

    mask, affine = read_mask(prep.source(case_id)["label_path"], prep.settings["label_value"])
    return mask, voxel_spacing(affine)


def evaluate_test(model, config, prep, case_ids, *, out_dir: Path | None = None,
                  postprocessing: str = "none", log=None) -> list[dict]:
    """Per-case metrics on both grids -> rows ``{case, metric, value, grid, postprocessing}``.

    ``grid == "study"``: as `study.engine.evaluate` (the grid validation ranks on);
    ``grid == "native"``: on the source grid against the label file, raw (postprocessing
    ``"none"``) and, when ``postprocessing`` names a candidate of `study.postprocess`, after
    it. ``out_dir`` receives ``CASE.nii.gz`` (uint8 mask, source affine) for every case: the
    mask with ``postprocessing`` applied, i.e. the one the shown numbers score.
    """
    from study.engine import evaluate
    from study.metrics import case_metrics
    from study.postprocess import apply

    native: list[dict] = []

    def on_prediction(case: str, prob: np.ndarray) -> None:
        truth, spacing = native_truth(prep, case)
        p = to_native(prob, truth.shape)
        mask = p >= config.threshold
        variants = {"none": mask}
        if postprocessing != "none":
            variants[postprocessing] = apply(mask, spacing, postprocessing)
        for name, m_ in variants.items():
            m = case_metrics(m_, truth, spacing)
            native.extend({"case": case, "metric": k, "value": float(v), "grid": "native",
                           "postprocessing": name} for k, v in m.items())
        if out_dir is not None:
            src = prep.source(case)
            save_nifti(variants[postprocessing].astype(np.uint8), src["affine"],
                       Path(out_dir) / f"{case}.nii.gz")
        if log is not None:
            log(f"  {case}: native dice {m['dice']:.4f}")

    study = evaluate(model, config, prep, case_ids, on_prediction=on_prediction)
    return [{**r, "grid": "study", "postprocessing": "none"} for r in study] + native


def choose_postprocessing(model, config, prep, val_cases) -> dict:
    """Predict the validation cases, map them to their native grids and pick the
    postprocessing of `study.postprocess.choose` (``none`` unless one beats it)."""
    from study.inference import predict_volume
    from study.models import model_kind
    from study.postprocess import choose

    cases = []
    for case in val_cases:
        prob = predict_volume(model, model_kind(config.arch),
                              prep.image(case, list(config.phases)), patch=config.patch,
                              overlap=config.overlap, batch_size=config.eval_batch_size)
        truth, spacing = native_truth(prep, case)
        cases.append((to_native(prob, truth.shape) >= config.threshold, truth, spacing))
    return choose(cases)
