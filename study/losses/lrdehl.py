"""LRDEHL, the label-related dropout element hinge loss (eqs. 8, 9): positives plus the
hardest negatives; see the package docstring for the empty-batch rule."""

from __future__ import annotations

import math

import torch

from study.errors import ConfigError
from study.losses.common import EMPTY_FRACTION, as_float
from study.names import LRDEHL_VARIANTS


def lrdehl_mask(
    logits: torch.Tensor, target: torch.Tensor, empty_fraction: float = EMPTY_FRACTION
) -> tuple[torch.Tensor, int]:
    """Boolean mask of the voxels LRDEHL keeps, and the normaliser (``N_pos`` or ``k``)."""
    logits, target = as_float(logits, target)
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
    logits, target = as_float(logits, target)
    p = torch.sigmoid(logits[keep])
    err = (target[keep] - p).abs()
    if variant == "mae":
        return err.sum() / norm
    return err.square().sum() / (2 * norm)
