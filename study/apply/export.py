"""``python -m study.apply.export RUN -o model.zip``: a study's models, ready to carry away.

    python -m study.apply.export runs/demo -o demo-model.zip
    python -m study.apply.export runs/demo -o arterial.zip --phase arterial --top 2
    python -m study.apply.predict demo-model.zip -i new_scans/ -o masks/   # on any machine

The archive holds the selected models' weights (no optimizer state), their training
configurations, the run's ``dataset.json`` (channel -> phase map, labels), the label
segmented, the preprocessing (grid, normalisation) and the versions that made it
(``bundle.json``); ``study.apply.predict`` needs nothing else (no run directory, no Ray, no data
set). Selection as in ``study.apply.predict``: ``--phase``, ``--arch``, ``--top K`` (trials
at the highest rung only), ``--model cv`` (the fold ensemble of a ``--finalists`` run).

Weights are read as plain data only (`study.train.checkpoint.load_weights`): a checkpoint
that is not is refused (exit 2). Before writing, each exported (phase, arch) group is scored
on the run's validation cases, with and without test-time mirroring, where the data set is
on this machine (`study.apply.validation`, cached in the run); the archive carries those
records, so ``study.apply.predict model.zip`` applies and prints exactly what the run would.

    python -m study.apply.export runs/cv -o cv-model.zip --model cv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.apply import cost
from study.apply.bundle import export_bundle, open_bundle
from study.errors import ConfigError, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.apply.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (runs/NAME)")
    p.add_argument("-o", "--output", required=True, type=Path, help="archive to write (.zip)")
    p.add_argument("--phase", nargs="+", help="only models of these phases")
    p.add_argument("--arch", nargs="+", help="only models of these architectures")
    p.add_argument("--top", type=int, default=1,
                   help="the K best trials per (phase, arch), among those at the highest rung")
    p.add_argument("--model", default="best", type=cost.model_arg,
                   help="best (default): the budget-aware best trials; cv: the fold models of "
                        "each phase's cross-validated winner (a study run with --finalists); "
                        "pareto:N: per phase, the N-th model of the Dice-against-cost front, "
                        "cheapest first (study.apply.cost)")
    cost.add_arguments(p)  # --max-params, --max-seconds
    return p


def _validate(bundle, models) -> None:
    """Score the exported groups on validation (cached in the run, carried by the archive)."""
    from study.apply.predict import Predictor, plan_outputs
    from study.apply.validation import Validator, decide

    if any(m.kind == "fold" for m in models):
        return
    pred = Predictor(bundle)
    for line in decide(Validator(pred, bundle), plan_outputs(models, None), "auto", "auto"):
        print(line)


def _main(argv=None) -> int:
    from study.io import ensure_writable_dir

    args = build_parser().parse_args(argv)
    if args.output.suffix != ".zip":
        raise ConfigError(f"-o {args.output}: the archive name must end with .zip")
    if args.output.is_dir():
        raise ConfigError(f"-o {args.output}: is a folder; give a file name ending in .zip")
    with open_bundle(args.run) as bundle:
        models = cost.select(bundle, args) if cost.by_cost(args) else \
            bundle.select(phases=args.phase, archs=args.arch, top=args.top, model=args.model)
        ensure_writable_dir(args.output.parent if str(args.output.parent) else Path("."), "-o",
                            ConfigError)
        _validate(bundle, models)
        path = export_bundle(bundle, models, args.output)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MiB): {len(models)} model(s): "
          f"{', '.join(m.key for m in models)}")
    print(f"use it: python -m study.apply.predict {path} -i INPUT_DIR -o OUTPUT_DIR")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
