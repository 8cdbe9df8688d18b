"""Metrics against hand-computed values, empty-case conventions, z-continuity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from study.evaluation.metrics import KEYS, binarize, case_metrics, mean_metrics, z_continuity

SP = (1.0, 1.0, 1.0)


def vol(shape=(12, 10, 6)) -> np.ndarray:
    return np.zeros(shape, dtype=bool)


def test_counts_ratios_by_hand():
    truth = vol()
    truth[2:4, 2:4, 1:3] = True  # 8 voxels
    prob = np.zeros(truth.shape, np.float32)
    prob[3:5, 2:4, 1:3] = 0.9  # 8 voxels, 4 overlap truth (x = 3)
    prob[3, 2, 1] = 0.5  # exactly at threshold -> positive (>=)
    prob[2, 2, 1] = 0.49  # below threshold -> negative
    m = case_metrics(prob, truth, SP)
    assert tuple(m) == KEYS
    # TP = 4, FP = 4 (x = 4), FN = 4 (x = 2)
    assert (m["tp"], m["fp"], m["fn"]) == (4.0, 4.0, 4.0)
    assert m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["dice"] == pytest.approx(2 * 4 / (2 * 4 + 4 + 4))
    assert all(isinstance(v, float) for v in m.values())


def test_threshold_and_bool_input():
    p = np.array([0.2, 0.5, 0.7])
    assert binarize(p).tolist() == [False, True, True]
    assert binarize(p, 0.6).tolist() == [False, False, True]
    m = np.array([True, False])
    assert binarize(m, 0.9) is m


def test_hd95_parallel_planes_in_mm():
    # Truth = plane x=2, prediction = plane x=5: every surface distance is 3 voxels
    # along x; with 2 mm spacing in x that is 6 mm in both directions.
    truth, pred = vol(), vol()
    truth[2] = True
    pred[5] = True
    m = case_metrics(pred, truth, (2.0, 0.7, 3.0))
    assert m["hd95"] == pytest.approx(6.0)
    assert m["dice"] == 0.0


def test_empty_conventions():
    e = vol()
    both = case_metrics(e, e, SP)
    assert [both[k] for k in ("precision", "recall", "dice", "hd95")] == [1.0, 1.0, 1.0, 0.0]
    assert both["lesion_recall"] == both["lesion_precision"] == 1.0
    assert both["z_continuity"] == 1.0

    t = vol()
    t[1:3, 1:3, 1:3] = True
    missed = case_metrics(e, t, (1.0, 2.0, 2.0))  # nothing predicted, tumour present
    diag = math.sqrt(12**2 + 20**2 + 12**2)  # shape (12,10,6) x spacing (1,2,2) mm
    assert [missed[k] for k in ("precision", "recall", "dice")] == [0.0, 0.0, 0.0]
    assert missed["hd95"] == pytest.approx(diag)
    assert missed["lesion_recall"] == 0.0 and missed["lesion_precision"] == 0.0

    false_alarm = case_metrics(t, e, SP)  # prediction, no tumour
    assert [false_alarm[k] for k in ("precision", "recall", "dice")] == [0.0, 0.0, 0.0]
    assert false_alarm["fp"] == 8.0 and false_alarm["lesion_precision"] == 0.0
    assert all(np.isfinite(v) for d in (both, missed, false_alarm) for v in d.values())


def test_lesion_detection_by_hand():
    truth, pred = vol((20, 20, 6)), vol((20, 20, 6))
    truth[1:4, 1:4, 1:3] = True  # lesion A
    truth[10:13, 10:13, 1:3] = True  # lesion B (missed)
    pred[3:6, 3:6, 2:4] = True  # overlaps A at one corner region
    pred[16:18, 1:3, 1] = True  # false positive 1
    pred[1:3, 16:18, 4] = True  # false positive 2
    m = case_metrics(pred, truth, SP)
    assert m["lesion_recall"] == 0.5  # A found, B missed
    assert m["lesion_precision"] == pytest.approx(1 / 3)  # 1 of 3 components is real


def test_lesion_components_are_26_connected():
    truth, pred = vol(), vol()
    truth[1, 1, 1] = truth[2, 2, 2] = True  # diagonal neighbours: one lesion
    pred[1, 1, 1] = True
    assert case_metrics(pred, truth, SP)["lesion_recall"] == 1.0


def test_z_continuity_by_hand():
    m = vol((6, 6, 3))
    m[1:3, 1:3, 0] = True  # 2x2 square
    m[1:3, 1:3, 1] = True  # same square: xor 0, union 4
    m[2:4, 1:3, 2] = True  # shifted by one in x: xor 4, union 6
    assert z_continuity(m) == pytest.approx(1 - 4 / 10)
    prism = vol((6, 6, 8))
    prism[1:3, 1:3, 2:7] = True  # 5 slices: 2 end pairs of xor A, 6 pairs of union A
    assert z_continuity(prism) == pytest.approx(1 - 2 / 6)


def ellipsoid(shape, centre, radii) -> np.ndarray:
    g = np.indices(shape, dtype=np.float32)
    r = sum(((g[i] - centre[i]) / radii[i]) ** 2 for i in range(3))
    return r <= 1.0


def test_stepped_prediction_scores_worse_than_smooth():
    shape = (48, 40, 16)
    truth = ellipsoid(shape, (24, 20, 8), (10, 8, 6))
    smooth = ellipsoid(shape, (24.5, 20, 8), (9, 7.5, 5.5))  # a slightly small 3D blob
    rng = np.random.default_rng(0)
    stepped = np.zeros_like(smooth)  # 2D-like: each slice jitters sideways independently
    for z in range(shape[2]):
        dx, dy = rng.integers(-2, 3, size=2)
        stepped[:, :, z] = np.roll(np.roll(smooth[:, :, z], dx, axis=0), dy, axis=1)
    s, j = case_metrics(smooth, truth, SP), case_metrics(stepped, truth, SP)
    assert j["z_continuity"] < s["z_continuity"] - 0.1
    assert 0.0 <= j["z_continuity"] <= 1.0 and 0.0 <= s["z_continuity"] <= 1.0
    # the per-voxel view agrees on the volume (same voxel count) but not on shape
    assert j["tp"] + j["fp"] == s["tp"] + s["fp"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        case_metrics(vol(), vol((12, 10, 5)), SP)
    with pytest.raises(ValueError, match="spacing"):
        case_metrics(vol(), vol(), (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="X, Y, Z"):
        case_metrics(np.zeros((4, 4)), np.zeros((4, 4)), SP)


def test_mean_metrics():
    a = {"dice": 0.5, "hd95": 2.0}
    b = {"dice": 1.0, "hd95": 4.0}
    assert mean_metrics([a, b]) == {"dice": 0.75, "hd95": 3.0}
    assert mean_metrics([]) == {}


def test_hd95_ignores_a_small_far_outlier_that_max_hd_sees():
    # A 12^3 block predicted exactly, plus one stray voxel 22 mm away: under 5 % of the
    # surface points, so the 95th percentile stays 0 while the maximum (Hausdorff) is 22.2
    # and the mean surface distance is small but not 0.
    truth = np.zeros((40, 20, 20), bool)
    truth[4:16, 4:16, 4:16] = True
    pred = truth.copy()
    pred[37, 17, 17] = True
    m = case_metrics(pred, truth, SP)
    assert m["hd95"] == pytest.approx(0.0, abs=1e-9)
    from monai.metrics import compute_hausdorff_distance

    full = float(compute_hausdorff_distance(pred[None, None], truth[None, None],
                                            include_background=True, spacing=list(SP)))
    assert full == pytest.approx(math.sqrt(22**2 + 2**2 + 2**2))  # the outlier is far


def test_hd95_is_the_larger_directed_distance_for_a_prediction_inside_the_truth():
    # Truth = slab x = 2..8, prediction = plane x = 3 inside it. Prediction -> truth: every
    # point is 1 voxel from the face x = 2; truth -> prediction: face x = 2 is 1 voxel away,
    # face x = 8 is 5 voxels away, so its 95th percentile is 5 voxels = 10 mm at 2 mm in x.
    truth, pred = vol(), vol()
    truth[2:9] = True
    pred[3] = True
    sp = (2.0, 0.7, 3.0)
    assert case_metrics(pred, truth, sp)["hd95"] == pytest.approx(10.0)
    assert case_metrics(truth, pred, sp)["hd95"] == pytest.approx(10.0)  # symmetric


class _Ramp2d(torch.nn.Module):
    """2D model whose probability is ~1 where the input channel is 1, ~0 where it is 0."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 1)
        with torch.no_grad():
            self.conv.weight.fill_(40.0)
            self.conv.bias.fill_(-20.0)

    def forward(self, x):
        return self.conv(x)


class _PlanesPrep:
    """Two cases: truth = plane x = 2, image (the model's prediction) = plane x = 5, each
    with its own anisotropic voxel size; ``spacing`` (the mean) is deliberately neither."""

    spacings = {"a": (2.0, 0.7, 3.0), "b": (0.5, 1.0, 4.0)}
    spacing = (1.0, 1.0, 1.0)

    def image(self, case, phases):
        img = np.zeros((1, 12, 10, 6), np.float32)
        img[0, 5] = 1.0
        return img

    def mask(self, case):
        m = np.zeros((12, 10, 6), np.uint8)
        m[2] = 1
        return m

    def case_spacing(self, case):
        return self.spacings[case]


def test_evaluate_passes_each_cases_anisotropic_spacing_to_hd95():
    from study.train.engine import TrainConfig, evaluate

    rows = evaluate(_Ramp2d().eval(), TrainConfig(arch="unet2d", phases=("arterial",)),
                    _PlanesPrep(), ["a", "b"])
    got = {r["case"]: r["value"] for r in rows if r["metric"] == "hd95"}
    # 3 voxels along x: 3 * 2.0 mm and 3 * 0.5 mm (not the mean spacing, not z's)
    assert got == {"a": pytest.approx(6.0), "b": pytest.approx(1.5)}
    dice = {r["case"]: r["value"] for r in rows if r["metric"] == "dice"}
    assert dice == {"a": 0.0, "b": 0.0}
