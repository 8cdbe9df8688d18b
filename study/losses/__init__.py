"""Losses: take logits and a binary target, give a float32 scalar; the report's losses
(SCIENCE.md "Losses"), one file each, the registry `LOSS_FUNCTIONS` and the loss schedule.

All losses take ``logits`` (any shape, e.g. ``(B, 1, ...)``) and a binary ``target`` of
the same shape, compute ``p = sigmoid(logits)`` in float32 (safe under bf16 autocast) and
sum over **all voxels of the batch** (N voxels), with ``eps = 1.0``:

- ``bce_loss`` (eq. 1): mean binary cross-entropy over the N voxels.
- ``dice_loss`` (eq. 6): ``1 - (2 sum(y p) + eps) / (sum(p) + sum(y) + eps)``.
- ``squared_dice_loss`` (eq. 7, V-Net): ``1 - (2 sum(y p) + eps) / (sum(p^2) + sum(y^2) + eps)``.
- ``lrdehl_loss`` (eqs. 8, 9), label-related dropout element hinge loss: keep every positive
  voxel and the ``k`` negatives with the highest ``p`` (hard-negative mining), ``k`` = number
  of positives (at most the number of negatives). On kept voxels only:
  MAE (eq. 8) ``sum |y - p| / N_pos``; MSE (eq. 9) ``sum (y - p)^2 / (2 N_pos)``.
  Other voxels get exactly zero gradient.

  **No positive voxel in the batch** (the report leaves ``k = 0`` open): we keep the
  ``k = max(1, ceil(empty_fraction * N))`` hardest negatives (``empty_fraction`` = 1 %, the
  tumour prevalence of a whole volume) and normalise by ``k`` instead of ``N_pos``, so the
  loss is the mean ``p`` (MAE) or ``p^2 / 2`` (MSE) of the hardest negatives: finite, and
  still pushes the most confident false positives down.

``LossSchedule(base, switch_step, lrdehl, budget)`` uses the base loss before
``switch_step`` and LRDEHL from ``switch_step`` on; it never switches when ``switch_step``
is ``None`` or ``>= budget``.
"""

from study.losses.bce import bce_loss
from study.losses.common import EMPTY_FRACTION, EPS, LossFn
from study.losses.dice import dice_loss, squared_dice_loss
from study.losses.lrdehl import lrdehl_loss, lrdehl_mask
from study.losses.registry import LOSS_FUNCTIONS
from study.losses.schedule import LossSchedule

__all__ = ["EMPTY_FRACTION", "EPS", "LOSS_FUNCTIONS", "LossFn", "LossSchedule", "bce_loss",
           "dice_loss", "lrdehl_loss", "lrdehl_mask", "squared_dice_loss"]
