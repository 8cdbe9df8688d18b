"""Losses against values worked out by hand, LRDEHL gradient routing, and the schedule."""

from __future__ import annotations

import math

import pytest
import torch

from study.errors import ConfigError
from study.losses import (
    LOSS_FUNCTIONS,
    LossSchedule,
    bce_loss,
    dice_loss,
    lrdehl_loss,
    squared_dice_loss,
)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


# Six voxels split over a batch of 2 (losses sum over the whole batch):
#   y = 1,    1,   0,   0,    0,   0
#   p = 0.75, 0.5, 0.9, 0.25, 0.1, 0.5
P = [0.75, 0.5, 0.9, 0.25, 0.1, 0.5]
Y = [1, 1, 0, 0, 0, 0]


def tiny() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor([logit(p) for p in P], dtype=torch.float64).reshape(2, 1, 3)
    return logits.requires_grad_(True), torch.tensor(Y, dtype=torch.float64).reshape(2, 1, 3)


def test_bce_by_hand():
    # -(ln .75 + ln .5 + ln(1-.9) + ln(1-.25) + ln(1-.1) + ln(1-.5)) / 6
    want = -(math.log(0.75) + 2 * math.log(0.5) + math.log(0.1) + math.log(0.75) + math.log(0.9))
    assert bce_loss(*tiny()).item() == pytest.approx(want / 6, rel=1e-6)  # 0.728268


def test_dice_by_hand():
    # sum(yp) = .75 + .5 = 1.25; sum(p) = 3.0; sum(y) = 2
    # 1 - (2*1.25 + 1) / (3 + 2 + 1) = 1 - 3.5/6
    assert dice_loss(*tiny()).item() == pytest.approx(1 - 3.5 / 6, rel=1e-6)


def test_squared_dice_by_hand():
    # sum(p^2) = .5625 + .25 + .81 + .0625 + .01 + .25 = 1.945; sum(y^2) = 2
    # 1 - 3.5 / (1.945 + 2 + 1) = 1 - 3.5/4.945
    assert squared_dice_loss(*tiny()).item() == pytest.approx(1 - 3.5 / 4.945, rel=1e-6)


def test_dice_sums_over_whole_batch_not_per_sample():
    logits, y = tiny()
    per_sample = sum(squared_dice_loss(logits[i], y[i]) for i in range(2)) / 2
    assert squared_dice_loss(logits, y).item() != pytest.approx(per_sample.item(), rel=1e-3)


def test_lrdehl_mae_and_mse_by_hand():
    # N_pos = 2, so k = 2 hardest negatives: p = .9 (voxel 2) and .5 (voxel 5).
    # MAE: (|1-.75| + |1-.5| + .9 + .5) / 2 = 2.15 / 2
    # MSE: (.0625 + .25 + .81 + .25) / (2*2) = 1.3725 / 4
    assert lrdehl_loss(*tiny(), variant="mae").item() == pytest.approx(1.075, rel=1e-6)
    assert lrdehl_loss(*tiny(), variant="mse").item() == pytest.approx(0.343125, rel=1e-6)
    assert LOSS_FUNCTIONS["lrdehl_mse"](*tiny()).item() == pytest.approx(0.343125, rel=1e-6)


@pytest.mark.parametrize("variant", ["mae", "mse"])
def test_lrdehl_gradient_only_on_positives_and_hardest_negatives(variant):
    logits, y = tiny()
    lrdehl_loss(logits, y, variant=variant).backward()
    got = (logits.grad.reshape(-1) != 0).tolist()
    assert got == [True, True, True, False, False, True]
    g = logits.grad.reshape(-1)
    assert (g[:2] < 0).all() and (g[[2, 5]] > 0).all()  # positives up, negatives down


def test_lrdehl_no_positive_pushes_hardest_negatives_down():
    # 200 negative voxels, k = max(1, ceil(1% of 200)) = 2 hardest, normalised by k.
    torch.manual_seed(0)
    logits = (torch.rand(2, 1, 10, 10) * 2 - 4).double()  # p <= 0.12
    logits[0, 0, 3, 4] = logit(0.8)
    logits[1, 0, 7, 1] = logit(0.6)  # the two highest p
    logits.requires_grad_(True)
    y = torch.zeros_like(logits)
    mae = lrdehl_loss(logits, y, "mae")
    assert mae.item() == pytest.approx((0.8 + 0.6) / 2, rel=1e-6)
    mae.backward()
    nz = logits.grad.nonzero().tolist()
    assert nz == [[0, 0, 3, 4], [1, 0, 7, 1]]
    assert (logits.grad[0, 0, 3, 4] > 0) and (logits.grad[1, 0, 7, 1] > 0)
    mse = lrdehl_loss(logits.detach(), y, "mse")
    assert mse.item() == pytest.approx((0.64 + 0.36) / 4, rel=1e-6)
    # a gradient step lowers the hardest negatives
    stepped = logits.detach() - 10 * logits.grad
    assert lrdehl_loss(stepped, y, "mae") < mae


def test_lrdehl_all_positive_keeps_only_positives():
    logits = torch.tensor([logit(0.75), logit(0.5)]).requires_grad_(True)
    y = torch.ones(2)
    assert lrdehl_loss(logits, y).item() == pytest.approx((0.25 + 0.5) / 2, rel=1e-6)


def test_losses_are_float32_under_bf16_and_finite():
    logits, y = tiny()
    lb = logits.detach().to(torch.bfloat16)
    for name, fn in LOSS_FUNCTIONS.items():
        v = fn(lb, y)
        assert v.dtype == torch.float32 and torch.isfinite(v), name


def test_shape_mismatch_and_bad_variant():
    with pytest.raises(ValueError, match="same shape"):
        dice_loss(torch.zeros(2, 1, 3), torch.zeros(2, 3))
    with pytest.raises(ConfigError, match="lrdehl"):
        lrdehl_loss(*tiny(), variant="huber")


def test_schedule_switches_at_switch_step():
    s = LossSchedule("sqdice", switch_step=30, lrdehl="mse", budget=40)
    assert [s.active(t) for t in (0, 29, 30, 39)] == ["sqdice"] * 2 + ["lrdehl_mse"] * 2
    logits, y = tiny()
    assert s(logits, y, 29).item() == pytest.approx(squared_dice_loss(logits, y).item())
    assert s(logits, y, 30).item() == pytest.approx(0.343125, rel=1e-6)


@pytest.mark.parametrize("switch, budget", [(None, 40), (40, 40), (50, 40)])
def test_schedule_never_switches(switch, budget):
    s = LossSchedule("dice", switch_step=switch, budget=budget)
    assert s.switch_step is None
    assert {s.active(t) for t in (0, 39, 40, 10**6)} == {"dice"}


def test_schedule_rejects_bad_config():
    with pytest.raises(ConfigError, match="'loss'"):
        LossSchedule("focal")
    with pytest.raises(ConfigError, match="'lrdehl'"):
        LossSchedule(lrdehl="l1")
    with pytest.raises(ConfigError, match="'switch_step'"):
        LossSchedule(switch_step=-1)
