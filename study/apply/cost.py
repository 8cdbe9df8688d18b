"""Choose a run's models by what they cost (issue 23), for ``study.apply.predict`` / ``.export``.

* ``--model pareto:N``: per phase, the N-th model of the Pareto front of validation Dice
  against inference seconds per volume (`study.results.pareto`), cheapest first:
  ``pareto:0`` is the cheapest model no other model beats on Dice at no more cost.
* ``--max-params P`` / ``--max-seconds S``: per phase, the best model (budget-aware, as
  ``--model best`` ranks) among those with at most P parameters / S seconds per volume;
  with ``pareto:N`` they narrow the trials the front is drawn from.

``--phase`` / ``--arch`` narrow the trials first. The costs are the ones the study measured
(``trials.parquet``), so a run directory is needed (an exported archive holds the chosen
models only: export with these flags instead). Each choice is printed on stderr.
"""

from __future__ import annotations

import argparse
import re
import sys

import polars as pl

from study.errors import ConfigError

PARETO = re.compile(r"pareto:(\d+)")


def model_arg(text: str) -> str:
    """argparse type of ``--model``: best, cv or pareto:N."""
    if text in ("best", "cv") or PARETO.fullmatch(text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use best, cv or pareto:N (N = 0: the "
                                     f"cheapest model of the Dice-against-cost front)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-params", type=int, metavar="P",
                   help="per phase, the best model with at most P parameters")
    p.add_argument("--max-seconds", type=float, metavar="S",
                   help="per phase, the best model that predicts a volume (study grid, on "
                        "the device the study measured) in at most S seconds")


def by_cost(args) -> bool:
    """Whether the command line chooses models by cost."""
    return bool(PARETO.fullmatch(getattr(args, "model", "best") or "best")) \
        or args.max_params is not None or args.max_seconds is not None


def select(bundle, args) -> list:
    """The `study.apply.bundle.ModelRef` of each phase chosen by ``args`` (module docstring)."""
    _check(bundle, args)
    from study.results import read_trials

    trials = read_trials(bundle.source)
    for given, column, flag in ((args.phase, "phase", "--phase"), (args.arch, "arch", "--arch")):
        have = sorted(set(trials[column].drop_nulls().to_list()))
        bad = sorted(set(given or []) - set(have))
        if bad:
            raise ConfigError(f"{flag} {' '.join(bad)}: not in {bundle.source} (it has "
                              f"{', '.join(have) or 'no trials'})")
        if given:
            trials = trials.filter(pl.col(column).is_in(list(given)))
    chosen = _choose(trials, args)
    refs = {(m.phase, m.trial): m for m in bundle.models}
    out = []
    for r in chosen.iter_rows(named=True):
        ref = refs.get((r["phase"], r["trial"]))
        if ref is None or ref.path is None:
            raise ConfigError(f"{bundle.source}: the checkpoint of trial {r['trial']} "
                              f"({r['phase']}/{r['arch']}) is gone; choose another model")
        print(f"{args.model if PARETO.fullmatch(args.model) else 'within cost'} {r['phase']}: "
              f"trial {r['trial']} ({r['arch']}), val Dice {r['final_val_dice']:.4f}, "
              f"{r['infer_s']:.3g} s per volume, {r['params']:,} parameters", file=sys.stderr)
        out.append(ref)
    return out


def _check(bundle, args) -> None:
    if args.top != 1:
        raise ConfigError(f"--top {args.top}: with --model pareto:N, --max-params or "
                          f"--max-seconds one model per phase is chosen; leave out --top")
    if args.model == "cv":
        raise ConfigError("--model cv applies the cross-validated fold ensemble; it cannot be "
                          "combined with --max-params / --max-seconds")
    for flag, value in (("--max-params", args.max_params), ("--max-seconds", args.max_seconds)):
        if value is not None and value <= 0:
            raise ConfigError(f"{flag} {value}: must be more than 0")
    if not bundle.source.is_dir():
        raise ConfigError(f"{bundle.source}: choosing by cost needs the run directory (its "
                          f"trials.parquet holds the measured costs); export the model you "
                          f"want with python -m study.apply.export RUN --model pareto:N")


def _choose(trials: pl.DataFrame, args) -> pl.DataFrame:
    """One trial per phase (module docstring); ConfigError when a phase has none."""
    from study.results.pareto import cheapest, pareto_front, within_cost

    if trials.filter(pl.col("infer_s").is_not_null()).is_empty():
        raise ConfigError("no trial of this run has its cost recorded (a run made before "
                          "costs were measured); use --model best, or run the study again")
    limited = within_cost(trials, max_params=args.max_params, max_seconds=args.max_seconds) \
        if args.max_params is not None or args.max_seconds is not None else None
    m = PARETO.fullmatch(args.model)
    if m is None:
        _every_phase(trials, limited, args, cheapest)
        return limited
    pool = trials
    if limited is not None:
        cond = pl.lit(True)
        if args.max_params is not None:
            cond &= pl.col("params") <= args.max_params
        if args.max_seconds is not None:
            cond &= pl.col("infer_s") <= args.max_seconds
        pool = trials.filter(cond)
    front = pareto_front(pool)
    n = int(m.group(1))
    for phase in sorted(set(trials["phase"].to_list())):
        size = front.filter(pl.col("phase") == phase).height
        if size <= n:
            raise ConfigError(f"--model {args.model}: the front of phase {phase} has {size} "
                              f"model(s) (pareto:0 to pareto:{max(0, size - 1)}); the report's "
                              f"'Dice against cost' table lists them")
    return front.filter(pl.col("front") == n)


def _every_phase(trials: pl.DataFrame, chosen: pl.DataFrame, args, cheapest) -> None:
    for phase in sorted(set(trials["phase"].to_list()) - set(chosen["phase"].to_list())):
        t = trials.filter(pl.col("phase") == phase)
        have = [f"{flag} {cheapest(t, col):g}" for flag, col, v in
                (("the smallest model has", "params", args.max_params),
                 ("the fastest takes", "infer_s", args.max_seconds))
                if v is not None and cheapest(t, col) is not None]
        raise ConfigError(f"phase {phase}: no model within --max-params {args.max_params} / "
                          f"--max-seconds {args.max_seconds} ({'; '.join(have) or 'no cost'}); "
                          f"raise the limit or choose --phase")
