"""Segmentation losses of the report (SCIENCE.md "Losses") and the loss schedule.

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

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from study.errors import ConfigError
from study.names import LOSSES, LRDEHL_VARIANTS, lrdehl_loss_name

EPS = 1.0
EMPTY_FRACTION = 0.01

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _prep(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have the same shape, got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    return logits.float(), target.float()


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``-mean(y log p + (1 - y) log(1 - p))`` over all voxels of the batch."""
    logits, target = _prep(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Eq. 6: ``1 - (2 sum(y p) + eps) / (sum(p) + sum(y) + eps)``."""
    logits, target = _prep(logits, target)
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + eps) / (p.sum() + target.sum() + eps)


def squared_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Eq. 7 (V-Net): ``1 - (2 sum(y p) + eps) / (sum(p^2) + sum(y^2) + eps)``."""
    logits, target = _prep(logits, target)
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + eps) / (p.square().sum() + target.square().sum() + eps)


def lrdehl_mask(
    logits: torch.Tensor, target: torch.Tensor, empty_fraction: float = EMPTY_FRACTION
) -> tuple[torch.Tensor, int]:
    """Boolean mask of the voxels LRDEHL keeps, and the normaliser (``N_pos`` or ``k``)."""
    logits, target = _prep(logits, target)
    flat_logit = logits.detach().reshape(-1)
    pos = target.reshape(-1) > 0.5
    n_pos = int(pos.sum())
    n_neg = pos.numel() - n_pos
    if n_pos > 0:
        k, norm = min(n_pos, n_neg), n_pos
    else:
        k = max(1, math.ceil(empty_fraction * pos.numel()))
        norm = k
    keep = pos.clone()
    if k > 0:
        # sigmoid is monotone: the highest logits are the highest p.
        scores = flat_logit.masked_fill(pos, -math.inf)
        keep[torch.topk(scores, k, sorted=False).indices] = True
    return keep.reshape(logits.shape), norm


def lrdehl_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    variant: str = "mae",
    empty_fraction: float = EMPTY_FRACTION,
) -> torch.Tensor:
    """Eqs. 8 (``variant="mae"``) and 9 (``"mse"``) on positives + k hardest negatives."""
    if variant not in LRDEHL_VARIANTS:
        raise ConfigError(f"key 'lrdehl' must be one of {', '.join(LRDEHL_VARIANTS)}, "
                          f"got {variant!r}")
    keep, norm = lrdehl_mask(logits, target, empty_fraction)
    logits, target = _prep(logits, target)
    p = torch.sigmoid(logits[keep])
    err = (target[keep] - p).abs()
    if variant == "mae":
        return err.sum() / norm
    return err.square().sum() / (2 * norm)


#: the loss functions by name: the base losses of `study.names.LOSSES` and one LRDEHL per
#: variant of `study.names.LRDEHL_VARIANTS` (``lrdehl_mae``, ``lrdehl_mse``)
LOSS_FUNCTIONS: dict[str, LossFn] = {
    "bce": bce_loss,
    "dice": dice_loss,
    "sqdice": squared_dice_loss,
    **{lrdehl_loss_name(v): partial(lrdehl_loss, variant=v) for v in LRDEHL_VARIANTS},
}
if not set(LOSSES) <= set(LOSS_FUNCTIONS):  # pragma: no cover - a registry line is missing
    raise ImportError(f"study.losses lacks a function for {set(LOSSES) - set(LOSS_FUNCTIONS)}")


class LossSchedule:
    """Base loss before ``switch_step``, LRDEHL (``lrdehl`` variant) from it on.

    Never switches when ``switch_step`` is ``None`` or ``switch_step >= budget`` (a budget
    of ``None`` means unbounded). ``active(step)`` names the loss used at ``step`` (a key of
    ``LOSS_FUNCTIONS``); calling the schedule ``(logits, target, step)`` evaluates it.
    """

    def __init__(
        self,
        base: str = "sqdice",
        switch_step: int | None = None,
        lrdehl: str = "mae",
        budget: int | None = None,
    ):
        if base not in LOSSES:
            raise ConfigError(f"key 'loss' must be one of {', '.join(LOSSES)}, got {base!r}")
        if lrdehl not in LRDEHL_VARIANTS:
            raise ConfigError(f"key 'lrdehl' must be one of {', '.join(LRDEHL_VARIANTS)}, "
                              f"got {lrdehl!r}")
        if switch_step is not None and (not isinstance(switch_step, int) or switch_step < 0):
            raise ConfigError(
                f"key 'switch_step' must be a non-negative integer or None, got {switch_step!r}"
            )
        self.base = base
        self.lrdehl = lrdehl
        self.budget = budget
        never = switch_step is None or (budget is not None and switch_step >= budget)
        self.switch_step = None if never else switch_step

    def active(self, step: int) -> str:
        if self.switch_step is not None and step >= self.switch_step:
            return lrdehl_loss_name(self.lrdehl)
        return self.base

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, step: int) -> torch.Tensor:
        return LOSS_FUNCTIONS[self.active(step)](logits, target)

    def __repr__(self) -> str:
        return (
            f"LossSchedule(base={self.base!r}, switch_step={self.switch_step!r}, "
            f"lrdehl={self.lrdehl!r}, budget={self.budget!r})"
        )
