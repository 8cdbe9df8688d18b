"""``python -m benchmarks.hpo_replay {record,replay,survival,lookup}``: see the package
docstring."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hpo_replay",
                                 description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="train the grid, write benchmarks/data/ (resumable)")
    rec.add_argument("--workers", type=int, default=2)
    rec.add_argument("--work", default=None, help="folder for the data set link and cache")
    rec.add_argument("--out", default=None, help="where the table goes (benchmarks/data)")
    rec.add_argument("--design", choices=("grid", "sobol"), default="grid",
                     help="grid: the first table (64 points, one seed); sobol: the v2 table "
                          "(Sobol points over the cpu budget's space plus the grid, --seeds)")
    rec.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                     help="training seeds per configuration (sobol design)")
    rec.add_argument("--points", type=int, default=48, help="Sobol points (sobol design)")
    rec.add_argument("--sobol-seed", type=int, default=29)
    rec.add_argument("--no-grid", action="store_true",
                     help="sobol design without the grid's configurations")
    rec.add_argument("--merge-only", action="store_true",
                     help="sobol design: merge what is recorded so far, train nothing")
    lk = sub.add_parser("lookup", help="the nearest lookup's leave-one-out error on a table")
    lk.add_argument("--table", default=None, help="default: the v2 table")
    rep = sub.add_parser("replay", help="replay the policies over the recorded table")
    rep.add_argument("--seeds", type=int, nargs="+", default=[30],
                     help="replay seeds; with --concurrency one number per concurrency "
                          "is allowed (e.g. 20 20 12), one number means all")
    rep.add_argument("--policies", default=None, help="comma-separated policy names")
    rep.add_argument("--table", default=None)
    rep.add_argument("--at", type=float, default=8.0,
                     help="fixed compute for the Dice figure, in full-budget trainings")
    rep.add_argument("--shard", default="0/1",
                     help="I/N: run only the seeds with seed %% N == I (N processes side by "
                          "side); then run without --shard to summarise")
    rep.add_argument("--concurrency", type=int, nargs="+", default=None,
                     help="trials at once, e.g. 1 2 4 (results keyed by it; default: the "
                          "first replay, one at a time)")
    rep.add_argument("--time-scale", type=float, default=0.005,
                     help="with --concurrency > 1: seconds slept per recorded second of "
                          "an evaluation (the order of events follows the recorded costs)")
    sub.add_parser("survival", help="the censoring-aware table from results/hpo_replay.json "
                                    "(share reaching the target, Kaplan-Meier medians)")
    args = ap.parse_args(argv)
    if args.command == "survival":
        from benchmarks.hpo_replay.cli import survival_table

        survival_table()
    if args.command == "record":
        _record(args)
    if args.command == "lookup":
        from pathlib import Path

        from benchmarks.hpo_replay.cli import lookup_report
        from benchmarks.hpo_replay.record import TABLE_V2

        lookup_report(Path(args.table) if args.table else TABLE_V2)
    if args.command == "replay":
        _replay(args)
    return 0


def _record(args) -> None:
    from benchmarks.hpo_replay.record import DATA, record, record_v2

    if args.design == "grid":
        record(workers=args.workers, work=args.work, out=args.out or DATA)
    elif args.points < 48:
        raise SystemExit(f"--points {args.points}: the v2 table needs at least 48 (issue 29)")
    else:
        record_v2(workers=args.workers, work=args.work, out=args.out or DATA,
                  points=args.points, seeds=args.seeds, grid=not args.no_grid,
                  sobol_seed=args.sobol_seed, merge_only=args.merge_only)


def _replay(args) -> None:
    from pathlib import Path

    from benchmarks.hpo_replay.cli import run, run_keyed
    from benchmarks.hpo_replay.record import TABLE

    table = Path(args.table) if args.table else TABLE
    only = args.policies.split(",") if args.policies else None
    shard = tuple(int(v) for v in args.shard.split("/"))
    if args.concurrency is None:  # the first replay's command, unchanged
        run(table, seeds=args.seeds[0], only=only, at=args.at, shard=shard)
    else:
        run_keyed(table, seeds=args.seeds, only=only, at=args.at,
                  concurrency=tuple(args.concurrency), time_scale=args.time_scale,
                  shard=shard)


if __name__ == "__main__":
    sys.exit(main())
