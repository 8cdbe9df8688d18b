"""Whole-volume inference: shapes, 2.5D slabs, seamless sliding window, NIfTI export."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from study.errors import ConfigError
from study.evaluation.inference import (
    make_slabs,
    predict_volume,
    resample_to_shape,
    write_prediction_nifti,
)


class Pick2d(nn.Module):
    """1x1 conv that returns input channel ``k`` as the logit."""

    def __init__(self, channels: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, k] = 1.0

    def forward(self, x):
        return self.conv(x)


def _logit(p):
    return np.log(p / (1 - p))


def test_2d_slice_by_slice_shape_and_values():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(2, 20, 12, 5)).astype(np.float32)  # X, Y not multiples of 16
    prob = predict_volume(Pick2d(2, 1), "2d", img, batch_size=2)
    assert prob.shape == (20, 12, 5) and prob.dtype == np.float32
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-img[1])), rtol=1e-5, atol=1e-6)


def test_make_slabs_phase_major_with_replicated_ends():
    c, nz = 2, 4
    img = np.zeros((c, 3, 2, nz), np.float32)
    for p in range(c):
        for z in range(nz):
            img[p, :, :, z] = 100 * p + z
    slabs = make_slabs(torch.from_numpy(img), torch.arange(nz))
    assert slabs.shape == (nz, 3 * c, 3, 2)
    got = slabs[:, :, 0, 0].numpy()
    expected = np.array(
        [
            [0, 0, 1, 100, 100, 101],  # z=0: z-1 replicated
            [0, 1, 2, 100, 101, 102],
            [1, 2, 3, 101, 102, 103],
            [2, 3, 3, 102, 103, 103],  # z=3: z+1 replicated
        ],
        np.float32,
    )
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("k,shift", [(0, -1), (1, 0), (2, 1), (4, 0), (5, 1)])
def test_25d_predicts_from_the_right_neighbour(k, shift):
    rng = np.random.default_rng(1)
    img = rng.uniform(0.1, 0.9, size=(2, 16, 16, 6)).astype(np.float32)
    logits = _logit(img)
    prob = predict_volume(Pick2d(6, k), "2.5d", logits, batch_size=4)
    phase = k // 3
    zs = np.clip(np.arange(6) + shift, 0, 5)
    np.testing.assert_allclose(prob, img[phase][:, :, zs], rtol=1e-5, atol=1e-6)


def _conv3d_model(seed=0):
    torch.manual_seed(seed)
    m = nn.Conv3d(1, 1, 3, padding=1)
    return m


def _full(model, img):
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(img)[None])).numpy()[0, 0]


def test_3d_pointwise_model_is_exact():
    rng = np.random.default_rng(2)
    img = rng.normal(size=(1, 40, 36, 20)).astype(np.float32)
    m = nn.Conv3d(1, 1, 1)
    prob = predict_volume(m, "3d", img, patch=(16, 16, 16), overlap=0.5, batch_size=4)
    assert prob.shape == (40, 36, 20)
    np.testing.assert_allclose(prob, _full(m, img), atol=1e-5)


def test_3d_sliding_window_has_no_seams():
    """A 3x3x3 conv is translation-equivariant except at zero-padded window borders:
    overlapping Gaussian-blended windows must match the full-volume conv closely, and much
    more closely than disjoint tiles (which show the seams the report saw)."""
    rng = np.random.default_rng(3)
    img = rng.normal(size=(1, 48, 40, 24)).astype(np.float32)
    m = _conv3d_model()
    full = _full(m, img)
    blended = predict_volume(m, "3d", img, patch=(16, 16, 16), overlap=0.5)
    tiles = predict_volume(m, "3d", img, patch=(16, 16, 16), overlap=0.0)
    err_blend = np.abs(blended - full)
    err_tiles = np.abs(tiles - full)
    # disjoint tiles: the error sits on the tile borders (x = 15|16, 31|32)
    assert err_tiles[15:17].max() > 0.02
    assert err_tiles[15:17].mean() > 10 * err_tiles[4:12].mean()
    assert err_blend.max() < 0.01 * err_tiles.max()
    assert err_blend.max() < 2e-3


def test_3d_volume_smaller_than_patch_is_padded():
    img = np.ones((1, 10, 12, 6), np.float32)
    prob = predict_volume(nn.Conv3d(1, 1, 1), "3d", img, patch=(16, 16, 16))
    assert prob.shape == (10, 12, 6)


def test_model_mode_restored_and_bad_args():
    m = Pick2d(1, 0)
    m.train()
    predict_volume(m, "2d", np.zeros((1, 16, 16, 2), np.float32))
    assert m.training
    with pytest.raises(ConfigError, match="kind"):
        predict_volume(m, "4d", np.zeros((1, 16, 16, 2), np.float32))
    with pytest.raises(ConfigError, match="overlap"):
        predict_volume(m, "3d", np.zeros((1, 16, 16, 2), np.float32), overlap=1.0)
    with pytest.raises(ConfigError, match=r"\(C, X, Y, Z\)"):
        predict_volume(m, "2d", np.zeros((16, 16, 2), np.float32))


def test_resample_to_shape_aligns_voxel_centres():
    vol = np.zeros((4, 2, 2), np.float32)
    vol[2:] = 1.0
    up = resample_to_shape(vol, (8, 2, 2), order=1)
    # voxel j of the new grid sits at (j + 0.5) / 2 - 0.5 of the old one
    np.testing.assert_allclose(up[:, 0, 0], [0, 0, 0, 0.25, 0.75, 1, 1, 1])
    down = resample_to_shape(up, (4, 2, 2), order=1)[:, 0, 0]
    np.testing.assert_allclose(down, [0, 0.125, 0.875, 1])


class FakeSource:
    def __init__(self, shape, affine):
        self._src = {"shape": shape, "affine": affine, "image_paths": [], "label_path": None}

    def source(self, case_id):
        return self._src


def test_write_prediction_nifti_uses_source_geometry(tmp_path):
    affine = np.array(
        [[0.0, -1.5, 0, 10], [1.5, 0, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]], np.float64
    )
    prep = FakeSource((30, 20, 9), affine)
    prob = np.zeros((16, 16, 8), np.float32)
    prob[8:] = 0.9  # upper half of x
    out = write_prediction_nifti(
        prob, prep, "c1", tmp_path / "p" / "c1.nii.gz", prob_path=tmp_path / "p" / "c1_prob.nii.gz"
    )
    img = nib.load(str(out))
    assert img.shape == (30, 20, 9)
    assert img.get_data_dtype() == np.uint8
    np.testing.assert_allclose(img.affine, affine)
    mask = np.asarray(img.dataobj)
    assert set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask[:15], 0)
    np.testing.assert_array_equal(mask[15:], 1)
    p = nib.load(str(tmp_path / "p" / "c1_prob.nii.gz"))
    assert p.shape == (30, 20, 9) and np.asarray(p.dataobj).max() == pytest.approx(0.9)
    assert sorted(x.name for x in (tmp_path / "p").iterdir()) == ["c1.nii.gz", "c1_prob.nii.gz"]


def test_write_prediction_nifti_goes_back_from_canonical_axes(tmp_path):
    # source axes: 0 -> anterior, 1 -> left, 2 -> superior ("ALS"); the grid was made in RAS
    # axes, where axis 0 is source axis 1 reversed (towards the right) and axis 1 source axis 0
    affine = np.array(
        [[0.0, -1.5, 0, 10], [1.5, 0, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]], np.float64
    )
    prep = FakeSource((30, 20, 9), affine)
    prep._src.update(canonical_shape=(20, 30, 9), canonical=True)
    prob = np.zeros((16, 16, 8), np.float32)
    prob[8:] = 0.9  # the right half, in RAS axes
    out = write_prediction_nifti(prob, prep, "c1", tmp_path / "c1.nii.gz")
    img = nib.load(str(out))
    assert img.shape == (30, 20, 9)
    np.testing.assert_allclose(img.affine, affine)  # the source file's own affine
    mask = np.asarray(img.dataobj)
    np.testing.assert_array_equal(mask[:, :10], 1)  # low indices of a left-pointing axis
    np.testing.assert_array_equal(mask[:, 10:], 0)  # = the right side
