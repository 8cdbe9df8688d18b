"""Samplers: balance, values, channel order, padding, seeding, DataLoader workers."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from study.data.samplers import make_sampler
from study.errors import ConfigError

PATCH = (16, 16, 8)
CENTRE = tuple(p // 2 for p in PATCH)


def test_3d_exactly_half_tumor_centred(prepared):
    ds = make_sampler("3d", prepared, prepared.split["train"], ["arterial"], seed=1, patch=PATCH,
                      length=40)
    assert len(ds) == 40
    centred, empty = 0, 0
    for i in range(len(ds)):
        x, y = ds[i]
        assert x.shape == (1, *PATCH) and y.shape == (1, *PATCH)
        assert x.dtype == torch.float32 and y.dtype == torch.float32
        if y[(0, *CENTRE)] == 1:
            centred += 1
            assert i % 2 == 0
        else:
            assert i % 2 == 1
        empty += int(y.sum() == 0)
    assert centred == 20
    assert empty >= 20  # every negative patch is tumor-free on this phantom


def test_3d_patch_values_come_from_the_prepared_volume(prepared):
    ds = make_sampler("3d", prepared, prepared.split["train"], ["pre", "portal"], seed=0, patch=PATCH)
    for i in range(6):
        case, c, positive = ds.centre(i)
        assert positive == (i % 2 == 0)
        lo = [c[d] - PATCH[d] // 2 for d in range(3)]
        img, msk = prepared.crop(case, ["pre", "portal"], lo, PATCH)
        x, y = ds[i]
        np.testing.assert_array_equal(x.numpy(), img)
        np.testing.assert_array_equal(y.numpy()[0], msk)
        if all(lo[d] >= 0 and lo[d] + PATCH[d] <= prepared.grid[d] for d in range(3)):
            full = prepared.image(case, ["pre", "portal"])
            sl = tuple(slice(lo[d], lo[d] + PATCH[d]) for d in range(3))
            np.testing.assert_array_equal(x.numpy(), full[(slice(None), *sl)])


def test_crop_replicates_edges(prepared):
    case = prepared.case_ids[0]
    full = prepared.image(case, ["arterial"])[0]
    img, msk = prepared.crop(case, ["arterial"], (-3, 0, -2), (8, 4, 6))
    np.testing.assert_array_equal(img[0, 3:, :, 2:], full[:5, :4, :4])
    np.testing.assert_array_equal(img[0, 0], img[0, 3])  # x < 0 replicates x = 0
    np.testing.assert_array_equal(img[0, :, :, 0], img[0, :, :, 2])  # z < 0 replicates z = 0
    assert msk.shape == (8, 4, 6) and msk.dtype == np.uint8


def test_crop_matches_clamped_indexing_anywhere(prepared):
    case = prepared.case_ids[1]
    full = prepared.image(case, ["pre", "delay"])
    mask = np.asarray(prepared.mask(case))
    rng = np.random.default_rng(0)
    for _ in range(25):  # boxes inside, across borders, and wholly outside the volume
        size = tuple(int(v) for v in rng.integers(1, 20, size=3))
        lo = tuple(int(rng.integers(-25, g + 5)) for g in prepared.grid)
        ix = np.ix_(*[np.clip(np.arange(lo[d], lo[d] + size[d]), 0, prepared.grid[d] - 1)
                      for d in range(3)])
        img, msk = prepared.crop(case, ["pre", "delay"], lo, size)
        np.testing.assert_allclose(img, full[(slice(None), *ix)], rtol=1e-6)
        np.testing.assert_array_equal(msk, mask[ix])


def test_3d_seeded_and_epoch_dependent(prepared):
    a = make_sampler("3d", prepared, prepared.split["train"], ["arterial"], seed=5, patch=PATCH)
    b = make_sampler("3d", prepared, prepared.split["train"], ["arterial"], seed=5, patch=PATCH)
    c = make_sampler("3d", prepared, prepared.split["train"], ["arterial"], seed=6, patch=PATCH)
    assert [a.centre(i) for i in range(8)] == [b.centre(i) for i in range(8)]
    assert [a.centre(i) for i in range(8)] != [c.centre(i) for i in range(8)]
    before = [a.centre(i) for i in range(8)]
    a.set_epoch(1)
    assert [a.centre(i) for i in range(8)] != before


def test_2d_empty_fraction(prepared):
    cases = prepared.split["train"]
    z = prepared.grid[2]
    with_tumor = sum(int((prepared.slice_tumor(c) > 0).sum()) for c in cases)
    every = make_sampler("2d", prepared, cases, ["arterial"])
    assert len(every) == len(cases) * z
    only = make_sampler("2d", prepared, cases, ["arterial"], empty_fraction=0.0)
    assert len(only) == with_tumor > 0
    assert all(only[i][1].sum() > 0 for i in range(len(only)))
    half = make_sampler("2d", prepared, cases, ["arterial"], empty_fraction=0.5)
    assert len(half) == with_tumor + round(0.5 * (len(cases) * z - with_tumor))
    x, y = every[0]
    assert x.shape == (1, 64, 48) and y.shape == (1, 64, 48)
    np.testing.assert_array_equal(x.numpy()[0], prepared.image(cases[0], ["arterial"])[0, :, :, 0])
    np.testing.assert_array_equal(y.numpy()[0], prepared.mask(cases[0])[:, :, 0])
    longer = make_sampler("2d", prepared, cases, ["arterial"], empty_fraction=0.0, length=3 * len(only))
    assert len(longer) == 3 * len(only)
    np.testing.assert_array_equal(longer[len(only)][0].numpy(), only[0][0].numpy())


def test_25d_channel_order_and_edge_padding(prepared):
    case = prepared.split["train"][0]
    phases = ["arterial", "portal"]
    ds = make_sampler("2.5d", prepared, [case], phases)
    vol = prepared.image(case, phases)  # (2, X, Y, Z)
    x0, y0 = ds[0]  # z = 0: slice -1 replicates slice 0
    assert x0.shape == (6, 64, 48) and y0.shape == (1, 64, 48)
    expect0 = [vol[0, :, :, 0], vol[0, :, :, 0], vol[0, :, :, 1],
               vol[1, :, :, 0], vol[1, :, :, 0], vol[1, :, :, 1]]
    np.testing.assert_array_equal(x0.numpy(), np.stack(expect0))
    x5, y5 = ds[5]  # z = 5
    expect5 = [vol[p, :, :, z] for p in range(2) for z in (4, 5, 6)]
    np.testing.assert_array_equal(x5.numpy(), np.stack(expect5))
    np.testing.assert_array_equal(y5.numpy()[0], prepared.mask(case)[:, :, 5])
    last = ds[prepared.grid[2] - 1][0].numpy()
    np.testing.assert_array_equal(last[2], last[1])  # slice Z replicates slice Z-1


def test_dataloader_workers_give_the_same_items(prepared):
    ds = make_sampler("3d", prepared, prepared.split["train"], ["arterial"], seed=2, patch=PATCH,
                      length=8)
    assert len(pickle.dumps(ds)) < 500_000
    direct = torch.stack([ds[i][0] for i in range(8)])
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    batches = torch.cat([x for x, _ in loader])
    torch.testing.assert_close(batches, direct)


def test_sampler_errors(prepared, tiny_dataset_factory, tmp_path):
    with pytest.raises(ConfigError, match="unknown sampler kind"):
        make_sampler("4d", prepared, prepared.split["train"], ["arterial"])
    with pytest.raises(ConfigError, match="unknown case"):
        make_sampler("2d", prepared, ["nope"], ["arterial"])
    with pytest.raises(ConfigError, match="'T1'"):
        make_sampler("2d", prepared, prepared.split["train"], ["T1"])
    from study.data import prepare

    empty = prepare(tiny_dataset_factory(tumor=False), grid=(8, 8, 4), cache_root=tmp_path / "c",
                    progress=False)
    with pytest.raises(ConfigError, match="no tumor"):
        make_sampler("3d", empty, empty.case_ids, ["pre"], patch=(4, 4, 2))
    with pytest.raises(ConfigError, match="empty_fraction"):
        make_sampler("2d", empty, empty.case_ids, ["pre"], empty_fraction=0.0)


@pytest.mark.parametrize("share, n_empty", [(0.25, 10), (0.5, 20), (0.75, 30), (0.0, 0)])
def test_3d_empty_fraction_is_the_tumor_free_share(prepared, share, n_empty):
    """Issue 13: the 3D sampler ignored empty_fraction (always half tumor-free)."""
    ds = make_sampler("3d", prepared, prepared.split["train"], ["arterial"], seed=1, patch=PATCH,
                      length=40, empty_fraction=share)
    flags = [ds.centre(i)[2] for i in range(40)]
    assert flags.count(False) == n_empty
    for i in range(40):  # the flag says what the patch holds
        _, y = ds[i]
        assert (y[(0, *CENTRE)] == 1) == flags[i]
    # spread evenly: every prefix holds the share up to one item
    for k in range(1, 41):
        assert abs(flags[:k].count(False) - share * k) <= 1


def test_3d_default_share_is_the_reports_balance(prepared):
    ds = make_sampler("3d", prepared, prepared.split["train"], ["arterial"], seed=1, patch=PATCH,
                      length=10)
    assert [ds.centre(i)[2] for i in range(10)] == [i % 2 == 0 for i in range(10)]


def test_3d_all_tumor_free_is_refused(prepared):
    with pytest.raises(ConfigError, match="empty_fraction"):
        make_sampler("3d", prepared, prepared.split["train"], ["arterial"], patch=PATCH,
                     empty_fraction=1.0)
