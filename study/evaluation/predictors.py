"""Predictors: ``case -> probability map`` on the study grid, for one model or the mean of
several (an ensemble); what training's validation, the native-grid test and the finalists use."""

from __future__ import annotations

import numpy as np
import torch

from study.evaluation.inference import predict_volume


def case_spacing(prep, case_id):
    fn = getattr(prep, "case_spacing", None)
    return tuple(fn(case_id)) if callable(fn) else tuple(prep.spacing)


def model_predictor(model: torch.nn.Module, config, prep):
    """``case -> probability map`` on the study grid for one model (whole volume)."""
    from study.models import model_kind

    kind = model_kind(config.arch)

    def predict(case: str) -> np.ndarray:
        return predict_volume(model, kind, prep.image(case, list(config.phases)),
                              patch=config.patch, overlap=config.overlap,
                              batch_size=config.eval_batch_size)

    return predict


def ensemble_predictor(members: list[tuple], prep):
    """``case -> mean probability map`` of several ``(model, config)`` (a fold ensemble)."""
    predictors = [model_predictor(m, c, prep) for m, c in members]

    def predict(case: str) -> np.ndarray:
        total = predictors[0](case)
        for p in predictors[1:]:
            total = total + p(case)
        return total / np.float32(len(predictors)) if len(predictors) > 1 else total

    return predict
