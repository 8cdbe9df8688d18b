"""Measurements of the data layer: phantom build, cache build/size, sampler throughput.

``python -m study.data bench [--grid 320x256x72] [--cases 12] [--out DIR]`` writes a fresh
phantom and cache under ``DIR`` (default: a temp dir, removed afterwards) and prints one
line per measurement.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sampler_rate(prep, kind: str, phases, *, patch=(64, 64, 64), seconds: float = 3.0) -> float:
    """Items per second drawn from a fresh sampler (single process, warm page cache)."""
    from study.data.samplers import make_sampler

    ds = make_sampler(kind, prep, prep.split["train"], phases, patch=patch, length=10**6)
    ds[0]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ds[n + 1]
        n += 1
    return n / (time.perf_counter() - t0)


def run(grid=(320, 256, 72), cases: int = 12, out: Path | None = None, phases=("arterial",),
        patch=(64, 64, 64), seconds: float = 3.0) -> dict:
    from study.data.cache import prepare
    from study.data.phantom import make_phantom

    tmp = None
    if out is None:
        tmp = out = Path(tempfile.mkdtemp(prefix="study-bench-"))
    out = Path(out)
    res: dict = {"grid": tuple(grid), "cases": cases}
    try:
        t0 = time.perf_counter()
        root = make_phantom(out / "phantom", cases=cases, seed=0)
        res["phantom_s"] = time.perf_counter() - t0
        res["phantom_mib"] = _dir_size(root) / 2**20
        t0 = time.perf_counter()
        prep = prepare(root, grid=grid, cache_root=out / "cache", progress=False)
        res["prepare_s"] = time.perf_counter() - t0
        res["cache_mib"] = _dir_size(prep.cache_dir) / 2**20
        t0 = time.perf_counter()
        prepare(root, grid=grid, cache_root=out / "cache", progress=False)
        res["reopen_s"] = time.perf_counter() - t0
        for kind in ("3d", "2d", "2.5d"):
            res[f"{kind}_items_per_s"] = sampler_rate(prep, kind, list(phases), patch=patch,
                                                      seconds=seconds)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


def format_result(res: dict) -> str:
    g = "x".join(map(str, res["grid"]))
    return "\n".join([
        f"phantom  {res['cases']} cases: {res['phantom_s']:.1f} s, {res['phantom_mib']:.1f} MiB",
        f"cache    grid {g}: built in {res['prepare_s']:.1f} s, {res['cache_mib']:.1f} MiB, "
        f"reopened in {res['reopen_s']:.2f} s",
        *(f"sampler  {k:<4} {res[f'{k}_items_per_s']:.0f} items/s" for k in ("3d", "2d", "2.5d")),
    ])
