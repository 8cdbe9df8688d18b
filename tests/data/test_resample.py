"""Resampling, normalisation and quantisation: hand-computed values."""

import numpy as np
import pytest

from study.data import resample as rs


def _world_centroid(mask, affine):
    idx = np.argwhere(mask > 0).mean(axis=0)
    return (affine @ np.r_[idx, 1.0])[:3]


def test_mask_centroid_and_volume_survive_resampling():
    shape, spacing, grid = (40, 30, 12), (2.0, 2.5, 5.0), (64, 48, 20)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-30.0, 12.0, 7.0]
    ii, jj, kk = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    world = [ii * spacing[0], jj * spacing[1], kk * spacing[2]]
    centre, radius = (33.0, 41.0, 27.0), 14.0
    mask = (sum((w - c) ** 2 for w, c in zip(world, centre, strict=True)) < radius**2).astype(np.uint8)
    out = rs.resample_mask(mask, grid)
    assert out.shape == grid and out.dtype == np.uint8
    assert set(np.unique(out).tolist()) == {0, 1}
    gaff = rs.grid_affine(affine, shape, grid)
    gspacing = rs.grid_spacing(spacing, shape, grid)
    np.testing.assert_allclose(np.abs(np.diag(gaff)[:3]), gspacing)
    c0, c1 = _world_centroid(mask, affine), _world_centroid(out, gaff)
    assert np.abs(c0 - c1).max() < 0.5 * min(spacing)  # mm
    v0 = mask.sum() * np.prod(spacing)
    v1 = out.sum() * np.prod(gspacing)
    assert abs(v1 - v0) / v0 < 0.05


def test_trilinear_follows_the_voxel_centre_convention():
    # a linear ramp along x is reproduced exactly in the interior: value(j) = (j + .5) * s - .5
    shape, grid = (10, 4, 4), (25, 4, 4)
    ramp = np.broadcast_to(np.arange(10, dtype=np.float32)[:, None, None], shape)
    out = rs.resample_image(ramp, grid)
    s = 10 / 25
    expected = (np.arange(25) + 0.5) * s - 0.5
    interior = (expected >= 0) & (expected <= 9)
    np.testing.assert_allclose(out[interior, 2, 2], expected[interior], atol=1e-5)
    # grid_affine says the same: grid voxel j sits at native voxel (j + .5) s - .5
    gaff = rs.grid_affine(np.eye(4), shape, grid)
    assert gaff[0, 0] == pytest.approx(s) and gaff[0, 3] == pytest.approx((s - 1) / 2)


def test_multichannel_image_resampled_per_channel():
    img = np.stack([np.full((6, 6, 4), 3.0), np.full((6, 6, 4), -2.0)]).astype(np.float32)
    out = rs.resample_image(img, (9, 5, 7))
    assert out.shape == (2, 9, 5, 7)
    np.testing.assert_allclose(out[0], 3.0)
    np.testing.assert_allclose(out[1], -2.0)


def test_normalise_percentile_clip_then_zscore():
    vol = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    lo, hi = 0.005 * 999, 0.995 * 999  # numpy's linear percentile of 0..999
    clipped = np.clip(np.arange(1000.0), lo, hi)
    mean, std = clipped.mean(), clipped.std()
    out = rs.normalise(vol)
    assert out.dtype == np.float32
    assert out.min() == pytest.approx((lo - mean) / std, abs=1e-5)
    assert out.max() == pytest.approx((hi - mean) / std, abs=1e-5)
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(out.std()) == pytest.approx(1.0, abs=1e-5)
    # an outlier does not move the result beyond the clip
    vol2 = vol.copy()
    vol2[0, 0, 0] = 1e9
    assert rs.normalise(vol2).max() == pytest.approx(out.max(), rel=1e-3)


def test_normalise_constant_volume_is_zero():
    np.testing.assert_array_equal(rs.normalise(np.full((4, 4, 4), 7.0)), 0.0)


def test_quantise_round_trip():
    rng = np.random.default_rng(0)
    vol = rng.normal(0, 2, size=(8, 8, 8)).astype(np.float32)
    q, scale = rs.quantise(vol)
    assert q.dtype == np.int16
    assert np.abs(q).max() == 32000
    assert scale == pytest.approx(np.abs(vol).max() / 32000)
    assert np.abs(q * scale - vol).max() <= scale / 2 + 1e-9
