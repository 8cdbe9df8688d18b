"""``python -m study.data check DATASET [--label NAME]``, ``prepare DATASET``,
``phantom OUT [--cases 12 --seed 0]`` (write the synthetic data set), ``bench``."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from study.errors import ConfigError, run_cli


def _grid(text: str) -> tuple[int, int, int]:
    try:
        parts = tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 320x256x72, got {text!r}") from None
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"grid must be three positive sizes like 320x256x72, got {text!r}")
    return parts


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m study.data",
                                 description="Check or preprocess a data set (nnU-Net v2 raw layout).")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    chk = sub.add_parser("check", help="validate every case and print a summary")
    chk.add_argument("dataset", help="data set folder holding dataset.json, imagesTr, labelsTr")
    chk.add_argument("--label", default=None, help="target label name (default: tumor, else the only foreground label)")
    prep = sub.add_parser("prepare", help="resample + normalise into the cache (built once)")
    prep.add_argument("dataset")
    prep.add_argument("--label", default=None)
    prep.add_argument("--grid", type=_grid, default=None, help="one grid XxYxZ for every case (default 320x256x72)")
    prep.add_argument("--spacing", nargs="+", default=None, metavar="MM",
                      help="instead of --grid: each case on its own grid at this spacing "
                           "('auto' or X Y Z in mm, entries may be 'auto')")
    prep.add_argument("--cache", default=None, help="cache root (default $STUDY_CACHE or ~/.cache/study)")
    prep.add_argument("--seed", type=int, default=0, help="split seed")
    ph = sub.add_parser("phantom", help="write the synthetic multi-phase liver MRI phantom "
                        "(nnU-Net v2 raw layout) to OUT")
    ph.add_argument("out", help="output folder (must not exist or be empty)")
    ph.add_argument("--cases", type=int, default=12, help="number of cases (default 12)")
    ph.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    bench = sub.add_parser("bench", help="measure phantom build, cache build/size, sampler speed")
    bench.add_argument("--grid", type=_grid, default=(320, 256, 72))
    bench.add_argument("--cases", type=int, default=12)
    bench.add_argument("--phases", nargs="+", default=["arterial"])
    bench.add_argument("--patch", type=_grid, default=(64, 64, 64), help="3D patch XxYxZ")
    bench.add_argument("--seconds", type=float, default=3.0, help="time per sampler")
    bench.add_argument("--out", default=None, help="work folder to keep (default: temp, removed)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        from study.data.validate import check_dataset, format_summary

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the summary lists them
            summary = check_dataset(args.dataset, label=args.label)
        print(format_summary(summary))
        return 0
    if args.command == "prepare":
        from study.data.cache import geometry_text, prepare
        from study.data.spacing import geometry_args

        t0 = time.perf_counter()
        prep = prepare(args.dataset, label=args.label, cache_root=args.cache, seed=args.seed,
                       **geometry_args(args.grid, args.spacing))
        size = sum(f.stat().st_size for f in prep.cache_dir.rglob("*") if f.is_file())
        print(f"cache      {prep.cache_dir} ({size / 2**20:.1f} MiB, {time.perf_counter() - t0:.1f} s)")
        print(f"geometry   {geometry_text(prep.settings)}"
              + ("" if prep.fixed_grid else f" (median case grid {prep.grid})"))
        print(f"split      {prep.split_path}: " + ", ".join(f"{k} {len(v)}" for k, v in prep.split.items()))
        return 0
    if args.command == "phantom":
        from study.data.phantom import make_phantom

        t0 = time.perf_counter()
        out = make_phantom(args.out, cases=args.cases, seed=args.seed, progress=True)
        print(f"wrote {args.cases} cases to {out} in {time.perf_counter() - t0:.1f} s")
        return 0
    if args.command == "bench":
        from study.data.bench import format_result, run

        print(format_result(run(grid=args.grid, cases=args.cases, phases=args.phases,
                                 patch=args.patch, seconds=args.seconds, out=args.out)))
        return 0
    raise ConfigError("missing command: use `python -m study.data check DATASET`, "
                      "`prepare DATASET`, `phantom OUT` or `bench`")


def cli() -> int:
    """The console command (pyproject `[project.scripts]`)."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(run_cli(main))
