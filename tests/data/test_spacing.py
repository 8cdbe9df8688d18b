"""Target spacing: per-case grids at one mm per voxel, `spacing: auto` from the headers, 2D
windows planned from the median case grid, and predict at the run's spacing."""

import json

import numpy as np
import pytest

from study.data import prepare
from study.data.samplers import make_sampler, slice_patch
from study.data.spacing import case_grid, parse_spacing, resolve_spacing
from study.errors import ConfigError


def _case(write_nifti, root, case, shape, spacing, box_mm=(12.0, 12.0, 8.0)):
    """A case whose tumor is a box of ``box_mm`` at the volume's centre."""
    affine = np.diag([*spacing, 1.0])
    lab = np.zeros(shape, dtype=np.uint8)
    half = [int(round(b / s / 2)) for b, s in zip(box_mm, spacing, strict=True)]
    c = [n // 2 for n in shape]
    lab[c[0] - half[0]:c[0] + half[0], c[1] - half[1]:c[1] + half[1],
        c[2] - half[2]:c[2] + half[2]] = 1
    img = np.random.default_rng(len(case)).normal(100, 5, shape).astype(np.float32)
    img[lab > 0] += 80
    write_nifti(root / "imagesTr" / f"{case}_0000.nii.gz", img, affine)
    write_nifti(root / "labelsTr" / f"{case}.nii.gz", lab, affine)


def _dataset(root, cases: dict) -> str:
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "arterial"}, "labels": {"background": 0, "tumor": 1},
        "numTraining": len(cases), "file_ending": ".nii.gz"}))
    return str(root)


def test_parse_spacing_forms():
    assert parse_spacing("auto") == "auto"
    assert parse_spacing(["auto", 2.5, "3"]) == ("auto", 2.5, 3.0)
    for bad in ("fine", [1.0, 2.0], [1.0, -2.0, 3.0], [1.0, True, 3.0], [1.0, "x", 2.0], 5):
        with pytest.raises(ConfigError, match="budgets.x.spacing: expected auto or"):
            parse_spacing(bad, "budgets.x.spacing")


def test_case_grid_by_hand():
    # 100 x 1 mm -> 50 at 2 mm; 80 x 1 mm -> 40; 20 slices of 5 mm stay 20
    assert case_grid((1.0, 1.0, 5.0), (100, 80, 20), (2.0, 2.0, 5.0)) == (50, 40, 20)
    assert case_grid((0.7, 0.7, 2.5), (512, 512, 3), (1.4, 1.4, 50.0)) == (256, 256, 1)


@pytest.mark.parametrize("inplane, z", [(20, 5.0), (40, 4.2)])
def test_auto_takes_the_median_of_the_training_headers(tmp_path, write_nifti, inplane, z):
    from study.data import read_dataset

    spacings = {"c0": (1.0, 1.0, 5.0), "c1": (1.0, 1.0, 5.0), "c2": (2.0, 2.0, 4.0)}
    for case, sp in spacings.items():
        _case(write_nifti, tmp_path, case, (inplane, inplane, 10), sp, box_mm=(4, 4, 8))
    spec = read_dataset(_dataset(tmp_path, spacings))
    # medians (1, 1, 5). 20 voxels in-plane: 10 slices x 3 >= 20, the median stays. 40 voxels
    # in-plane: 10 x 3 < 40 and 5 mm > 3 x 1 mm (nnU-Net's anisotropy rule): the slice axis
    # takes the 10th percentile of (4, 5, 5) = 4 + 0.2 x (5 - 4) = 4.2
    assert resolve_spacing("auto", spec) == [1.0, 1.0, z]
    assert resolve_spacing([3.0, "auto", "auto"], spec) == [3.0, 1.0, z]
    assert resolve_spacing([3.0, 3.0, 6.0], spec) == [3.0, 3.0, 6.0]


def test_twice_the_field_of_view_is_processed_at_the_same_mm_per_voxel(tmp_path, write_nifti):
    # one scan of 40 x 40 mm and one of 80 x 80 mm, both at 2 mm: the same tumor box
    _case(write_nifti, tmp_path, "small", (20, 20, 6), (2.0, 2.0, 4.0))
    _case(write_nifti, tmp_path, "large", (40, 40, 6), (2.0, 2.0, 4.0))
    _case(write_nifti, tmp_path, "third", (30, 30, 6), (2.0, 2.0, 4.0))
    root = _dataset(tmp_path, {"small": 0, "large": 0, "third": 0})
    prep = prepare(root, spacing=(4.0, 4.0, "auto"), cache_root=tmp_path / "c", progress=False)
    assert prep.target_spacing == (4.0, 4.0, 4.0) and not prep.fixed_grid
    assert prep.case_grid("small") == (10, 10, 6) and prep.case_grid("large") == (20, 20, 6)
    assert prep.case_spacing("small") == prep.case_spacing("large") == (4.0, 4.0, 4.0)
    assert prep.image("large").shape == (1, 20, 20, 6)
    # the tumor keeps its size in voxels: 3 x 3 x 2 at 4 mm, in both scans
    assert prep.tumor_voxels("small") == prep.tumor_voxels("large") == 3 * 3 * 2
    # a fixed grid squeezes the large scan to 8 mm per voxel: what `spacing` avoids
    fixed = prepare(root, grid=(10, 10, 6), cache_root=tmp_path / "c", progress=False)
    assert fixed.case_spacing("large") == (8.0, 8.0, 4.0)
    assert fixed.tumor_voxels("large") < fixed.tumor_voxels("small")
    with pytest.raises(ConfigError, match="either grid .* or spacing"):
        prepare(root, grid=(10, 10, 6), spacing="auto", cache_root=tmp_path / "c")


@pytest.fixture(scope="module")
def spaced(small_phantom, tmp_path_factory):
    return prepare(small_phantom, spacing=(3.0, 3.0, "auto"), progress=False,
                   cache_root=tmp_path_factory.mktemp("spaced"))


@pytest.mark.parametrize("kind, channels", [("2d", 2), ("2.5d", 6)])
def test_slice_windows_have_the_planned_size_and_hold_tumor(spaced, kind, channels):
    patch = slice_patch(spaced, 16)
    assert patch == tuple(-(-g // 16) * 16 for g in spaced.grid[:2])
    train = spaced.split["train"]
    ds = make_sampler(kind, spaced, train, ["arterial", "portal"], seed=3, slice_patch=patch)
    again = make_sampler(kind, spaced, train, ["arterial", "portal"], seed=3, slice_patch=patch)
    for i in range(0, len(ds), max(1, len(ds) // 25)):
        x, y = ds[i]
        assert x.shape == (channels, *patch) and y.shape == (1, *patch)
        case, z = ds.item(i)
        if spaced.slice_tumor(case)[z] > 0:
            assert y.sum() > 0  # a tumor slice's window holds tumor (foreground oversampling)
        x2, y2 = again[i]
        assert torch_equal(x, x2) and torch_equal(y, y2)


def test_a_window_smaller_than_the_slice_is_placed_on_the_tumor(spaced):
    train = spaced.split["train"]
    ds = make_sampler("2d", spaced, train, ["arterial"], seed=0, slice_patch=(16, 16))
    tumor = [i for i in range(len(ds)) if spaced.slice_tumor(ds.item(i)[0])[ds.item(i)[1]] > 0]
    assert tumor
    for i in tumor[:20]:
        assert ds[i][1].sum() > 0
    with pytest.raises(ConfigError, match="in-plane patch size"):
        make_sampler("2d", spaced, train, ["arterial"], seed=0)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_predict_puts_a_new_scan_on_its_own_grid_at_the_run_spacing(tmp_path):
    from study.apply.bundle import Bundle
    from study.apply.inputs import grid_inputs

    bundle = Bundle(source=tmp_path, name="r", dataset={}, label="tumor", label_value=1,
                    grid=None, models=[],
                    preprocessing={"grid": None, "spacing": [4.0, 4.0, 4.0], "orientation": "RAS"})
    assert bundle.spacing == (4.0, 4.0, 4.0)
    for shape in ((20, 20, 6), (40, 40, 6)):  # twice the field of view: twice the voxels
        vol = np.random.default_rng(0).normal(size=shape).astype(np.float32)
        images, affine = grid_inputs({"arterial": vol}, np.diag([2.0, 2.0, 4.0, 1.0]), bundle)
        assert images["arterial"].shape == (shape[0] // 2, shape[1] // 2, 6)
        assert np.allclose(affine, np.diag([2.0, 2.0, 4.0, 1.0]))
