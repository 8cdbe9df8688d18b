"""``python -m study.launch``: run a hyperparameter study (Ray Tune + Optuna TPE + ASHA).

    python -m study.launch --space hybrid --budget demo --name demo
    python -m study.launch --space all --budget smoke --phase arterial portal
    python -m study.launch --name demo --resume          # after a crash or kill
    python -m study.launch --space all --finalists 3 --folds 5   # cross-validated finalists

One study per phase; then the budget-aware best trial per (phase, arch) is evaluated on
the test cases. Everything lands in ``runs/NAME/`` (docs/CONTRACTS.md, study/results.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from study.errors import ConfigError, run_cli
from study.io import ensure_writable_dir

STUDY_JSON = "study.json"
SAVED_ARGS = ("space", "data", "label", "phase", "samples", "budget", "time", "seed", "split_seed",
              "max_concurrent", "finalists", "folds")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.launch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="hybrid", help="search space name or YAML path")
    p.add_argument("--data", help="nnU-Net-style data set folder (default: the phantom)")
    p.add_argument("--label", help="label name to segment (default: tumor)")
    p.add_argument("--phase", nargs="+", help="phases to study (default: space, else data set)")
    p.add_argument("--samples", type=int, help="number of trials per phase (default: budget's)")
    p.add_argument("--budget", help="budget preset (smoke|demo|cpu|full) or iterations "
                   "(default: smoke; with --time: cpu without a GPU, full with one)")
    p.add_argument("--time", help="wall-time budget of the search, e.g. 90s, 30m, 2h: trials "
                   "still running then are stopped; then the best are tested")
    p.add_argument("--name", help="run name (default: SPACE-BUDGET-TIMESTAMP)")
    p.add_argument("--out", default="runs", help="parent folder of run directories")
    p.add_argument("--resume", action="store_true", help="continue the run --name")
    p.add_argument("--address", help="Ray cluster address ('auto' joins a running cluster; "
                   "default: a local Ray instance)")
    p.add_argument("--seed", type=int, help="study seed (default: the space's)")
    p.add_argument("--split-seed", type=int, help="seed of the train/val/test split (default 0, "
                   "fixed: runs with different --seed share their validation and test cases)")
    p.add_argument("--finalists", type=int, default=0, metavar="K",
                   help="after the search, retrain the K best configurations of each phase on "
                        "--folds folds of train + validation at the full budget; the best "
                        "mean over folds wins and its fold ensemble is tested (default 0: off)")
    p.add_argument("--folds", type=int, default=5, metavar="F",
                   help="cross-validation folds for --finalists (default 5)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: budget's)")
    p.add_argument("--cpus", type=int, help="CPUs for a local Ray instance (default: all)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--dry-run", action="store_true",
                   help="prepare the data, run the short warm-up, print the projected wall "
                        "time of the study and exit (no run directory, no Ray)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="Ray's own console tables per trial (-vv: every result too); default: "
                        "one line per trial start / stop and a status line every minute")
    return p


def check_writable(folder: Path) -> None:
    ensure_writable_dir(folder, "--out", ConfigError)


def resolve_run(args) -> tuple[Path, dict | None]:
    """The run directory, and the saved study.json when resuming."""
    out = Path(args.out).expanduser().resolve()
    if args.resume and not args.name:
        raise ConfigError("--resume needs --name NAME of the run to continue")
    name = args.name or f"{Path(args.space).stem}-{args.budget or args.time or 'smoke'}-" \
                        f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    if "/" in name or name in (".", ".."):
        raise ConfigError(f"--name {name!r}: use a plain folder name")
    run_dir = out / name
    meta_path = run_dir / STUDY_JSON
    if args.resume:
        if not meta_path.is_file():
            raise ConfigError(f"--resume: no run {name!r} in {out} (no {meta_path}); start it "
                              f"without --resume, or check --name and --out")
        try:
            saved = json.loads(meta_path.read_text(encoding="utf-8"))
            saved["args"]["space"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"--resume: {meta_path} is not a study.json written by "
                              f"study.launch ({exc!r}); start a new run instead") from None
        return run_dir, saved
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run {name!r} already exists in {out}; continue it with --resume, "
                          f"pick another --name, or delete {run_dir}")
    return run_dir, None


def _init_ray(address: str | None, cpus: int | None, verbose: int = 1) -> None:
    import logging

    import ray

    if ray.is_initialized():
        return
    # without -v, Ray's "Started a local Ray instance" info line is left out (warnings stay)
    level = logging.INFO if verbose else logging.WARNING
    if address and address.lower() not in ("none", "local"):
        ray.init(address=address, log_to_driver=True, logging_level=level)
    else:
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=True,
                 logging_level=level)


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run_dir, saved = resolve_run(args)
    if saved:  # a resumed run keeps its original settings
        for key in SAVED_ARGS:
            setattr(args, key, saved["args"].get(key))
    from study.tune import StudySettings, run_study

    settings = StudySettings.from_args(args, run_dir, saved)  # validates space, budget, counts
    if args.dry_run and args.resume:
        raise ConfigError("--dry-run projects a new study; leave out --resume")
    if not args.dry_run:
        check_writable(run_dir.parent)
    rc = run_study(settings, saved=saved,
                   init_ray=lambda: _init_ray(args.address, args.cpus, args.verbose))
    if args.dry_run:
        return rc
    print(write_report(run_dir) if settings.report else "report: skipped (--no-report)")
    return rc


def write_report(run_dir: Path) -> str:
    """``run_dir/report.html`` (a plain-text table if the report cannot be built); one line
    saying where. The study's results are on disk either way."""
    try:
        from study.report import build_report
    except ImportError:
        from study.evaluation.table import format_test_table
        from study.io import write_text_atomic
        from study.results import read_metrics

        text = run_dir / "results.txt"
        write_text_atomic(text, format_test_table(read_metrics(run_dir)) + "\n")
        return f"report: study.report not available; wrote a plain-text table to {text}"
    try:
        path = build_report([run_dir], run_dir / "report.html")
    except Exception as exc:  # the study's results are on disk either way
        return f"report: could not be built ({exc}); results are in {run_dir}"
    return f"report: {path}"


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
