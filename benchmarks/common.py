"""Shared helpers of the benchmarks: interleaved side-by-side timing, tables, JSON results.

These machines are shared and noisy, so every figure a benchmark reports is a *ratio* of two
things measured in the same run, with their repetitions interleaved (A B A B ...), and the
spread over repetitions is reported alongside the median.

Run a benchmark from the repository root: ``.venv/bin/python -m benchmarks.NAME`` (or
``.venv/bin/python benchmarks/NAME.py``). Each prints a table and writes
``benchmarks/results/NAME.json``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REPO = HERE.parent


def interleave(measures: dict[str, Callable[[], float]], reps: int) -> dict[str, list[float]]:
    """Call each measure once per round, round after round (A B A B ...), ``reps`` rounds.

    Each callable returns one measurement (e.g. a rate); the order inside a round alternates
    (A B, then B A) so neither side always runs first after the other.
    """
    names = list(measures)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names if r % 2 == 0 else reversed(names):
            out[n].append(float(measures[n]()))
    return out


def timed(fn: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def summary(values: list[float]) -> dict:
    """Median, min, max, and relative spread ((max - min) / median) of measurements."""
    vals = [float(v) for v in values]
    med = statistics.median(vals)
    return {
        "median": med,
        "min": min(vals),
        "max": max(vals),
        "spread": (max(vals) - min(vals)) / med if med else float("nan"),
        "n": len(vals),
        "values": vals,
    }


def paired_ratios(a: list[float], b: list[float]) -> list[float]:
    """Round-by-round ratios a[i] / b[i] (both measured in the same round)."""
    return [x / y if y else float("inf") for x, y in zip(a, b, strict=True)]


def fmt(v, digits: int = 3) -> str:
    if isinstance(v, float):
        if v != v:  # NaN
            return "nan"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(v)


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """Print (and return) a plain-text table with right-aligned columns."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = []
    if title:
        lines.append(title)
    lines.append("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def environment() -> dict:
    """Where the numbers came from: versions, CPU/GPU, load, commit, date."""
    import torch

    env = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        env["loadavg_1m"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        env["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def write_result(name: str, payload: dict, out_dir: Path | None = None) -> Path:
    """Write ``payload`` (plus the environment) to ``benchmarks/results/NAME.json`` atomically."""
    from study.io import write_text_atomic

    out = Path(out_dir or RESULTS) / f"{name}.json"
    body = {"benchmark": name, "environment": environment(), **payload}
    write_text_atomic(out, json.dumps(body, indent=2, sort_keys=False, default=_jsonable) + "\n")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}", flush=True)
    return out


def _jsonable(v):
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, tuple):
        return list(v)
    if hasattr(v, "item"):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


def bench_prepared(grid=(320, 256, 72), cases: int = 4, seed: int = 0, cache_root=None):
    """The phantom (``cases`` cases) prepared at ``grid``, cached under the study cache root
    (``$STUDY_CACHE`` or ``~/.cache/study``); built on first use."""
    from study.data import prepare
    from study.data.phantom import default_phantom

    root = default_phantom(cache_root, cases=cases, seed=seed)
    return prepare(root, grid=tuple(grid), cache_root=cache_root, progress=False)


def parse_size(text: str) -> tuple[int, ...]:
    """``"320x256x72"`` -> ``(320, 256, 72)``."""
    return tuple(int(v) for v in text.lower().split("x"))


def banner(title: str) -> None:
    print(f"== {title}", flush=True)
    print(f"   python {sys.version.split()[0]}, {os.cpu_count()} CPU(s)", flush=True)
