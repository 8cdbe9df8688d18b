"""Train / validation / test splits: seeded, written once to a JSON file and reused.

* test: the cases of ``imagesTs`` when the data set has any, else a seeded ``test_fraction``
  of the training cases (at least 1).
* val: a seeded ``val_fraction`` of the remaining training cases (at least 1); used to rank
  trials. Test cases never influence trial selection.
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
