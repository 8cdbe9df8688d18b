"""Cross-validation folds for --finalists: grouped by case, seeded, written beside the split."""

from __future__ import annotations

import json

import pytest

from study.data.splits import load_or_write_folds, make_folds
from study.errors import ConfigError, DataError

CASES = [f"c{i:02d}" for i in range(11)]


def test_folds_partition_the_cases_and_train_is_the_rest():
    folds = make_folds(CASES, 3, seed=0)
    assert len(folds) == 3
    held = [f["val"] for f in folds]
    assert sorted(c for v in held for c in v) == CASES  # every case held out exactly once
    assert sorted(len(v) for v in held) == [3, 4, 4]  # sizes differ by at most one
    for f in folds:
        assert f["train"] == sorted(set(CASES) - set(f["val"]))
        assert f["val"] == sorted(f["val"])


def test_folds_are_seeded():
    assert make_folds(CASES, 4, seed=3) == make_folds(list(reversed(CASES)), 4, seed=3)
    assert make_folds(CASES, 4, seed=3) != make_folds(CASES, 4, seed=4)


def test_fold_count_errors_name_the_fix():
    with pytest.raises(ConfigError, match="at least 2 folds"):
        make_folds(CASES, 1)
    with pytest.raises(DataError, match="use --folds 3 or fewer"):
        make_folds(["a", "b", "c"], 4, where="x")


def test_folds_file_sits_next_to_the_split_and_is_reused(tmp_path):
    split_path = tmp_path / "splits" / "seed0_val0.2_test0.2.json"
    split_path.parent.mkdir()
    split = {"train": CASES[:8], "val": CASES[8:10], "test": CASES[10:]}
    folds, path = load_or_write_folds(split_path, split, 5, seed=0)
    assert path == tmp_path / "splits" / "seed0_val0.2_test0.2.folds5_seed0.json"
    assert json.loads(path.read_text()) == folds
    assert sorted(c for f in folds for c in f["val"]) == CASES[:10]  # test cases never in a fold
    path.write_text(json.dumps(folds[::-1]))  # edited by hand, same cases: kept as it is
    assert load_or_write_folds(split_path, split, 5, seed=0)[0] == folds[::-1]
    path.write_text(json.dumps(make_folds(CASES[:10], 3)))  # 3 folds in the 5-fold file: remade
    assert load_or_write_folds(split_path, split, 5, seed=0)[0] == folds
    other = {"train": CASES[:7], "val": CASES[7:9], "test": CASES[9:]}  # other cases: remade
    again, _ = load_or_write_folds(split_path, other, 5, seed=0)
    assert sorted(c for f in again for c in f["val"]) == CASES[:9]
