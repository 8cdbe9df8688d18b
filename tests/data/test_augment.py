"""Training-time augmentation (`study.data.augment`): alignment of image and mask, one
transform per 2.5D slab, seeding, `none` = today's batches, the level table and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.data.augment import GROUPS, INTENSITY, LEVELS, Augmented, Augmenter, check_settings
from study.data.samplers import make_sampler
from study.errors import ConfigError
from study.names import AUGMENT_LEVELS
from study.train.batches import batch_stream

ALL_P1 = {  # every group on, at the default level's strengths (heavy's elastic)
    **{g: {**v, "p": 1.0} for g, v in LEVELS["default"].items()},
    "elastic": {**LEVELS["heavy"]["elastic"], "p": 1.0},
    "gamma": {**LEVELS["default"]["gamma"], "p": 1.0, "p_invert": 0.0},
}
SPATIAL_ONLY = {g: ALL_P1[g] for g in ("rotate", "scale", "elastic", "mirror")}
SHAPES = {"2d": (96, 96), "2.5d": (96, 96), "3d": (64, 56, 32)}


def ellipsoid(kind: str, channels: int = 1, sharp: float = 0.002):
    """An off-centre ellipse (2D) / ellipsoid (3D): image = a sigmoid of the ellipse's radius
    (0.5 on its surface; ``sharp`` small: an indicator to within a few thousandths of a voxel,
    so image >= 0.5 is the mask), mask = inside."""
    size = SHAPES[kind]
    centre = [0.6 * n for n in size]
    semi = [0.25 * n for n in size]
    axes = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in size], indexing="ij")
    r = np.sqrt(sum(((a - c) / s) ** 2 for a, c, s in zip(axes, centre, semi, strict=True)))
    img = 1.0 / (1.0 + np.exp(np.clip(-(1.0 - r) / sharp, -60, 60)))
    x = torch.from_numpy(np.repeat(img[None], channels, 0).astype(np.float32))
    y = torch.from_numpy((r < 1.0)[None].astype(np.float32))
    return x, y


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.bool(), b.bool()
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def assert_binary(y: torch.Tensor) -> None:
    assert y.dtype == torch.float32
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("kind", ["2d", "2.5d", "3d"])
@pytest.mark.parametrize("group", ["rotate", "scale", "elastic", "mirror", "all spatial"])
def test_spatial_transforms_keep_image_and_mask_aligned(kind, group):
    settings = SPATIAL_ONLY if group == "all spatial" else {group: SPATIAL_ONLY[group]}
    aug = Augmenter(settings, kind)
    x, y = ellipsoid(kind, channels=6 if kind == "2.5d" else 1)
    moved = 0
    for i in range(6):
        xo, yo = aug(x, y, np.random.default_rng([3, 0, i]))
        assert xo.shape == x.shape and yo.shape == y.shape and xo.dtype == torch.float32
        assert_binary(yo)
        moved += dice(yo[0], y[0]) < 0.98  # the transform did move the structure
        assert yo.sum() > 0.3 * y.sum()  # and kept it in view
        # the mask still covers the transformed structure of the image
        assert dice(yo[0], xo[0] >= 0.5) > 0.99
    assert moved >= 4  # (a scale near 1 or a small angle may leave it almost in place)


@pytest.mark.parametrize("kind", ["2d", "3d"])
def test_rotation_turns_the_structure_in_plane(kind):
    """A bar along axis 0 turned by up to 90 degrees in-plane: its extent along the slice
    axis stays; along axes 0-1 it changes."""
    size = SHAPES[kind]
    x = torch.zeros(1, *size)
    x[(0, slice(8, size[0] - 8), slice(30, 34)) + ((slice(10, 14),) if kind == "3d" else ())] = 1
    aug = Augmenter({"rotate": {"p": 1.0, "in_plane": 90.0, "out_of_plane": 0.0}}, kind)
    _, yo = aug(x, x.clone(), np.random.default_rng(5))
    before, after = x[0].nonzero(), yo[0].nonzero()
    ext = lambda p: (p.max(0).values - p.min(0).values).tolist()  # noqa: E731
    assert ext(after)[1] > ext(before)[1] + 4
    if kind == "3d":
        assert ext(after)[2] == ext(before)[2]


def test_scale_above_one_enlarges():
    x, y = ellipsoid("2d")
    big = Augmenter({"scale": {"p": 1.0, "range": [1.4, 1.4]}}, "2d")
    small = Augmenter({"scale": {"p": 1.0, "range": [0.7, 0.7]}}, "2d")
    rng = np.random.default_rng
    assert big(x, y, rng(0))[1].sum() / y.sum() == pytest.approx(1.96, rel=0.06)
    assert small(x, y, rng(0))[1].sum() / y.sum() == pytest.approx(0.49, rel=0.06)


def test_mirror_never_flips_left_right_and_follows_the_axes():
    x, y = ellipsoid("3d")
    m = Augmenter({"mirror": {"p": 1.0, "axes": [1, 2]}}, "3d")
    xo, yo = m(x, y, np.random.default_rng(0))
    assert torch.equal(yo, torch.flip(y, dims=[2, 3])) and torch.equal(xo, torch.flip(x, [2, 3]))
    for level in LEVELS.values():
        assert 0 not in level.get("mirror", {"axes": []})["axes"]
    x2, y2 = ellipsoid("2d")  # a 2D item has no axis 2: only axis 1 is flipped
    _, yo2 = m.__class__({"mirror": {"p": 1.0, "axes": [1, 2]}}, "2d")(
        x2, y2, np.random.default_rng(0))
    assert torch.equal(yo2, torch.flip(y2, dims=[2]))


@pytest.mark.parametrize("kind", ["2d", "2.5d", "3d"])
@pytest.mark.parametrize("group", INTENSITY)
def test_intensity_transforms_change_the_image_not_the_mask(kind, group):
    x, y = ellipsoid(kind, channels=6 if kind == "2.5d" else 1, sharp=0.3)
    x = x * 3 - 1  # a z-scored-like range
    aug = Augmenter({group: ALL_P1[group]}, kind)
    xo, yo = aug(x, y, np.random.default_rng(1))
    assert torch.equal(yo, y)
    assert xo.shape == x.shape and xo.dtype == torch.float32 and torch.isfinite(xo).all()
    assert not torch.equal(xo, x)
    if kind == "2.5d" and group != "noise":  # one draw for every channel of a slab
        assert all(torch.allclose(xo[c], xo[0], atol=1e-5) for c in range(6))


@pytest.mark.parametrize("level", ["light", "default", "heavy"])
def test_slab_slices_and_phases_get_one_spatial_transform(level):
    """2 phases x 3 slices, all copies of one structure: after the spatial part they are
    still identical copies, and the mask still lies on them."""
    x, y = ellipsoid("2.5d", channels=6)
    aug = Augmenter({**LEVELS[level], **SPATIAL_ONLY}, "2.5d")
    moved = 0
    for i in range(6):
        xo, yo = aug.spatial(x, y, np.random.default_rng([0, 0, i]))
        assert all(torch.equal(xo[c], xo[0]) for c in range(1, 6))
        assert dice(yo[0], xo[0] >= 0.5) > 0.99
        moved += not torch.equal(xo, x)
    assert moved == 6


def test_augmented_is_seeded_per_item_epoch_and_seed(prepared):
    sampler = make_sampler("2.5d", prepared, prepared.split["train"], ["arterial"], seed=0)
    a = Augmented(sampler, "heavy", "2.5d", seed=4)
    b = Augmented(make_sampler("2.5d", prepared, prepared.split["train"], ["arterial"], seed=0),
                  "heavy", "2.5d", seed=4)
    same = lambda p, q: torch.equal(p[0], q[0]) and torch.equal(p[1], q[1])  # noqa: E731
    for i in range(3):
        assert same(a[i], b[i])  # same seed, epoch and index: the same item
    x0 = a[0]
    assert not torch.equal(x0[0], sampler[0][0])  # heavy changed it
    assert not same(Augmented(sampler, "heavy", "2.5d", seed=5)[0], x0)  # another seed
    a.set_epoch(1)
    assert sampler.epoch == 1 and a.epoch == 1 and len(a) == len(sampler)
    assert not same(a[0], x0)  # another epoch
    a.set_epoch(0)
    assert same(a[0], x0)
    assert a.rng(0).random() != a.rng(1).random()  # another index draws another stream


class _Same(torch.utils.data.Dataset):
    """One item at every index: only the augmentation tells items apart."""

    def __init__(self, item):
        self.item = item

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.item


def test_other_index_gets_other_draws():
    aug = Augmented(_Same(ellipsoid("2d")), ALL_P1, "2d", seed=0)
    items = [aug[i][0] for i in range(4)]
    assert all(not torch.equal(items[0], other) for other in items[1:])


def _take(stream, n):
    return [next(stream) for _ in range(n)]


def test_none_is_bit_identical_to_the_plain_sampler(prepared):
    ids = prepared.split["train"]
    for kind in ("2d", "2.5d", "3d"):
        plain = make_sampler(kind, prepared, ids, ["arterial"], seed=2, patch=(16, 16, 16))
        wrapped = Augmented(make_sampler(kind, prepared, ids, ["arterial"], seed=2,
                                         patch=(16, 16, 16)), "none", kind, seed=2)
        for (xa, ya), (xb, yb) in zip(_take(batch_stream(plain, 3, 2), 5),
                                      _take(batch_stream(wrapped, 3, 2), 5), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("augment", ["none", "default"])
def test_engine_wraps_only_when_asked(prepared, tmp_path, augment):
    from study.train import engine
    from study.train.config import TrainConfig

    cfg = TrainConfig(arch="hybrid", phases=("arterial",), base_channels=4, iterations=2,
                      batch_size=3, seed=1, augment=augment)
    s = engine._build(cfg, prepared, tmp_path)
    got = _take(engine._batches(s, 0), 4)
    plain = make_sampler("2.5d", prepared, list(prepared.split["train"]), ["arterial"], seed=1)
    want = _take(batch_stream(plain, 3, 1), 4)
    equal = [torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
             for a, b in zip(got, want, strict=True)]
    if augment == "none":
        assert all(equal)
    else:
        assert not all(equal)
        for _, y in got:
            assert_binary(y)
        # the augmented stream is itself reproducible, from any start batch
        again = _take(engine._batches(s, 2), 2)
        assert all(torch.equal(a[0], b[0]) for a, b in zip(again, got[2:], strict=True))


def test_workers_draw_the_same_augmented_batches(prepared):
    ids = prepared.split["train"]
    ds = Augmented(make_sampler("2d", prepared, ids, ["arterial"], seed=0), "heavy", "2d", seed=0)
    a = _take(batch_stream(ds, 2, 0, num_workers=0), 4)
    b = _take(batch_stream(ds, 2, 0, num_workers=2), 4)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_level_table():
    assert tuple(LEVELS) == AUGMENT_LEVELS == ("none", "light", "default", "heavy")
    for settings in LEVELS.values():
        assert check_settings(settings) == settings
    d = LEVELS["default"]  # nnU-Net v2's defaults (rotation held to +-30 in-plane)
    assert d["scale"] == {"p": 0.2, "range": [0.7, 1.4]}
    assert d["noise"] == {"p": 0.1, "variance": [0.0, 0.1]}
    assert d["gamma"]["range"] == [0.7, 1.5] and d["gamma"]["p"] == 0.3
    assert d["lowres"] == {"p": 0.25, "zoom": [0.5, 1.0]}
    assert "elastic" not in d and "elastic" in LEVELS["heavy"]
    for group in ("rotate", "scale", "noise", "brightness", "gamma"):  # weakest to strongest
        ps = [LEVELS[lv][group]["p"] for lv in ("light", "default", "heavy")]
        assert ps == sorted(ps)


@pytest.mark.parametrize("bad, names", [
    ("strong", "unknown level 'strong'"),
    ({"twist": {"p": 1.0}}, "unknown group 'twist'"),
    ({"rotate": {"p": 1.5, "in_plane": 10.0, "out_of_plane": 0.0}}, "augment.rotate.p"),
    ({"rotate": {"p": 0.5, "in_plane": 10.0}}, "augment.rotate"),
    ({"scale": {"p": 0.5, "range": [1.4, 0.7]}}, "augment.scale.range"),
    ({"scale": {"p": 0.5, "range": [0.0, 1.4]}}, "augment.scale.range"),
    ({"noise": {"p": 0.5, "variance": "big"}}, "augment.noise.variance"),
    ({"lowres": {"p": 0.5, "zoom": [0.5, 2.0]}}, "augment.lowres.zoom"),
    ({"mirror": {"p": 0.5, "axes": [1, 3]}}, "augment.mirror.axes"),
    ({"elastic": {"p": 0.5, "spacing": 0.0, "magnitude": 0.02}}, "augment.elastic.spacing"),
    ({"gamma": {"p": 0.5, "range": [0.7, 1.5], "p_invert": -1}}, "augment.gamma.p_invert"),
    (["default"], "augment: expected a level name"),
])
def test_bad_settings_name_the_key(bad, names):
    with pytest.raises(ConfigError, match="augment") as err:
        Augmented(_Same(ellipsoid("2d")), bad, "2d")
    assert names in str(err.value)


def test_bad_kind_and_seed():
    with pytest.raises(ConfigError, match="augment: unknown item kind"):
        Augmenter(LEVELS["default"], "4d")
    with pytest.raises(ConfigError, match="augment: seed"):
        Augmented(_Same(ellipsoid("2d")), "default", "2d", seed=-1)
    assert set(GROUPS) >= set(LEVELS["heavy"])
