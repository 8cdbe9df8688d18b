"""The loss registry: a new loss is one file in study/losses/ and one line here (and its
name in `study.names.LOSSES`)."""

from __future__ import annotations

from functools import partial

from study.losses.bce import bce_loss
from study.losses.common import LossFn
from study.losses.dice import dice_loss, squared_dice_loss
from study.losses.lrdehl import lrdehl_loss
from study.names import LOSSES, LRDEHL_VARIANTS, lrdehl_loss_name

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
