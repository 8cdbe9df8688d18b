"""Binary cross-entropy (SCIENCE.md eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from study.losses.common import as_float


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``-mean(y log p + (1 - y) log(1 - p))`` over all voxels of the batch."""
    logits, target = as_float(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)
