"""Validation of what `study.apply.predict` applies: every output (a single model, a top-K
ensemble, an ensemble across architectures or phases), with and without test-time
mirroring, is scored once on the run's validation cases and cached.

The score is what predict would do to each validation case (read the source files, the run's
orientation and preprocessing, the output's mean probability map, back to the source grid,
threshold), every postprocessing candidate applied, mean Dice against the original label
file: the rule the study uses to choose postprocessing for its best models, so the single
best model's record equals the study's own ``postprocessing.json``, and an ensemble gets
its postprocessing chosen on validation exactly as a single model does. Only source files
are read (no cache), so runs of earlier cache versions are scored as they predict.

Cache: ``runs/NAME/validation.json`` ``{"fingerprint", "split_val", "outputs": {KEY: record}}``
(written atomically; a record is ``{"models", "tta", "chosen", "val_dice": {candidate:
mean Dice}, "cases"}``); an export copies it into the archive, so predicting from a
``model.zip`` prints the numbers measured on the run that made it.

Cross-validated fold ensembles (``--model cv``) are not scored here: the validation cases
were in their training folds. Their held-out score is the finalists' mean fold Dice.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from study.apply.bundle import VALIDATION_FILE as CACHE_FILE

TTA_MODES = ("auto", "none", "mirror")


def output_key(models, tta: bool) -> str:
    """Identity of an output: its models (sorted keys with trial ids) and the mirroring."""
    parts = sorted(f"{m.key}:{m.trial}" for m in models)
    return "+".join(parts) + ("|mirror" if tta else "")


def describe(models) -> str:
    """``T2SPIR/unet2d top-3 ensemble``, ``T2SPIR/unet2d best model``, ``arterial: 2-model
    ensemble (hybrid, unet2d)``: what a person reads."""
    groups = sorted({(m.phase, m.arch) for m in models})
    if len(groups) == 1:
        phase, arch = groups[0]
        n = len(models)
        return f"{phase}/{arch} " + ("best model" if n == 1 and models[0].rank == 1 else
                                     f"rank-{models[0].rank} model" if n == 1 else
                                     f"top-{n} ensemble")
    return f"{len(models)}-model ensemble ({', '.join(f'{p}/{a}' for p, a in groups)})"


class ValidationCache:
    """The run's cached validation records (read from the run or the archive)."""

    def __init__(self, path: Path | None, writable: bool, records: dict | None = None,
                 meta: dict | None = None):
        self.path, self.writable = path, writable
        self.records: dict[str, dict] = dict(records or {})
        self.meta = dict(meta or {})

    @classmethod
    def read(cls, path: Path, writable: bool, fingerprint: str | None) -> ValidationCache:
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except ValueError:
            data = {}
        if not isinstance(data, dict) or (fingerprint and data.get("fingerprint") not in
                                          (None, fingerprint)):
            data = {}  # another data set (or a damaged file): start afresh
        return cls(path, writable, data.get("outputs") or {}, {"fingerprint": fingerprint})

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def put(self, key: str, record: dict) -> None:
        self.records[key] = record
        if self.writable and self.path is not None:
            from study.io import write_text_atomic

            write_text_atomic(self.path, json.dumps({**self.meta, "outputs": self.records},
                                                    indent=1, sort_keys=True) + "\n")


@dataclass
class ValidationCases:
    """The run's validation cases as files: its data set (`study.data.DatasetSpec`) and the
    case ids of ``study.json``'s split."""

    spec: object
    cases: list[str]


def validation_data(bundle):
    """``(ValidationCases, None)`` for the run's validation cases, or ``(None, why not)``.
    Only the source files are read: the scoring goes through predict's own preprocessing,
    so it holds for runs made by any earlier version of the cache too."""
    run = Path(bundle.source)
    meta_path = run / "study.json"
    if bundle.is_archive or not meta_path.is_file():
        return None, "a model archive carries no validation images"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    data = meta.get("data")
    if not data or not (Path(str(data)) / "dataset.json").is_file():
        return None, f"the run's data set {data} is not on this machine"
    from study.data import read_dataset
    from study.data.cache import fingerprint

    spec = read_dataset(data, label=meta.get("label"))
    found = fingerprint(spec) if meta.get("fingerprint") else None
    if found is not None and found != meta["fingerprint"]:
        return None, (f"the data set at {data} differs from the one the run used (fingerprint "
                      f"{found} != {meta['fingerprint']})")
    cases = list((meta.get("split") or {}).get("val") or [])
    if not cases:
        return None, "the run records no validation cases"
    return ValidationCases(spec, cases), None


def open_cache(bundle) -> ValidationCache:
    """The cache of a run (writable) or the copy inside an archive (read-only)."""
    if bundle.is_archive:
        path = bundle.unpacked / CACHE_FILE if bundle.unpacked else None
        return ValidationCache.read(path, False, None) if path else ValidationCache(None, False)
    fp = None
    meta_path = Path(bundle.source) / "study.json"
    if meta_path.is_file():
        fp = json.loads(meta_path.read_text(encoding="utf-8")).get("fingerprint")
    return ValidationCache.read(Path(bundle.source) / CACHE_FILE, True, fp)


def score_output(pred, models, val: ValidationCases, tta: bool) -> dict:
    """Score the mean map of ``models`` (grouped per (phase, arch)) on the validation cases
    exactly as `study.apply.predict` applies it (its reading, orientation, preprocessing and
    mapping back to the source grid), against each label file: every postprocessing
    candidate, the best chosen (`study.evaluation.postprocess.choose`: none unless strictly
    better). The same numbers as the study's own choice for its best models."""
    from study.apply.inputs import grid_inputs
    from study.data.dataset import read_mask, read_volume, voxel_spacing
    from study.evaluation.inference import to_native
    from study.evaluation.postprocess import choose

    groups = list(group_models(models).values())
    phases = pred.input_phases(models)
    index = {p: i for i, p in enumerate(val.spec.phases)}
    threshold, scored = pred.threshold(models), []
    for case in val.cases:
        paths = val.spec.image_paths(case)
        vols = {p: read_volume(paths[index[p]])[0] for p in phases}
        truth, affine = read_mask(val.spec.label_path(case), pred.bundle.label_value)
        images, work = grid_inputs(vols, affine, pred.bundle)
        prob = pred.probability(groups, images, tta=tta, affine=work)
        back = affine if pred.bundle.canonical else None
        scored.append((to_native(prob, truth.shape, back) >= threshold, truth,
                       voxel_spacing(affine)))
    pp = choose(scored)
    return {"models": sorted(m.key for m in models), "tta": "mirror" if tta else "none",
            "chosen": pp["chosen"], "val_dice": pp["val_dice"], "cases": list(val.cases)}


def group_models(models) -> dict[tuple[str, str], list]:
    """{(phase, arch): its models, best rank first}, in (phase, arch) order."""
    groups: dict[tuple[str, str], list] = {}
    for m in sorted(models, key=lambda m: (m.phase, m.arch, m.rank)):
        groups.setdefault((m.phase, m.arch), []).append(m)
    return groups


def record_dice(record: dict) -> float:
    return float(record["val_dice"][record["chosen"]])


class Validator:
    """Scores outputs on validation once (cache first), for a `Predictor`."""

    def __init__(self, pred, bundle, log=None):
        self.pred, self.bundle = pred, bundle
        self.cache = open_cache(bundle)
        self._cases: ValidationCases | None = None
        self._why: str | None = None
        self.log = log or (lambda msg: print(msg, file=sys.stderr))

    def cases(self) -> ValidationCases | None:
        """The run's validation cases, looked up once (None: see `why_not`)."""
        if self._cases is None and self._why is None:
            self._cases, self._why = validation_data(self.bundle)
        return self._cases

    @property
    def why_not(self) -> str | None:
        return self._why

    def record(self, models, tta: bool) -> dict | None:
        """The cached or freshly computed record of ``models`` (None where no validation data
        and no cached record exist, or for fold models)."""
        if any(m.kind == "fold" for m in models):
            return None
        key = output_key(models, tta)
        found = self.cache.get(key)
        if found is not None:
            return found
        val = self.cases()
        if val is None:
            return None
        self.log(f"validating {describe(models)}{' with mirroring' if tta else ''} on "
                 f"{len(val.cases)} validation case(s) (once; cached in "
                 f"{self.cache.path})")
        rec = score_output(self.pred, models, val, tta)
        self.cache.put(key, rec)
        return rec


def _best_single(validator: Validator, models) -> tuple[str, float] | None:
    """The best validation Dice among the rank-1 models of ``models``' (phase, arch) groups."""
    best = None
    for group in group_models(models).values():
        rec = validator.record([group[0]], False) if group[0].rank == 1 else None
        if rec is not None and (best is None or record_dice(rec) > best[1]):
            best = (describe([group[0]]), record_dice(rec))
    return best


def decide(validator: Validator, outputs, tta: str, postprocessing: str) -> list[str]:
    """Set each output's mirroring (``tta``: auto = on only where validation shows it helps)
    and, with ``postprocessing == "auto"``, the postprocessing chosen on validation for
    exactly that output; return the lines that say what is applied and how it scored."""
    from study.evaluation.postprocess import WORDS

    if tta not in TTA_MODES:
        from study.errors import ConfigError

        raise ConfigError(f"--tta {tta}: use one of {', '.join(TTA_MODES)}")
    lines = []
    for o in outputs:
        plain = validator.record(o.models, False)
        mirrored = validator.record(o.models, True) if tta != "none" and plain else None
        if tta == "auto":
            o.tta = mirrored is not None and record_dice(mirrored) > record_dice(plain)
        else:
            o.tta = tta == "mirror"
        rec = mirrored if o.tta else plain
        if rec is None:
            why = ("fold models were trained on the validation cases" if
                   any(m.kind == "fold" for m in o.models) else validator.why_not or
                   "no validation record")
            lines.append(f"{describe(o.models)}{' with mirroring' if o.tta else ''}: not "
                         f"validated ({why})" + ("; mirroring off" if tta == "auto" else ""))
            o.validation = None
            continue
        if postprocessing == "auto":
            o.postprocessing = rec["chosen"]
        o.validation = {**rec, "val_dice_applied": rec["val_dice"].get(o.postprocessing)}
        lines.append(_line(validator, o, plain, mirrored, tta, WORDS))
    return lines


def _line(validator, o, plain, mirrored, tta, words) -> str:
    applied = o.validation["val_dice_applied"]
    text = (f"{describe(o.models)}{' with mirroring' if o.tta else ''}: validation Dice "
            + ("n/a" if applied is None else f"{applied:.3f}")
            + f" ({words.get(o.postprocessing, o.postprocessing)})")
    single = _best_single(validator, o.models)
    if single is not None and (len(o.models) > 1 or o.tta):
        text += f" vs {single[1]:.3f} for the best single model ({single[0]})"
    if tta == "auto" and mirrored is not None:
        text += (f"; mirroring {record_dice(mirrored):.3f} vs {record_dice(plain):.3f} "
                 f"without: {'on' if o.tta else 'off'}")
    return text
