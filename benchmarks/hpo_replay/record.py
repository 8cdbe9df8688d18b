"""Record the learning curves of a finite grid of configurations (once; resumable).

Every configuration of `GRID` (lr x L2 x base channels x loss x switch = 64 points) is
trained to the full budget by `study.train.engine.train` on real MRI: the 15 CHAOS T2-SPIR cases
of ``../shared/data`` (the peer benchmark's data set: its 5 test cases stay out; of the 10
others, a seeded 30 % are validation: 7 train / 3 val), resampled to 128 x 128 x 32, unet2d
on whole axial slices, batch 4, `ITERATIONS` updates with the validation Dice (mean over
the 3 whole validation volumes) at every `EVAL_EVERY` (10 points per curve) and the wall
time spent. Every configuration trains with the same seed (common random numbers: two
curves differ by their configuration only).

Each finished configuration is written to ``PARTS/NNN.parquet`` at once (atomic), so a
killed recording continues where it stopped; ``--workers 2`` trains two configurations at a
time (one torch thread each: the machine has 2 cores). When all are there the parts are
merged into `TABLE` (long: one row per configuration and evaluation) next to `SETTINGS`.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import random
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, environment

DATA = REPO / "benchmarks" / "data"
TABLE_NAME = "hpo_replay_curves.parquet"
SETTINGS_NAME = "hpo_replay_settings.json"
PARTS_NAME = "hpo_replay_parts"  # one file per finished configuration (not committed)
TABLE = DATA / TABLE_NAME

GRID = {
    "lr": [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2],
    "l2": [1.0e-5, 5.0e-4],
    "base_channels": [8, 16],
    "loss": ["dice", "sqdice"],
    "switch_step": ["never", 0.75],
}
FIXED = {"arch": "unet2d", "batch_size": 4, "lr_after_switch": 1.0, "lrdehl": "mae"}
ITERATIONS, EVAL_EVERY = 800, 80
SIZE = (128, 128, 32)
SEED, SPLIT_SEED, VAL_FRACTION = 0, 0, 0.3
PARAMS = tuple(GRID)


def configurations() -> list[dict]:
    """The grid in a fixed order; ``config`` is the index."""
    return [{"config": i, **dict(zip(PARAMS, values, strict=True))}
            for i, values in enumerate(itertools.product(*GRID.values()))]


def settings() -> dict:
    return {"grid": GRID, "fixed": FIXED, "iterations": ITERATIONS, "eval_every": EVAL_EVERY,
            "size": list(SIZE), "seed": SEED, "split_seed": SPLIT_SEED,
            "val_fraction": VAL_FRACTION,
            "data": "chaos_t2_mini + chaos_t2_dev (benchmarks.peer_baseline.build_dataset)"}


def _prepared(work: Path):
    from benchmarks.peer_baseline import build_dataset
    from study.data import prepare

    ds = work / "ds"
    if not ds.exists():
        build_dataset(ds)
    return prepare(ds, grid=SIZE, cache_root=work / "cache", seed=SPLIT_SEED,
                   val_fraction=VAL_FRACTION, progress=False)


def train_one(point: dict, prep) -> list[dict]:
    """Train one configuration; one row per evaluation."""
    from study.train.engine import TrainConfig, train

    switch = point["switch_step"]
    cfg = TrainConfig(
        arch=FIXED["arch"], phases=tuple(prep.phases), base_channels=point["base_channels"],
        lr=point["lr"], l2=point["l2"], loss=point["loss"], lrdehl=FIXED["lrdehl"],
        switch_step=None if switch == "never" else int(round(float(switch) * ITERATIONS)),
        lr_after_switch=FIXED["lr_after_switch"], iterations=ITERATIONS,
        eval_every=EVAL_EVERY, batch_size=FIXED["batch_size"], seed=SEED)
    rows, t0 = [], time.perf_counter()

    def on_report(iteration, metrics, _ckpt):
        rows.append({**point, "switch_step": str(switch), "iteration": int(iteration),
                     "val_dice": float(metrics["val_dice"]),
                     "val_precision": float(metrics.get("val_precision", float("nan"))),
                     "val_recall": float(metrics.get("val_recall", float("nan"))),
                     "train_loss": float(metrics.get("train_loss", float("nan"))),
                     "seconds": time.perf_counter() - t0})

    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, prep, on_report, workdir=tmp)
    return rows


def _part(parts: Path, i: int) -> Path:
    return Path(parts) / f"{i:03d}.parquet"


def _worker(args) -> None:
    points, work, parts = args
    import polars as pl
    import torch

    from study.io import atomic_path

    torch.set_num_threads(1)
    prep = _prepared(Path(work))
    for point in points:
        if _part(parts, point["config"]).exists():
            continue
        t = time.perf_counter()
        rows = train_one(point, prep)
        with atomic_path(_part(parts, point["config"]), ".parquet") as tmp:
            pl.DataFrame(rows).write_parquet(tmp)
        print(f"config {point['config']:3d} {point}: final val Dice {rows[-1]['val_dice']:.4f} "
              f"({time.perf_counter() - t:.0f} s, pid {os.getpid()})", flush=True)


def record(workers: int = 2, work: Path | None = None, out: Path = DATA) -> Path:
    """Train what is missing, then merge into ``out/TABLE_NAME`` (+ ``SETTINGS_NAME``)."""
    import polars as pl

    from study.io import atomic_path, write_text_atomic

    out = Path(out)
    parts = out / PARTS_NAME
    parts.mkdir(parents=True, exist_ok=True)
    work = Path(work or tempfile.gettempdir()) / "hpo_replay_record"
    work.mkdir(parents=True, exist_ok=True)
    _prepared(work)  # build the cache once, before the workers start
    todo = [p for p in configurations() if not _part(parts, p["config"]).exists()]
    random.Random(SEED).shuffle(todo)  # a partial table is a random subset of the grid
    print(f"{len(configurations()) - len(todo)} of {len(configurations())} configurations "
          f"recorded; training {len(todo)} with {workers} worker(s)", flush=True)
    chunks = [(todo[w::workers], str(work), str(parts)) for w in range(workers)]
    if workers == 1:
        _worker(chunks[0])
    else:
        with mp.get_context("spawn").Pool(workers) as pool:
            pool.map(_worker, chunks)
    table = pl.concat([pl.read_parquet(_part(parts, p["config"])) for p in configurations()])
    table = table.sort("config", "iteration")
    with atomic_path(out / TABLE_NAME, ".parquet") as tmp:
        table.write_parquet(tmp)
    write_text_atomic(out / SETTINGS_NAME, json.dumps(
        {**settings(), "environment": environment()}, indent=1) + "\n")
    print(f"wrote {out / TABLE_NAME} ({table.height} rows)", flush=True)
    return out / TABLE_NAME
