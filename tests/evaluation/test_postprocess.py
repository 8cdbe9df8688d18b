"""study.evaluation.postprocess: candidates by hand, and the choice on validation."""

from __future__ import annotations

import numpy as np
import pytest

from study.evaluation.metrics import case_metrics
from study.evaluation.postprocess import CANDIDATES, apply, choose


def _blob_and_islands():
    truth = np.zeros((24, 12, 12), bool)
    truth[2:6, 2:6, 2:6] = True  # 64 voxels
    pred = truth.copy()
    for y, z in ((2, 2), (2, 5), (5, 2), (5, 5)):  # 4 single-voxel islands, 10 mm away
        pred[15, y, z] = True
    return pred, truth


def test_largest_component_removes_far_islands_by_hand():
    pred, truth = _blob_and_islands()
    raw = case_metrics(pred, truth, (1.0, 1.0, 1.0))
    # Dice 2*64 / (68 + 64); HD95: 4 of the 60 predicted surface voxels lie 10 mm from the
    # truth (the islands face x = 5 at x = 15), more than 5 %, so the 95th percentile is 10
    assert raw["dice"] == pytest.approx(128 / 132)
    assert raw["hd95"] == pytest.approx(10.0)
    assert raw["lesion_precision"] == pytest.approx(1 / 5)
    kept = apply(pred, (1.0, 1.0, 1.0), "largest")
    np.testing.assert_array_equal(kept, truth)
    post = case_metrics(kept, truth, (1.0, 1.0, 1.0))
    assert post["dice"] == 1.0 and post["hd95"] == 0.0 and post["lesion_precision"] == 1.0
    got = choose([(pred, truth, (1.0, 1.0, 1.0))])
    assert got["chosen"] == "largest"  # first of the candidates that reach Dice 1
    assert got["val_dice"]["none"] == pytest.approx(128 / 132)


def test_min_volume_uses_the_voxel_size():
    pred, _ = _blob_and_islands()
    spacing = (2.0, 2.0, 3.0)  # an island is 12 mm³, the blob 768 mm³
    assert apply(pred, spacing, "min_10mm3").sum() == 68  # islands kept (12 >= 10)
    assert apply(pred, spacing, "min_50mm3").sum() == 64  # islands removed
    assert apply(pred, (1.0, 1.0, 1.0), "min_10mm3").sum() == 64  # 1 mm³ islands removed


def test_hole_filling_in_2d_and_3d():
    hollow = np.zeros((9, 9, 9), bool)
    hollow[2:7, 2:7, 2:7] = True
    hollow[3:6, 3:6, 3:6] = False  # a closed 3x3x3 cavity
    assert apply(hollow, (1, 1, 1), "fill_3d").sum() == 125
    # per axial slice only the slices through the cavity have an enclosed hole
    assert apply(hollow, (1, 1, 1), "fill_2d").sum() == 125
    cup = hollow.copy()
    cup[3:6, 3:6, 6] = False  # open the cavity at the top: no 3D hole any more
    assert apply(cup, (1, 1, 1), "fill_3d").sum() == cup.sum()
    # each axial slice is still a closed ring (the opening at z = 6 too): 4 x 9 filled
    assert apply(cup, (1, 1, 1), "fill_2d").sum() == cup.sum() + 36 == 125


def test_none_wins_when_nothing_beats_it():
    truth = np.zeros((20, 20, 6), bool)
    truth[2:5, 2:5, 1:3] = True
    truth[14:18, 14:18, 2:4] = True  # two lesions: "largest" would drop one
    got = choose([(truth.copy(), truth, (1.0, 1.0, 1.0))])
    assert got["chosen"] == "none"  # ties (fill, min volume) keep none
    assert got["val_dice"]["largest"] < got["val_dice"]["none"] == 1.0
    assert choose([])["chosen"] == "none"  # no validation case: nothing is applied
    assert set(got["val_dice"]) == set(CANDIDATES)


def test_unknown_candidate_is_a_config_error():
    from study.errors import ConfigError

    with pytest.raises(ConfigError, match="largest"):
        apply(np.zeros((2, 2, 2), bool), (1, 1, 1), "biggest")
