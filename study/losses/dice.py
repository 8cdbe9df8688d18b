"""Dice (eq. 6) and squared Dice (eq. 7, V-Net) losses over all voxels of the batch."""

from __future__ import annotations

import torch

from study.losses.common import EPS, as_float


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Eq. 6: ``1 - (2 sum(y p) + eps) / (sum(p) + sum(y) + eps)``."""
    logits, target = as_float(logits, target)
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + eps) / (p.sum() + target.sum() + eps)


def squared_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Eq. 7 (V-Net): ``1 - (2 sum(y p) + eps) / (sum(p^2) + sum(y^2) + eps)``."""
    logits, target = as_float(logits, target)
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + eps) / (p.square().sum() + target.square().sum() + eps)
