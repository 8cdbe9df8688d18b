"""``python -m study.apply.export RUN -o model.zip``: a study's models, ready to carry away.

    python -m study.apply.export runs/demo -o demo-model.zip
    python -m study.apply.export runs/demo -o arterial.zip --phase arterial --top 2
    python -m study.apply.predict demo-model.zip -i new_scans/ -o masks/   # on any machine

The archive holds the selected models' weights (no optimizer state), their training
configurations, the run's ``dataset.json`` (channel -> phase map, labels), the label
segmented, the preprocessing (grid, normalisation) and the versions that made it
(``bundle.json``); ``study.apply.predict`` needs nothing else (no run directory, no Ray, no data
set). Selection as in ``study.apply.predict``: ``--phase``, ``--arch``, ``--top K``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.apply.bundle import export_bundle, open_bundle
from study.errors import ConfigError, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.apply.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (runs/NAME)")
    p.add_argument("-o", "--output", required=True, type=Path, help="archive to write (.zip)")
    p.add_argument("--phase", nargs="+", help="only models of these phases")
    p.add_argument("--arch", nargs="+", help="only models of these architectures")
    p.add_argument("--top", type=int, default=1, help="the K best trials per (phase, arch)")
    return p


def _main(argv=None) -> int:
    from study.io import ensure_writable_dir

    args = build_parser().parse_args(argv)
    if args.output.suffix != ".zip":
        raise ConfigError(f"-o {args.output}: the archive name must end with .zip")
    if args.output.is_dir():
        raise ConfigError(f"-o {args.output}: is a folder; give a file name ending in .zip")
    with open_bundle(args.run) as bundle:
        models = bundle.select(phases=args.phase, archs=args.arch, top=args.top)
        ensure_writable_dir(args.output.parent if str(args.output.parent) else Path("."), "-o",
                            ConfigError)
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
