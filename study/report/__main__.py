"""``python -m study.report RUN_DIR [RUN_DIR ...] -o reports/NAME.html``"""

from __future__ import annotations

import argparse
import sys

from study.errors import ConfigError, run_cli


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.report",
        description="Build one self-contained HTML report (tables, study plots, pictures, "
                    "provenance) from one or more study run directories.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="runs/NAME directories")
    parser.add_argument("-o", "--output", help="HTML file to write (default reports/NAME.html)")
    parser.add_argument("--cases", type=int, default=3, help="test cases pictured per phase (default 3)")
    args = parser.parse_args(argv)
    if args.cases < 0:
        raise ConfigError(f"--cases must be >= 0, got {args.cases}")
    from pathlib import Path

    from study.report.build import build_report

    out = args.output or str(Path("reports") / f"{Path(args.run_dirs[0]).resolve().name}.html")
    path = build_report(args.run_dirs, out, max_cases=args.cases)
    size = path.stat().st_size
    print(f"report: {path} ({size / 1e6:.1f} MB)")
    return 0


def cli() -> int:
    """The console command (pyproject `[project.scripts]`)."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(run_cli(main))
