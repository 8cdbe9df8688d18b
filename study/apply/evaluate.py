"""``python -m study.apply.evaluate LABELS_DIR PREDICTIONS_DIR``: score predicted masks per case.

    python -m study.apply.evaluate DATASET/labelsTs masks/
    python -m study.apply.evaluate DATASET/labelsTr masks/arterial/hybrid --label tumor

Every ``CASE.nii.gz`` (or ``.nii``) in PREDICTIONS_DIR is compared with ``CASE.nii.gz`` in
LABELS_DIR on the label's own (native) grid and voxel spacing, with the metrics of the
study (`study.evaluation.metrics.case_metrics`): TP/FP/FN voxels, Precision, Recall, Dice, HD95 (mm),
lesion recall / precision, z-continuity. A prediction is foreground where > 0 (the uint8
masks of ``study.apply.predict`` and ``study.launch``). The truth is the label's value:
``--label-value V``; or ``--label NAME`` looked up in a ``dataset.json`` (beside
LABELS_DIR, i.e. the data set root, or in PREDICTIONS_DIR); default: the label recorded
in PREDICTIONS_DIR/predictions.json, else "tumor" or the only foreground label of that
dataset.json, else any value > 0.

Writes ``metrics.parquet`` (long: case, metric, value) and ``summary.json`` (per case and
the mean, nnU-Net style) into PREDICTIONS_DIR (or ``-o``), prints the table. Cases found on
one side only are listed (in summary.json too), never silently dropped; a prediction whose
grid differs from its label's is an error for that case (exit 2, others still scored).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from study.errors import ConfigError, DataError, UserError, run_cli

MASK = re.compile(r"^(?P<case>.+?)\.nii(\.gz)?$")
SHOWN = ("precision", "recall", "dice", "hd95")


def _masks(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ConfigError(f"{what} {folder}: no such folder")
    found = {}
    for f in sorted(folder.iterdir()):
        m = MASK.match(f.name)
        if m and f.is_file() and not f.name.startswith("."):
            found[m.group("case")] = f
    return found


def _dataset_labels(*folders: Path) -> dict[str, int] | None:
    for folder in folders:
        path = folder / "dataset.json"
        if path.is_file():
            try:
                labels = json.loads(path.read_text(encoding="utf-8")).get("labels")
            except ValueError:
                raise DataError(f"{path}: not valid JSON; fix or remove it") from None
            if isinstance(labels, dict):
                return {str(k): int(v) for k, v in labels.items()}
    return None


def resolve_label(labels_dir: Path, pred_dir: Path, name: str | None,
                  value: int | None) -> tuple[str | None, int | None, str]:
    """-> (label name, value or None for "any > 0", where it came from)."""
    if value is not None:
        return name, int(value), "--label-value"
    table = _dataset_labels(labels_dir.parent, labels_dir, pred_dir)
    if name is not None:
        if table is None:
            raise ConfigError(f"--label {name}: no dataset.json beside {labels_dir} or in "
                              f"{pred_dir} to look it up; give --label-value instead")
        if name not in table:
            raise ConfigError(f"--label {name}: not in dataset.json labels {table}; use one "
                              f"of {', '.join(k for k in table if table[k] != 0)}")
        return name, table[name], "dataset.json"
    rec = pred_dir / "predictions.json"
    if rec.is_file():
        try:
            info = json.loads(rec.read_text(encoding="utf-8"))
            if info.get("label_value") is not None:
                return info.get("label"), int(info["label_value"]), str(rec)
        except ValueError:
            pass
    if table:
        fg = {k: v for k, v in table.items() if v != 0}
        pick = "tumor" if "tumor" in fg else (next(iter(fg)) if len(fg) == 1 else None)
        if pick:
            return pick, fg[pick], "dataset.json"
        raise ConfigError(f"dataset.json labels {table}: several foreground labels; choose "
                          f"one with --label NAME")
    return None, None, "any value > 0"


def evaluate_pair(label_path: Path, pred_path: Path, value: int | None) -> dict[str, float]:
    """Metrics of one prediction file against one label file (native grid)."""
    from study.data.dataset import AFFINE_ATOL, read_mask, voxel_spacing
    from study.evaluation.metrics import case_metrics

    truth, affine = read_mask(label_path, value)
    pred, paffine = read_mask(pred_path, None)
    if pred.shape != truth.shape:
        raise DataError(f"{pred_path}: shape {pred.shape} differs from the label {label_path} "
                        f"{truth.shape}; predictions must be on the label's grid")
    if not np.allclose(paffine, affine, atol=AFFINE_ATOL, rtol=0):
        raise DataError(f"{pred_path}: affine differs from the label {label_path}; the "
                        f"prediction is not on the label's grid")
    return case_metrics(pred, truth, voxel_spacing(affine))


def evaluate_folder(labels_dir: Path, pred_dir: Path, value: int | None) -> dict:
    """Score every prediction that has a label -> dict with per_case, mean, failed, and the
    cases found on one side only."""
    from study.evaluation.metrics import mean_metrics

    labels, preds = _masks(labels_dir, "LABELS_DIR"), _masks(pred_dir, "PREDICTIONS_DIR")
    common = sorted(set(labels) & set(preds))
    per_case, failed = {}, {}
    for case in common:
        try:
            per_case[case] = evaluate_pair(labels[case], preds[case], value)
        except UserError as exc:
            failed[case] = str(exc)
    return {"per_case": per_case, "mean": mean_metrics(list(per_case.values())) if per_case
            else {}, "failed": failed,
            "only_in_labels": sorted(set(labels) - set(preds)),
            "only_in_predictions": sorted(set(preds) - set(labels))}


def format_table(result: dict) -> str:
    head = f"{'case':<20}" + "".join(f"{m:>11}" for m in SHOWN)
    rows = [head]
    for case, m in result["per_case"].items():
        rows.append(f"{case:<20}" + "".join(f"{m[k]:>11.4f}" for k in SHOWN))
    if result["mean"]:
        rows.append(f"{'mean':<20}" + "".join(f"{result['mean'][k]:>11.4f}" for k in SHOWN))
    return "\n".join(rows)


def write_outputs(result: dict, out: Path, meta: dict) -> None:
    import polars as pl

    from study.io import write_text_atomic
    from study.results import write_parquet_atomic

    rows = [{"case": c, "metric": k, "value": float(v)}
            for c, m in result["per_case"].items() for k, v in m.items()]
    df = pl.DataFrame(rows, schema={"case": pl.String, "metric": pl.String, "value": pl.Float64})
    write_parquet_atomic(df, out / "metrics.parquet")
    summary = {**meta, "grid": "native",
               "metric_per_case": [{"case": c, "metrics": m}
                                   for c, m in result["per_case"].items()],
               "mean": result["mean"], "failed": result["failed"],
               "only_in_labels": result["only_in_labels"],
               "only_in_predictions": result["only_in_predictions"]}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=1))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.apply.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("labels", type=Path, help="folder of label files CASE.nii.gz")
    p.add_argument("predictions", type=Path, help="folder of predicted masks CASE.nii.gz")
    p.add_argument("--label", help="label name (looked up in dataset.json)")
    p.add_argument("--label-value", type=int, help="label value in the label files")
    p.add_argument("-o", "--out", type=Path,
                   help="where summary.json and metrics.parquet go (default: PREDICTIONS_DIR)")
    return p


def _main(argv=None) -> int:
    from study.io import ensure_writable_dir

    args = build_parser().parse_args(argv)
    name, value, source = resolve_label(args.labels, args.predictions, args.label,
                                        args.label_value)
    result = evaluate_folder(args.labels, args.predictions, value)
    if not result["per_case"] and not result["failed"]:
        raise DataError(f"{args.predictions}: no prediction matches a label in {args.labels} "
                        f"(predictions: {len(result['only_in_predictions'])}, labels: "
                        f"{len(result['only_in_labels'])}); the file names must match")
    out = ensure_writable_dir(args.out or args.predictions, "-o", ConfigError)
    meta = {"labels": str(args.labels), "predictions": str(args.predictions), "label": name,
            "label_value": value, "label_from": source}
    write_outputs(result, out, meta)
    what = f"label {name or ''} = {value}" if value is not None else "label: any value > 0"
    print(f"{len(result['per_case'])} case(s) on the native grid ({what.strip()}, from "
          f"{source}):")
    print(format_table(result))
    for side in ("only_in_labels", "only_in_predictions"):
        if result[side]:
            print(f"{side.replace('_', ' ')}: {', '.join(result[side])}")
    for case, msg in result["failed"].items():
        print(f"error: case {case}: {msg}", file=sys.stderr)
    print(f"wrote {out / 'summary.json'} and {out / 'metrics.parquet'}")
    return 2 if result["failed"] else 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
