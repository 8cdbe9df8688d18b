"""Train / validation / test splits: seeded, written once to a JSON file and reused.

* test: the cases of ``imagesTs`` when the data set has any, else a seeded ``test_fraction``
  of the training cases (at least 1).
* val: a seeded ``val_fraction`` of the remaining training cases (at least 1); used to rank
  trials. Test cases never influence trial selection.
* folds (``--finalists K --folds F``): train + val dealt into F seeded folds, written next to
  the split file; the finalists are retrained on each.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from study.errors import ConfigError, DataError
from study.io import write_text_atomic


def _take(ids: list[str], fraction: float, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    n = max(1, int(round(fraction * len(ids))))
    order = rng.permutation(len(ids))
    chosen = sorted(ids[i] for i in order[:n])
    rest = sorted(ids[i] for i in order[n:])
    return chosen, rest


def make_split(train_ids: list[str], test_ids: list[str], *, seed: int = 0,
               val_fraction: float = 0.2, test_fraction: float = 0.2, where: str = "") -> dict:
    """Seeded split of sorted case ids into disjoint train / val / test lists."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < frac < 1.0:
            raise ConfigError(f"{name} must be between 0 and 1 (exclusive), got {frac}")
    rng = np.random.default_rng(seed)
    train = sorted(train_ids)
    if test_ids:
        test = sorted(test_ids)
    else:
        if len(train) < 3:
            raise DataError(f"{where}: {len(train)} training case(s); need at least 3 to split into "
                            f"train / val / test (or add held-out cases in imagesTs/labelsTs)")
        test, train = _take(train, test_fraction, rng)
    if len(train) < 2:
        raise DataError(f"{where}: {len(train)} training case(s) after removing the test set; "
                        f"need at least 2 (train + val)")
    val, train = _take(train, val_fraction, rng)
    return {"train": train, "val": val, "test": test}


def load_or_write_split(path: Path, all_ids: list[str], **kwargs) -> dict:
    """Read the split at ``path`` if it exists and matches the case ids, else create it."""
    path = Path(path)
    if path.is_file():
        try:
            split = json.loads(path.read_text(encoding="utf-8"))
            ids = sorted(split["train"] + split["val"] + split["test"])
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(f"{path}: corrupt split file; delete it to recreate it") from None
        if ids == sorted(all_ids):
            return {k: list(split[k]) for k in ("train", "val", "test")}
        raise DataError(f"{path}: split file lists other cases than the data set; delete it to "
                        f"recreate it")
    split = make_split(**kwargs)
    write_text_atomic(path, json.dumps(split, indent=1) + "\n")
    return split


def make_folds(case_ids: list[str], folds: int, *, seed: int = 0, where: str = "") -> list[dict]:
    """``folds`` cross-validation folds of ``case_ids`` (grouped by case, seeded): a seeded
    permutation dealt round-robin, so fold sizes differ by at most one. Fold ``f`` is
    ``{"train": other folds' cases, "val": its own cases}``, both sorted."""
    ids = sorted(case_ids)
    if folds < 2:
        raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if len(ids) < folds:
        raise DataError(f"{where}: {len(ids)} train + validation case(s) cannot make {folds} "
                        f"folds; use --folds {max(2, len(ids))} or fewer")
    order = np.random.default_rng(seed).permutation(len(ids))
    held = [sorted(ids[i] for i in order[f::folds]) for f in range(folds)]
    return [{"train": sorted(set(ids) - set(v)), "val": v} for v in held]


def load_or_write_folds(split_path: Path, split: dict, folds: int, seed: int) -> tuple[list, Path]:
    """The folds of the split's train + val cases, written next to the split file
    (``splits/NAME.folds5_seed0.json``) and reused while they match the split."""
    split_path = Path(split_path)
    path = split_path.with_name(f"{split_path.stem}.folds{folds}_seed{seed}.json")
    cases = sorted(list(split["train"]) + list(split["val"]))
    if path.is_file():
        try:
            got = json.loads(path.read_text(encoding="utf-8"))
            if len(got) == folds and sorted(c for f in got for c in f["val"]) == cases:
                return got, path
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # unreadable or for other cases: made again (it is a pure function)
    got = make_folds(cases, folds, seed=seed, where=str(split_path))
    write_text_atomic(path, json.dumps(got, indent=1) + "\n")
    return got, path
