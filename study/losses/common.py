"""What every loss shares: inputs as float32 (safe under bf16 autocast), eps, the empty share."""

from __future__ import annotations

from collections.abc import Callable

import torch

EPS = 1.0
EMPTY_FRACTION = 0.01

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def as_float(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape != target.shape:
        raise ValueError(
            f"logits and target must have the same shape, got {tuple(logits.shape)} "
            f"and {tuple(target.shape)}"
        )
    return logits.float(), target.float()
