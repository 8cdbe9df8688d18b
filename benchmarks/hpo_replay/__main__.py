"""``python -m benchmarks.hpo_replay {record,replay,survival}``: see the package docstring."""

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
    rep = sub.add_parser("replay", help="replay the policies over the recorded table")
    rep.add_argument("--seeds", type=int, default=30)
    rep.add_argument("--policies", default=None, help="comma-separated policy names")
    rep.add_argument("--table", default=None)
    rep.add_argument("--at", type=float, default=8.0,
                     help="fixed compute for the Dice figure, in full-budget trainings")
    rep.add_argument("--shard", default="0/1",
                     help="I/N: run only the seeds with seed %% N == I (N processes side by "
                          "side); then run without --shard to summarise")
    sub.add_parser("survival", help="the censoring-aware table from results/hpo_replay.json "
                                    "(share reaching the target, Kaplan-Meier medians)")
    args = ap.parse_args(argv)
    if args.command == "survival":
        from benchmarks.hpo_replay.cli import survival_table

        survival_table()
    if args.command == "record":
        from benchmarks.hpo_replay.record import DATA, record

        record(workers=args.workers, work=args.work, out=args.out or DATA)
    if args.command == "replay":
        from pathlib import Path

        from benchmarks.hpo_replay.cli import run
        from benchmarks.hpo_replay.record import TABLE

        run(Path(args.table) if args.table else TABLE, seeds=args.seeds,
            only=args.policies.split(",") if args.policies else None, at=args.at,
            shard=tuple(int(v) for v in args.shard.split("/")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
