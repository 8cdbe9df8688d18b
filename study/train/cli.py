"""``python -m study.train``: one training run without Ray, evaluated on the test split.

Example (CPU, a few minutes)::

    python -m study.train --arch unet2d --phase arterial --iterations 300 \\
        --grid 64 48 16 --base-channels 8 --out runs/one

Writes into ``--out``:

* ``metrics.parquet``: long table ``arch, phase, iteration, split, case, metric, value,
  grid`` (``split`` "val" at every evaluation on the study grid, "test" once for the model
  evaluated on test, on the study grid and on the native grid: see `study.evaluation.native`);
* ``predictions/CASE.nii.gz``: test predictions (uint8 mask) in the source geometry;
* ``model/``: the checkpoint evaluated on test (``--test-model final`` or ``best`` by val
  Dice), ``config.json``: the training configuration; ``work/``: the engine's workdir.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from study.errors import ConfigError, run_cli
from study.names import ARCH_NAMES, AUGMENT_LEVELS, LOSSES, LRDEHL_VARIANTS


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m study.train",
        description="Train one segmentation model (no Ray), evaluate it on the test split.",
    )
    d = p.add_argument_group("data")
    d.add_argument("--data", type=Path, help="nnU-Net-layout data set (default: the phantom)")
    d.add_argument("--label", help="label name in dataset.json (default: the data layer's)")
    d.add_argument("--grid", type=_positive_int, nargs=3, metavar=("X", "Y", "Z"),
                   default=None, help="one grid for every case (default 320 256 72)")
    d.add_argument("--spacing", nargs="+", metavar="MM", default=None,
                   help="instead of --grid: each case on its own grid at this spacing, "
                        "'auto' (the data set's plan) or X Y Z in mm (each may be 'auto')")
    d.add_argument("--cache", type=Path, help="preprocessing cache root")
    d.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    m = p.add_argument_group("model and training")
    m.add_argument("--arch", choices=ARCH_NAMES, default="hybrid")
    m.add_argument("--phase", nargs="+", default=["arterial"], metavar="PHASE",
                   help="phase name(s) from dataset.json channel_names")
    m.add_argument("--iterations", type=_positive_int, required=True)
    m.add_argument("--base-channels", type=_positive_int)
    m.add_argument("--lr", type=_positive_float, default=1e-3)
    m.add_argument("--l2", type=float, default=5e-4)
    m.add_argument("--loss", choices=LOSSES, default="sqdice")
    m.add_argument("--lrdehl", choices=LRDEHL_VARIANTS, default="mae")
    m.add_argument("--switch-step", type=int, help="iteration at which the loss becomes LRDEHL")
    m.add_argument("--lr-after-switch", type=_positive_float, default=1.0)
    m.add_argument("--lr-halve-every", type=_positive_int,
                   help="default: 5000 scaled to the budget (5000 * iterations / 40000)")
    m.add_argument("--batch-size", type=_positive_int, default=4)
    m.add_argument("--patch", type=_positive_int, nargs=3, metavar=("X", "Y", "Z"),
                   help="3D patch (default: 64 per axis, capped to the grid, multiple of 16)")
    m.add_argument("--empty-fraction", type=float, default=None,
                   help="3D: share of tumor-free patches (default 0.5); 2D/2.5D: share of the "
                   "tumor-free slices kept (default 1.0)")
    m.add_argument("--eval-every", type=_positive_int,
                   help="default: iterations / 5, at most 1000")
    m.add_argument("--augment", choices=AUGMENT_LEVELS, default="none",
                   help="training-time augmentation level (README, Augmentation); "
                   "validation and test are never augmented (default none)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")
    m.add_argument("--num-workers", type=int, default=0)
    m.add_argument("--overlap", type=float, default=0.5, help="3D sliding-window overlap")
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True)
    o.add_argument("--test-model", choices=("final", "best"), default="final",
                   help="which weights are evaluated on test (best = highest val Dice)")
    o.add_argument("--no-predictions", action="store_true", help="do not write NIfTI files")
    o.add_argument("--force", action="store_true", help="allow a non-empty --out")
    return p


def default_patch(grid) -> tuple[int, int, int]:
    """64 per axis, capped to the grid rounded down to a multiple of 16 (at least 16)."""
    return tuple(max(16, min(64, (int(g) // 16) * 16)) for g in grid)


def _config(args, prep):
    from study.train.config import TrainConfig

    eval_every = args.eval_every or max(1, min(1000, args.iterations // 5))
    cfg = TrainConfig(
        arch=args.arch, phases=tuple(args.phase), base_channels=args.base_channels,
        lr=args.lr, l2=args.l2, loss=args.loss, lrdehl=args.lrdehl,
        switch_step=args.switch_step, lr_after_switch=args.lr_after_switch,
        iterations=args.iterations, eval_every=eval_every, batch_size=args.batch_size,
        lr_halve_every=args.lr_halve_every,
        patch=tuple(args.patch) if args.patch else default_patch(prep.grid),
        empty_fraction=args.empty_fraction, seed=args.seed, augment=args.augment,
        num_workers=args.num_workers,
        device=args.device, overlap=args.overlap,
        extra={"data": str(prep.root) if hasattr(prep, "root") else None,
               "fingerprint": prep.fingerprint},
    )
    return cfg.check(phases_available=list(prep.phases))


def _check_out(out: Path, force: bool) -> None:
    """--out must be a new or empty folder (or --force) in a writable place."""
    if out.exists():
        if not out.is_dir():
            raise ConfigError(f"--out {out}: is a file, not a folder; choose a new folder")
        if any(out.iterdir()) and not force:
            raise ConfigError(f"--out {out}: exists and is not empty; choose a new folder "
                              "or pass --force")
    parent = out if out.exists() else out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out}: {parent} is a file, so the folder cannot be created; "
                          "choose another --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: {parent} is not writable; choose a writable folder")


def _write_parquet(rows: list[dict], path: Path) -> None:
    """The rows in the results layer's metric schema (`study.results.METRIC_SCHEMA`)."""
    import polars as pl

    from study.results import METRIC_SCHEMA, write_parquet_atomic

    full = [{"study": "train", "trial": "train", "grid": "study", "postprocessing": "none", **r}
            for r in rows]
    write_parquet_atomic(pl.DataFrame(full, schema=METRIC_SCHEMA), path)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _check_out(args.out, args.force)
    prep = _prepare(args)
    cfg = _config(args, prep)
    from study.train.engine import preflight

    preflight(cfg, prep)  # every check before anything is written
    _start_out(args.out, cfg)
    rows, result, train_s = _train(cfg, prep, args.out)
    model_dir, iteration, test_rows = _test(args, cfg, prep, result)
    rows.extend({"arch": cfg.arch, "phase": "+".join(cfg.phases), "iteration": iteration,
                 "split": "test", **r} for r in test_rows)
    _write_parquet(rows, args.out / "metrics.parquet")
    print(f"trained in {train_s:.1f} s; test metrics of the {args.test_model} model "
          f"(iteration {iteration}):")
    if test_rows:
        from study.evaluation.table import format_test_table
        from study.results import read_metrics

        print(format_test_table(read_metrics(args.out)))
    else:
        print("(no test cases in the split)")
    print(f"wrote {args.out / 'metrics.parquet'}")
    return 0


def _prepare(args):
    from study.data import prepare

    data = args.data
    if data is None:
        from study.data.phantom import default_phantom

        data = default_phantom()
        print(f"data: default phantom at {data}", file=sys.stderr)
    kwargs = {"label": args.label, "cache_root": args.cache, "seed": args.split_seed}
    from study.data.spacing import geometry_args

    kwargs.update(geometry_args(args.grid, args.spacing))
    return prepare(data, progress=True, **kwargs)


def _start_out(out: Path, cfg) -> None:
    from study.io import write_text_atomic

    try:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.json", cfg.to_json())
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write there ({exc.strerror or exc}); "
                          "choose a writable folder") from None


def _geometry(prep) -> str:
    if getattr(prep, "fixed_grid", True):
        return f"grid {prep.grid}"
    return f"spacing {prep.target_spacing} mm (median grid {prep.grid})"


def _train(cfg, prep, out: Path) -> tuple[list[dict], dict, float]:
    """Train with a progress line per evaluation; (validation rows, result, seconds)."""
    from study.train.engine import train

    base = {"arch": cfg.arch, "phase": "+".join(cfg.phases)}
    rows: list[dict] = []
    print(f"{cfg.arch} on {base['phase']}: {cfg.iterations} iterations, {_geometry(prep)}, "
          f"train/val/test {len(prep.split['train'])}/{len(prep.split['val'])}/"
          f"{len(prep.split['test'])} cases", file=sys.stderr)

    def on_report(iteration, metrics, _ckpt):
        rows.extend({**base, "iteration": iteration, "split": "val", **r}
                    for r in metrics["per_case"])
        print(f"  it {iteration:>6}  loss {metrics['train_loss']:.4f}  val dice "
              f"{metrics['val_dice']:.4f}  {metrics['ms_per_iteration']:.0f} ms/it",
              file=sys.stderr)

    t0 = time.perf_counter()
    result = train(cfg, prep, on_report, workdir=out / "work")
    return rows, result, time.perf_counter() - t0


def _test(args, cfg, prep, result: dict) -> tuple[Path, int, list[dict]]:
    """Copy the final (or best) model to ``out/model`` and evaluate it on the test cases
    (both grids; predictions written unless --no-predictions)."""
    from study.evaluation.native import evaluate_test
    from study.train.checkpoint import load_model
    from study.train.engine import copy_checkpoint, resolve_device

    src = result["best_dir"] if args.test_model == "best" else result["checkpoint_dir"]
    if src is None:  # best is None when val Dice was never finite
        src = result["checkpoint_dir"]
    model_dir = copy_checkpoint(src, args.out / "model")
    model, mcfg = load_model(model_dir, device=None)
    model.to(resolve_device(cfg.device))
    iteration = int(_read_iteration(model_dir))
    pred_dir = None if args.no_predictions else args.out / "predictions"
    test_ids = list(prep.split["test"])
    rows = evaluate_test(model, mcfg, prep, test_ids, out_dir=pred_dir) if test_ids else []
    return model_dir, iteration, rows


def _read_iteration(model_dir: Path) -> int:
    import json

    return json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))["iteration"]


def cli() -> int:
    """The console command (pyproject `[project.scripts]`); `python -m study.train` runs it."""
    return run_cli(main)
