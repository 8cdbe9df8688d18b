"""Data loader headroom: samples/s the samplers deliver ÷ samples/s each architecture consumes.

For every architecture, on the phantom prepared at ``--grid`` (default the standard
320x256x72), with its sampler (``3d`` patches of ``--patch``, ``2d`` slices, ``2.5d`` slabs)
and batch ``--batch``, one run interleaves, round after round:

* **train**: one training update (forward, squared Dice loss, backward, Adam step) on a
  batch already in memory -> samples/s the model consumes;
* **loader wN**: ``--loader-batches`` batches drawn through the engine's own batch stream
  (`study.train.batches.batch_stream`, a DataLoader with N workers) -> samples/s delivered.
  With workers, the batches they prefetched while the model trained are drained untimed
  first, so the figure is the steady-state rate.

Headroom = loader rate ÷ train rate, per round; the median and spread over rounds are
reported. Target ≥ 10: at 0 workers (the engine's default) loading then costs ≤ 10% of a
step. Models run at their default widths, on this machine's CPU with torch's default threads.

``--augment none,default`` measures the loader once per augmentation level, side by side in
the same rounds: the sampler wrapped in `study.data.augment.Augmented` as the engine does
for ``TrainConfig.augment`` (``none``: the plain sampler, no wrapper).

    .venv/bin/python -m benchmarks.loader_headroom [--grid 320x256x72] [--reps 3]
    .venv/bin/python -m benchmarks.loader_headroom --augment none,default --archs unet2d,hybrid
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    banner,
    bench_prepared,
    interleave,
    paired_ratios,
    parse_size,
    print_table,
    summary,
    write_result,
)

ARCHS = ("unet3d", "simplified3d", "unet2d", "hybrid")
PHASE = "arterial"
TARGET = 10.0


def _train_measure(model, opt, loss_fn, x, y):
    def run() -> float:
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return x.shape[0] / (time.perf_counter() - t0)

    return run


def _loader_measure(stream, batch: int, n_batches: int, drain: int):
    def run() -> float:
        for _ in range(drain):  # prefetched while something else ran: not a steady rate
            next(stream)
        t0 = time.perf_counter()
        for _ in range(n_batches):
            next(stream)
        return n_batches * batch / (time.perf_counter() - t0)

    return run


def _dataset(kind, prep, patch, level: str):
    """The engine's training dataset at augmentation ``level`` (``none``: the plain sampler)."""
    from study.data.samplers import make_sampler

    ds = make_sampler(kind, prep, prep.split["train"], [PHASE], seed=0, patch=patch)
    if level == "none":
        return ds
    from study.data.augment import Augmented

    return Augmented(ds, level, kind, seed=0)


def _name(level: str, w: int) -> str:
    """Result key of a loader: ``loader_w2`` without augmentation, ``loader_default_w2`` with."""
    return f"loader_w{w}" if level == "none" else f"loader_{level}_w{w}"


def bench_arch(arch, prep, *, batch, patch, reps, loader_batches, workers,
               levels=("none",)) -> dict:
    from study.losses import squared_dice_loss
    from study.models import build_model, model_kind
    from study.train.batches import batch_stream

    kind = model_kind(arch)
    ds = _dataset(kind, prep, patch, "none")
    torch.manual_seed(0)
    model = build_model(arch, 1)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99))
    first = batch_stream(ds, batch, seed=1)
    x, y = next(first)
    del first
    measures = {"train": _train_measure(model, opt, squared_dice_loss, x, y)}
    streams = {}
    for level in levels:
        data = _dataset(kind, prep, patch, level)
        for w in workers:
            streams[level, w] = batch_stream(data, batch, seed=0, num_workers=w)
            next(streams[level, w])  # start the workers
            measures[_name(level, w)] = _loader_measure(
                streams[level, w], batch, loader_batches, drain=2 * w
            )
    measures["train"]()  # warm-up update (allocator, first-call costs)
    raw = interleave(measures, reps)
    streams.clear()  # shuts the worker processes down
    out = {
        "arch": arch,
        "kind": kind,
        "input": list(x.shape),
        "train_samples_per_s": summary(raw["train"]),
    }
    for level in levels:
        for w in workers:
            name = _name(level, w)
            out[f"{name}_samples_per_s"] = summary(raw[name])
            out[name.replace("loader", "headroom")] = summary(paired_ratios(raw[name],
                                                                            raw["train"]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=parse_size, default=(320, 256, 72))
    ap.add_argument("--patch", type=parse_size, default=(64, 64, 64))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--cases", type=int, default=4, help="phantom cases (default 4)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--loader-batches", type=int, default=8, help="batches per loader round")
    ap.add_argument("--workers", default="0,2", help="DataLoader worker counts (default 0,2)")
    ap.add_argument("--archs", default=",".join(ARCHS))
    ap.add_argument("--augment", default="none",
                    help="augmentation levels to load at, side by side (default none; "
                    "e.g. none,default)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    workers = [int(w) for w in args.workers.split(",")]
    levels = args.augment.split(",")
    from study.data.augment import resolve_level

    for level in levels:
        resolve_level(level)  # a bad name fails before anything is prepared
    banner("loader headroom")
    t0 = time.perf_counter()
    prep = bench_prepared(args.grid, cases=args.cases)
    print(f"   data: phantom {args.cases} cases at grid {prep.grid} ({time.perf_counter() - t0:.1f} s)")
    results = []
    for arch in args.archs.split(","):
        print(f"   {arch} ...", flush=True)
        results.append(bench_arch(arch, prep, batch=args.batch, patch=args.patch,
                                  reps=args.reps, loader_batches=args.loader_batches,
                                  workers=workers, levels=levels))
    names = [_name(level, w) for level in levels for w in workers]
    headers = ["arch", "input (B,C,...)", "train smp/s"]
    for name in names:
        short = name.removeprefix("loader_")
        headers += [f"loader {short} smp/s", f"headroom {short}", f"spread {short}"]
    rows = []
    for r in results:
        row = [r["arch"], "x".join(map(str, r["input"])), r["train_samples_per_s"]["median"]]
        for name in names:
            h = r[name.replace("loader", "headroom")]
            row += [r[f"{name}_samples_per_s"]["median"], h["median"], h["spread"]]
        rows.append(row)
    print_table(headers, rows, title=f"headroom = loader samples/s ÷ train samples/s (target ≥ {TARGET:g})")
    worst = min(r[name.replace("loader", "headroom")]["median"] for r in results for name in names)
    print(f"worst headroom {worst:.1f} ({'meets' if worst >= TARGET else 'BELOW'} target {TARGET:g})")
    write_result("loader_headroom", {
        "settings": {"grid": list(prep.grid), "patch": list(args.patch), "batch": args.batch,
                     "phase": PHASE, "cases": args.cases, "reps": args.reps,
                     "loader_batches": args.loader_batches, "workers": workers,
                     "augment": levels, "device": "cpu"},
        "target": TARGET,
        "worst_headroom": worst,
        "results": results,
    }, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
