"""``python -m study.plans DATASET [--label NAME] [--grid X Y Z | --spacing auto|X Y Z]``: fingerprint the data set,
write ``plans.json`` beside its cache and print the plan (target spacing, median shape,
slice axis, the ranges new scans are checked against, the normalisation per channel)."""

from __future__ import annotations

import argparse
import sys

from study.errors import run_cli


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m study.plans", description=__doc__)
    ap.add_argument("dataset", help="data set folder (dataset.json, imagesTr, labelsTr)")
    ap.add_argument("--label", default=None, help="target label name (default: tumor)")
    ap.add_argument("--grid", type=int, nargs=3, default=None, metavar=("X", "Y", "Z"),
                    help="one grid for every case (default 320 256 72)")
    ap.add_argument("--spacing", nargs="+", default=None, metavar="MM",
                    help="instead of --grid: each case on its own grid at this spacing "
                         "('auto' or X Y Z in mm, entries may be 'auto')")
    ap.add_argument("--cache", default=None, help="cache root (default $STUDY_CACHE or ~/.cache/study)")
    ap.add_argument("--split-seed", type=int, default=0)
    args = ap.parse_args(argv)
    from study.data import prepare
    from study.data.spacing import geometry_args
    from study.plans import write_plans

    prep = prepare(args.dataset, label=args.label, cache_root=args.cache, seed=args.split_seed,
                   **geometry_args(args.grid, args.spacing))
    plans = write_plans(prep)
    r = plans["ranges"]
    print(f"plans      {prep.cache_dir / 'plans.json'} ({len(plans['cases'])} cases, "
          f"{len(plans['learn_cases'])} to learn from)")
    print(f"spacing    {_v(r['spacing']['min'])} .. {_v(r['spacing']['max'])} mm (RAS axes)")
    print(f"target     {_v(plans['target_spacing'])} mm"
          f"{' (anisotropic: thick slices)' if plans['anisotropic'] else ''}; median shape "
          f"{plans['median_shape']}; slice axis {plans['slice_axis']}")
    print(f"stored as  {', '.join(r['axcodes'])} (worked on in RAS)")
    geo = plans.get("study_geometry") or {}
    print("study at   " + (f"grid {geo['grid']} (every case)" if geo.get("grid") else
                           f"{_v(geo.get('spacing') or [])} mm, each case on its own grid "
                           f"(median {geo.get('median_case_grid')})"))
    for phase, scheme in (plans.get("normalisation") or {}).items():
        print(f"normalise  {phase}: " + (
            f"CT, clip {scheme['clip'][0]:.0f} .. {scheme['clip'][1]:.0f}, mean "
            f"{scheme['mean']:.1f}, std {scheme['std']:.1f} (data set foreground)"
            if scheme.get("scheme") == "ct" else "per volume: clip 0.5/99.5 %, z-score"))
    return 0


def _v(values) -> str:
    return " x ".join(f"{v:.2f}" for v in values)


def cli() -> int:
    """The console command (pyproject `[project.scripts]`)."""
    return run_cli(main)


if __name__ == "__main__":
    sys.exit(cli())
