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

**The v2 table** (issue 29; ``record --design sobol --seeds 0 1``, `record_v2`): `SOBOL_POINTS`
configurations of a scrambled, seeded Sobol sample (`sobol_points`) over `SPACE` (the unet2d
``cpu`` budget's space, augment none, inputs single) plus the grid above (lr after switch 1,
MAE), each trained with every training seed of ``--seeds`` (same data, split, iterations and
evaluations as the grid). The grid's seed 0 is the first table's curves (same seed, same
settings): not trained again. One part per (design, configuration, seed) in
``PARTS/v2/``; the order is seed 0 of every Sobol point (shuffled), then the grid's, then
seed 1 of each (same shuffles): a recording stopped early is a random subset of the Sobol
sample with one seed. Merged into `TABLE_V2_NAME` (columns ``design``, ``config``,
``seed``, the parameters, the values) next to `SETTINGS_V2_NAME`; ``--merge-only`` merges
what is recorded so far.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing as mp
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import REPO, environment

DATA = REPO / "benchmarks" / "data"
TABLE_NAME = "hpo_replay_curves.parquet"
SETTINGS_NAME = "hpo_replay_settings.json"
PARTS_NAME = "hpo_replay_parts"  # one file per finished run (v2/ committed: resumable anywhere)
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
    """Train one configuration; one row per evaluation (the point's keys, then the values).
    ``lr_after_switch``, ``lrdehl`` and ``seed`` come from the point where it has them (the
    v2 design), else from `FIXED` and `SEED` (the grid of the first table)."""
    from study.train.engine import TrainConfig, train

    switch = point["switch_step"]
    cfg = TrainConfig(
        arch=FIXED["arch"], phases=tuple(prep.phases), base_channels=point["base_channels"],
        lr=point["lr"], l2=point["l2"], loss=point["loss"],
        lrdehl=point.get("lrdehl", FIXED["lrdehl"]),
        switch_step=None if switch == "never" else int(round(float(switch) * ITERATIONS)),
        lr_after_switch=point.get("lr_after_switch", FIXED["lr_after_switch"]),
        iterations=ITERATIONS, eval_every=EVAL_EVERY, batch_size=FIXED["batch_size"],
        seed=point.get("seed", SEED))
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


# --------------------------------------------------------------- v2: Sobol + seeds (issue 29)

TABLE_V2_NAME = "hpo_replay_curves_v2.parquet"
SETTINGS_V2_NAME = "hpo_replay_settings_v2.json"
PARTS_V2 = "v2"  # under PARTS_NAME: DESIGN_NNN_sS.parquet
TABLE_V2 = DATA / TABLE_V2_NAME
#: the unet2d ``cpu`` budget's space (search_spaces/unet2d.yaml), space-YAML form
SPACE = {
    "lr": {"loguniform": [1.0e-4, 1.0e-2]},
    "l2": {"loguniform": [1.0e-6, 1.0e-3]},
    "base_channels": {"choice": [8, 16]},
    "loss": {"choice": ["sqdice", "dice"]},
    "switch_step": {"choice": ["never", 0.5, 0.75]},
    "lr_after_switch": {"loguniform": [0.01, 1.0]},
    "lrdehl": {"choice": ["mae", "mse"]},
}
SPACE_FIXED = {"augment": "none", "inputs": "single"}
SOBOL_POINTS, SOBOL_SEED = 48, 29
SEEDS = (0, 1)
#: the continuous columns and their bounds: the replay's ``fake.nearest`` (log scale)
NEAREST = {c: list(v["loguniform"]) for c, v in SPACE.items() if "loguniform" in v}
V2_COLUMNS = ("design", "config", "seed", "lr", "l2", "base_channels", "loss", "switch_step",
              "lr_after_switch", "lrdehl", "iteration", "val_dice", "val_precision",
              "val_recall", "train_loss", "seconds")


def sobol_points(n: int = SOBOL_POINTS, seed: int = SOBOL_SEED) -> list[dict]:
    """``n`` points of a scrambled Sobol sample (scipy.stats.qmc, seeded) over `SPACE`, one
    unit-cube dimension per parameter: log-uniform ones mapped on the log scale, choices by
    equal shares. Drawn as the first ``n`` of 2^ceil(log2 n) points, so a larger ``n``
    keeps the smaller design as its prefix (a recording can be extended)."""
    from scipy.stats import qmc

    if n < 1:
        raise ValueError(f"sobol_points: n must be >= 1 (got {n})")
    u = qmc.Sobol(d=len(SPACE), scramble=True, seed=seed).random_base2(
        max(1, math.ceil(math.log2(n))))[:n]
    points = []
    for i, row in enumerate(u):
        point = {"design": "sobol", "config": i}
        for (name, dist), x in zip(SPACE.items(), row, strict=True):
            if "loguniform" in dist:
                lo, hi = (math.log(v) for v in dist["loguniform"])
                point[name] = float(math.exp(lo + float(x) * (hi - lo)))
            else:
                values = dist["choice"]
                point[name] = values[min(int(float(x) * len(values)), len(values) - 1)]
        points.append(point)
    return points


def grid_points_v2() -> list[dict]:
    """The grid of the first table in the v2 form (lr after switch 1, MAE)."""
    return [{"design": "grid", **p, "lr_after_switch": FIXED["lr_after_switch"],
             "lrdehl": FIXED["lrdehl"]} for p in configurations()]


def design_v2(points: int = SOBOL_POINTS, seeds=SEEDS, grid: bool = True,
              sobol_seed: int = SOBOL_SEED) -> list[dict]:
    """Every (configuration, training seed) of the v2 recording in the order it is trained
    (module docstring): per seed, the Sobol points shuffled, then the grid shuffled."""
    designs = [sobol_points(points, sobol_seed)] + ([grid_points_v2()] if grid else [])
    order = []
    for seed in seeds:
        for pts in designs:
            shuffled = list(pts)
            random.Random(SEED).shuffle(shuffled)
            order += [{**p, "seed": int(seed)} for p in shuffled]
    return order


def _part_v2(parts: Path, point: dict) -> Path:
    return Path(parts) / PARTS_V2 / f"{point['design']}_{point['config']:03d}_s{point['seed']}.parquet"


def _grid_seed0(out: Path):
    """The grid's seed-0 curves from the first table (v2 columns), or None without it."""
    import polars as pl

    path = Path(out) / TABLE_NAME
    if not path.is_file():
        return None
    return pl.read_parquet(path).with_columns(
        design=pl.lit("grid"), seed=pl.lit(SEED, dtype=pl.Int64),
        lr_after_switch=pl.lit(float(FIXED["lr_after_switch"])),
        lrdehl=pl.lit(FIXED["lrdehl"])).select(V2_COLUMNS)


_PREP = {}  # the worker's prepared data set (one per process)


def _init_v2(work: str) -> None:
    import torch

    torch.set_num_threads(1)
    _PREP["prep"] = _prepared(Path(work))


def _train_v2(args) -> None:
    point, parts = args
    import polars as pl

    from study.io import atomic_path

    if _part_v2(parts, point).exists():
        return
    t = time.perf_counter()
    rows = train_one(point, _PREP["prep"])
    with atomic_path(_part_v2(parts, point), ".parquet") as tmp:
        pl.DataFrame(rows).select(V2_COLUMNS).write_parquet(tmp)
    print(f"{point['design']} {point['config']:3d} seed {point['seed']}: final val Dice "
          f"{rows[-1]['val_dice']:.4f} ({time.perf_counter() - t:.0f} s, pid {os.getpid()})",
          flush=True)


def record_v2(workers: int = 2, work: Path | None = None, out: Path = DATA,
              points: int = SOBOL_POINTS, seeds=SEEDS, grid: bool = True,
              sobol_seed: int = SOBOL_SEED, merge_only: bool = False) -> Path:
    """Train what is missing of `design_v2` (resumable), then merge (`merge_v2`)."""
    out = Path(out)
    parts = out / PARTS_NAME
    (parts / PARTS_V2).mkdir(parents=True, exist_ok=True)
    order = design_v2(points, seeds, grid, sobol_seed)
    have0 = _grid_seed0(out) is not None
    todo = [p for p in order if not _part_v2(parts, p).exists()
            and not (have0 and p["design"] == "grid" and p["seed"] == SEED)]
    print(f"{len(order) - len(todo)} of {len(order)} (configuration, seed) recorded or taken "
          f"from {TABLE_NAME}; training {0 if merge_only else len(todo)} with {workers} "
          f"worker(s)", flush=True)
    if todo and not merge_only:
        work = Path(work or tempfile.gettempdir()) / "hpo_replay_record"
        work.mkdir(parents=True, exist_ok=True)
        _prepared(work)  # build the cache once, before the workers start
        jobs = [(p, str(parts)) for p in todo]
        if workers == 1:
            _init_v2(str(work))
            for job in jobs:
                _train_v2(job)
        else:
            # SIGTERM (kill, timeout) ends the pool too: without this the parent dies and its
            # spawn workers finish their trainings beside whatever runs next
            previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            try:
                with mp.get_context("spawn").Pool(workers, _init_v2, (str(work),)) as pool:
                    list(pool.imap(_train_v2, jobs, chunksize=1))  # in order, one at a time
            finally:
                signal.signal(signal.SIGTERM, previous)
    return merge_v2(out, order, {"points": points, "seeds": list(seeds), "grid": grid,
                                 "sobol_seed": sobol_seed})


def merge_v2(out: Path, order: list[dict], design: dict) -> Path:
    """Merge the recorded parts (and the grid's seed 0 from the first table) into
    `TABLE_V2_NAME` and write `SETTINGS_V2_NAME`; what is missing is listed there."""
    import polars as pl

    from study.io import atomic_path, write_text_atomic

    parts = Path(out) / PARTS_NAME
    frames, missing = [], []
    grid0 = _grid_seed0(out)
    for p in order:
        if _part_v2(parts, p).exists():
            frames.append(pl.read_parquet(_part_v2(parts, p)).select(V2_COLUMNS))
        elif not (grid0 is not None and p["design"] == "grid" and p["seed"] == SEED):
            missing.append(f"{p['design']}:{p['config']}:s{p['seed']}")
    if grid0 is not None and any(p["design"] == "grid" and p["seed"] == SEED for p in order):
        frames.append(grid0)
    if not frames:
        raise SystemExit("nothing recorded yet: no v2 parts and no first table")
    table = pl.concat(frames, how="vertical_relaxed").sort("design", "config", "seed",
                                                          "iteration")
    with atomic_path(Path(out) / TABLE_V2_NAME, ".parquet") as tmp:
        table.write_parquet(tmp)
    write_text_atomic(Path(out) / SETTINGS_V2_NAME, json.dumps(
        {**settings(), "seed": None, "space": SPACE, "space_fixed": SPACE_FIXED,
         "nearest": NEAREST, "design": design, "sobol": "scipy.stats.qmc.Sobol(d=7, "
         "scramble=True, seed=sobol_seed), first `points` of 2^ceil(log2 points)",
         "grid_seed0": f"from {TABLE_NAME}" if grid0 is not None else None,
         "configurations": table.select("design", "config").unique().height,
         "curves": table.select("design", "config", "seed").unique().height,
         "missing": missing, "environment": environment()}, indent=1) + "\n")
    print(f"wrote {Path(out) / TABLE_V2_NAME} ({table.height} rows; {len(missing)} "
          f"(configuration, seed) not recorded yet)", flush=True)
    return Path(out) / TABLE_V2_NAME
