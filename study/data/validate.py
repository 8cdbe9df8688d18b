"""`check_dataset`: read every case of a raw data set, check it, summarise it.

Every problem found in any case is collected and raised as one `DataError` (each line names
the file); a case without any voxel of the target label is a warning, not an error.
Nothing is written.
"""

from __future__ import annotations

import warnings

import numpy as np

from study.data.dataset import DataWarning, load_case, read_dataset
from study.errors import DataError

MAX_LISTED = 20


def check_dataset(root, label: str | None = None) -> dict:
    """Validate a raw data set; return a summary dict (see `format_summary`)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        spec = read_dataset(root, label=label)
    notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    cases, errors = [], []
    for case_id in spec.case_ids:
        try:
            case = load_case(spec, case_id)
        except DataError as exc:
            errors.append(str(exc))
            continue
        n_tumor = int(case.label.sum())
        if n_tumor == 0:
            notes.append(f"{case.label_path}: no {spec.label_name} voxels in case {case_id!r} "
                         f"(usable as a negative case)")
        cases.append({
            "case": case_id,
            "split": "test" if case_id in spec.test_ids else "train",
            "shape": tuple(int(s) for s in case.label.shape),
            "spacing": tuple(round(s, 4) for s in case.spacing),
            "label_voxels": n_tumor,
            "label_fraction": n_tumor / case.label.size,
            "intensity": [(float(c.min()), float(c.max())) for c in case.image],
        })
        del case
    if errors:
        shown = errors[:MAX_LISTED]
        more = f"\n... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
        raise DataError(f"{spec.root}: {len(errors)} bad case(s):\n" + "\n".join(shown) + more)
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=2)
    return {"root": str(spec.root), "phases": spec.phases, "label": spec.label_name,
            "label_value": spec.label_value, "train": len(spec.train_ids),
            "test": len(spec.test_ids), "cases": cases, "warnings": notes}


def format_summary(summary: dict) -> str:
    cases = summary["cases"]
    shapes = np.array([c["shape"] for c in cases])
    spac = np.array([c["spacing"] for c in cases])
    frac = np.array([c["label_fraction"] for c in cases])
    lines = [
        f"data set   {summary['root']}",
        f"cases      {len(cases)} ({summary['train']} imagesTr, {summary['test']} imagesTs)",
        f"phases     {', '.join(summary['phases'])}",
        f"label      {summary['label']} (value {summary['label_value']})",
        f"shapes     {' x '.join(f'{lo}..{hi}' for lo, hi in zip(shapes.min(0), shapes.max(0), strict=True))}",
        f"spacing    {' x '.join(f'{lo:g}..{hi:g}' for lo, hi in zip(spac.min(0), spac.max(0), strict=True))} mm",
        f"{summary['label']} fraction  mean {frac.mean():.4%}, min {frac.min():.4%}, max {frac.max():.4%}",
        "",
        f"{'case':<24} {'split':<6} {'shape':<16} {'spacing (mm)':<22} {summary['label']} voxels (fraction)",
    ]
    for c in cases:
        shape = "x".join(map(str, c["shape"]))
        sp = "x".join(f"{s:g}" for s in c["spacing"])
        lines.append(f"{c['case']:<24} {c['split']:<6} {shape:<16} {sp:<22} "
                     f"{c['label_voxels']} ({c['label_fraction']:.4%})")
    for w in summary["warnings"]:
        lines.append(f"warning: {w}")
    return "\n".join(lines)
