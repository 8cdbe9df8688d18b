"""The public API on the shared fixtures: shapes, dtypes, split, pickling."""

import pickle

import numpy as np

from study.data import Prepared, read_dataset


def test_prepared_fixture_shapes_and_split(prepared):
    assert isinstance(prepared, Prepared)
    assert prepared.phases == ["pre", "arterial", "portal", "delay"]
    assert prepared.grid == (64, 48, 16)
    split = prepared.split
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (4, 1, 1)
    assert not set(split["train"]) & set(split["val"]) | set(split["train"]) & set(split["test"])
    case = split["train"][0]
    img = prepared.image(case, ["arterial", "portal"])
    assert img.shape == (2, 64, 48, 16) and img.dtype == np.float32
    mask = prepared.mask(case)
    assert mask.shape == (64, 48, 16) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= {0, 1}


def test_prepared_pickles_without_arrays(prepared):
    case = prepared.case_ids[0]
    before = prepared.image(case, ["pre"])  # opens memmaps
    blob = pickle.dumps(prepared)
    assert len(blob) < 200_000
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.image(case, ["pre"]), before)


def test_tiny_dataset_factory_reads(tiny_dataset_factory):
    root = tiny_dataset_factory(cases=3, test_cases=1)
    spec = read_dataset(root)
    assert spec.phases == ["pre", "arterial"]
    assert spec.train_ids == ["case_000", "case_001", "case_002"]
    assert spec.test_ids == ["case_003"]
    assert spec.label_name == "tumor" and spec.label_value == 1
