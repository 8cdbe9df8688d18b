"""Evaluation: takes a model (or an ensemble) and prepared cases, gives probability maps
(sliding window / slices / slabs), per-case metrics on the study and native grids, the
postprocessing chosen on validation, bootstrap CIs and paired tests, and the text table.

Below training in the import order: the training loop validates with it, tuning and the
apply stage test with it. See docs/CONTRACTS.md ("study/evaluation").
"""

from study.evaluation.inference import predict_volume, write_prediction_nifti
from study.evaluation.metrics import KEYS, case_metrics, mean_metrics
from study.evaluation.native import choose_postprocessing, evaluate_predictions, evaluate_test
from study.evaluation.predictors import case_spacing, ensemble_predictor, model_predictor
from study.evaluation.table import format_test_table

__all__ = ["KEYS", "case_metrics", "case_spacing", "choose_postprocessing", "ensemble_predictor",
           "evaluate_predictions", "evaluate_test", "format_test_table", "mean_metrics",
           "model_predictor", "predict_volume", "write_prediction_nifti"]
