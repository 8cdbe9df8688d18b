"""``python -m study.apply.predict``: segment new scans with a study's models.

    python -m study.apply.predict runs/demo -i new_scans/ -o masks/
    python -m study.apply.predict runs/demo -i new_scans/ -o masks/ --phase arterial --top 2
    python -m study.apply.predict runs/demo -i new_scans/ -o masks/ --ensemble archs
    python -m study.apply.predict model.zip -i scan_0000.nii.gz scan_0001.nii.gz -o masks/

Input: cases in the raw naming of training, ``CASE_XXXX.nii.gz`` (or ``.nii``), one file
per channel; the run's ``dataset.json`` says which channel is which phase. Only the
channels the chosen models use are needed. ``-i`` is a folder or the files of cases.

Models (`study.apply.bundle`): ``--model best`` (default) takes the budget-aware best trial of
every (phase, architecture) the run tested; ``--phase`` / ``--arch`` narrow that;
``--top K`` averages the probability maps of the K best trials of each (phase, arch);
``--ensemble archs|phases|all`` averages the (phase, arch) groups of each phase, of each
architecture, or all of them (each group weighs the same, whatever its K).

Each case goes through the training preprocessing (`study.data.resample.preprocess_image`:
resample to the run's grid, percentile clip + z-score, int16 round trip) and the same
inference (sliding window, slices or slabs; bf16 autocast on CUDA); the mean probability is
resampled to the case's source grid (`study.evaluation.inference.to_native`), thresholded, postprocessed
as the study chose on validation (``--postprocessing auto``; see `study.evaluation.postprocess`) and
written as a uint8 mask with the source affine: ``OUT/CASE.nii.gz`` when one output is asked for, else
``OUT/PHASE/ARCH/CASE.nii.gz`` (or ``OUT/PHASE/`` / ``OUT/ARCH/`` for ensembles).
``--save-probabilities`` adds ``CASE.npz`` (``probabilities`` float16 on the source grid,
``affine``). ``OUT/predictions.json`` records which models made each file.

A bad case (missing channel, shapes or affines that differ between channels, a file that is
not NIfTI) prints ``error: case X: ...``, gets nothing written, and the others go on; the
exit code is then 2. ``--continue`` skips cases whose outputs exist.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from study.apply import cost
from study.apply.bundle import Bundle, ModelRef, open_bundle
from study.apply.inputs import find_cases, grid_inputs, read_case
from study.apply.validation import Validator, decide, group_models
from study.errors import ConfigError, UserError, run_cli

ENSEMBLES = ("archs", "phases", "all")


@dataclass
class Output:
    """One file per case: ``folder/CASE.nii.gz``, the mean of its ``groups``' maps."""

    folder: str  # relative to OUT ("" = OUT itself)
    groups: list[list[ModelRef]]  # each group: the top-K models of one (phase, arch)
    postprocessing: str = "none"  # applied to the thresholded mask (study.evaluation.postprocess)
    tta: bool = False  # test-time mirroring (study.evaluation.inference.mirror_axes_for)
    validation: dict | None = None  # its validation record (study.apply.validation)

    @property
    def models(self) -> list[ModelRef]:
        return [m for g in self.groups for m in g]


def set_postprocessing(outputs: list[Output], choice: str) -> list[tuple[Output, str]]:
    """``choice``: a candidate of `study.evaluation.postprocess` for every output, or ``auto``: the one
    the study chose on validation for the output's models when they all agree (a single
    model, or an ensemble of models with the same choice), else ``none``; the validation of
    the output itself (`study.apply.validation.decide`) overrides this where it can be
    computed. -> [(output, note)]."""
    from study.evaluation.postprocess import CANDIDATES

    if choice != "auto" and choice not in CANDIDATES:
        raise ConfigError(f"--postprocessing {choice}: use auto or one of "
                          f"{', '.join(CANDIDATES)}")
    notes = []
    for o in outputs:
        chosen = {m.postprocessing for m in o.models}
        if choice != "auto":
            o.postprocessing = choice
        elif len(chosen) == 1:
            o.postprocessing = chosen.pop()
        else:
            o.postprocessing = "none"
            notes.append((o, f"{o.folder or 'output'}: its models were chosen different "
                             f"postprocessing ({', '.join(sorted(chosen))}); none applied "
                             f"(set --postprocessing to choose one)"))
    return notes


def plan_outputs(models: list[ModelRef], ensemble: str | None) -> list[Output]:
    """Group the chosen models into outputs (see the module docstring)."""
    groups = group_models(models)

    def by(key) -> dict[str, list[list[ModelRef]]]:
        out: dict[str, list[list[ModelRef]]] = {}
        for (phase, arch), g in groups.items():
            out.setdefault(key(phase, arch), []).append(g)
        return out

    if ensemble == "all":
        outs = {"": list(groups.values())}
    elif ensemble == "archs":
        outs = by(lambda phase, arch: phase)
    elif ensemble == "phases":
        outs = by(lambda phase, arch: arch)
    else:
        outs = by(lambda phase, arch: f"{phase}/{arch}")
    if len(outs) == 1:
        return [Output("", next(iter(outs.values())))]
    return [Output(folder, gs) for folder, gs in outs.items()]


# --------------------------------------------------------------------------- prediction


class Predictor:
    """Loads each model once; turns a case's native volumes into probability maps."""

    def __init__(self, bundle: Bundle, device=None):
        from study.train.engine import resolve_device

        self.bundle = bundle
        self.device = resolve_device(device)
        self._models: dict[str, tuple] = {}

    def model(self, ref: ModelRef):
        if ref.key not in self._models:
            from study.train.checkpoint import load_model

            if ref.path is None:
                raise ConfigError(f"{self.bundle.source}: the checkpoint of trial {ref.trial} "
                                  f"({ref.key}) is gone; choose a smaller --top")
            self._models[ref.key] = load_model(ref.path, device=self.device)
        return self._models[ref.key]

    def threshold(self, refs: list[ModelRef]) -> float:
        return float(self.model(refs[0])[1].threshold)

    def probability(self, groups: list[list[ModelRef]], grid_images: dict[str, np.ndarray],
                    *, tta: bool = False, affine=None):
        """Mean over groups of the mean over each group's models, on the study grid; with
        ``tta`` each model's map is itself the mean over its mirrorings (the axes of
        `mirror_axes_for` the volume's ``affine``)."""
        from study.evaluation.inference import mirror_axes_for, predict_volume
        from study.models import model_kind

        total = None
        for group in groups:
            acc = None
            for ref in group:
                model, cfg = self.model(ref)
                image = np.stack([grid_images[p] for p in cfg.phases])
                kind = model_kind(cfg.arch)
                prob = predict_volume(model, kind, image, patch=cfg.patch,
                                      overlap=cfg.overlap, batch_size=cfg.eval_batch_size,
                                      mirror_axes=mirror_axes_for(kind, affine) if tta else ())
                acc = prob if acc is None else acc + prob
            mean = acc / np.float32(len(group)) if len(group) > 1 else acc
            total = mean if total is None else total + mean
        return total / np.float32(len(groups)) if len(groups) > 1 else total

    def input_phases(self, refs: list[ModelRef]) -> list[str]:
        return sorted({p for r in refs for p in self.model(r)[1].phases})


def _paths(out: Path, o: Output, case: str, probabilities: bool) -> list[Path]:
    base = out / o.folder if o.folder else out
    return [base / f"{case}.nii.gz"] + ([base / f"{case}.npz"] if probabilities else [])


def predict_case(pred: Predictor, case: str, files: dict[str, Path], outputs: list[Output],
                 out: Path, *, probabilities: bool = False
                 ) -> tuple[dict[str, list[str]], list[str]]:
    """Segment one case into every output; return ({written file: model keys}, warnings
    that the scan is unlike the training scans)."""
    from study.data.dataset import voxel_spacing
    from study.evaluation.inference import save_nifti, to_native
    from study.evaluation.postprocess import apply
    from study.io import atomic_path

    every = [m for o in outputs for m in o.models]
    phases = pred.input_phases(every)
    vols, affine = read_case(case, files, phases, pred.bundle.channels)
    warnings = _check(case, vols, affine, pred.bundle)
    grid_images, work_affine = grid_inputs(vols, affine, pred.bundle)
    shape = next(iter(vols.values())).shape
    back = affine if pred.bundle.canonical else None  # masks go back to the source axes
    written: dict[str, list[str]] = {}
    results = []
    for o in outputs:  # compute everything first: a failure leaves no file of this case
        prob = to_native(pred.probability(o.groups, grid_images, tta=o.tta,
                                          affine=work_affine), shape, back)
        results.append((o, prob, pred.threshold(o.models)))
    for o, prob, threshold in results:
        paths = _paths(out, o, case, probabilities)
        mask = apply(prob >= threshold, voxel_spacing(affine), o.postprocessing)
        save_nifti(mask.astype(np.uint8), affine, paths[0])
        if probabilities:
            with atomic_path(paths[1], suffix=".npz") as tmp:
                np.savez_compressed(tmp, probabilities=prob.astype(np.float16), affine=affine)
        for p in paths:
            written[str(p.relative_to(out))] = [m.key for m in o.models]
    return written, warnings


def _check(case: str, vols: dict, affine, bundle: Bundle) -> list[str]:
    """Warnings for a scan unlike the run's training scans (`study.plans.check_scan`), on
    stderr now."""
    from study.plans import case_fingerprint, check_scan

    if not bundle.plans:
        return []
    found = check_scan(case, case_fingerprint(vols, None, affine), bundle.plans)
    for w in found:
        print(f"warning: {w}", file=sys.stderr)
    return found


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.apply.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (runs/NAME) or model archive (.zip from study.apply.export)")
    p.add_argument("-i", "--input", nargs="+", required=True, type=Path,
                   help="folder of cases (CASE_0000.nii.gz ...) or the files of cases")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--model", default="best", type=cost.model_arg,
                   help="best: the budget-aware best trial per (phase, arch) (default); cv: "
                        "the fold ensemble of each phase's cross-validated winner "
                        "(a study run with --finalists); "
                        "pareto:N: per phase, the N-th model of the Dice-against-cost front, "
                        "cheapest first (study.apply.cost)")
    cost.add_arguments(p)  # --max-params, --max-seconds
    p.add_argument("--phase", nargs="+", help="only models of these phases")
    p.add_argument("--arch", nargs="+", help="only models of these architectures")
    p.add_argument("--top", type=int, default=1,
                   help="average the K best trials of each (phase, arch) (default 1)")
    p.add_argument("--ensemble", choices=ENSEMBLES,
                   help="average over architectures (per phase), phases (per arch), or all")
    p.add_argument("--postprocessing", default="auto",
                   help="auto (default: what the study chose on validation for these models), "
                        "none, or a candidate of study.evaluation.postprocess (e.g. largest)")
    p.add_argument("--tta", default="auto", choices=["auto", "none", "mirror"],
                   help="test-time mirroring along every axis but left-right (in-plane only "
                        "for 2D models): auto (default) = on only where it scores better on "
                        "the run's validation cases; none; mirror = always")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write CASE.npz: float16 probabilities on the source grid")
    p.add_argument("--continue", dest="resume", action="store_true",
                   help="skip cases whose outputs already exist")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    return p


def _record(out: Path, info: dict) -> None:
    from study.io import write_text_atomic

    write_text_atomic(out / "predictions.json", json.dumps(info, indent=1, default=str))


def _previous(out: Path) -> dict:
    path = out / "predictions.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        return {}


def _main(argv=None) -> int:
    from tqdm.auto import tqdm

    from study.io import ensure_writable_dir

    args = build_parser().parse_args(argv)
    with open_bundle(args.run) as bundle:
        models = cost.select(bundle, args) if cost.by_cost(args) else \
            bundle.select(phases=args.phase, archs=args.arch, top=args.top, model=args.model)
        outputs = plan_outputs(models, args.ensemble)
        notes = set_postprocessing(outputs, args.postprocessing)
        cases = find_cases(args.input)
        out = ensure_writable_dir(args.output, "-o", ConfigError)
        pred = Predictor(bundle, args.device)
        for o in outputs:
            pred.input_phases(o.models)  # load every model now: a bad checkpoint fails early
        for line in decide(Validator(pred, bundle), outputs, args.tta, args.postprocessing):
            print(line)
        for o, note in notes:  # the models' own choices only matter where nothing validated
            if o.validation is None:
                print(f"note: {note}", file=sys.stderr)
        info = {"source": str(bundle.source), "run": bundle.name, "label": bundle.label,
                "label_value": bundle.label_value, "grid": None if bundle.grid is None else list(bundle.grid),
                "spacing": None if bundle.spacing is None else list(bundle.spacing),
                "top": args.top, "ensemble": args.ensemble, "device": str(pred.device),
                "models": {m.key: {**m.describe(), "path": bundle.where(m)} for m in models},
                "postprocessing": {o.folder or ".": o.postprocessing for o in outputs},
                "tta": {o.folder or ".": "mirror" if o.tta else "none" for o in outputs},
                "validation": {o.folder or ".": o.validation for o in outputs},
                "files": {}, "failed": {}}
        if args.resume:
            prev = _previous(out)
            info["files"].update(prev.get("files") or {})
        print(f"{len(cases)} case(s), {len(models)} model(s) "
              f"({', '.join(m.key for m in models)}) -> {len(outputs)} output(s) per case in "
              f"{out}", file=sys.stderr)
        failed = {}
        for case, files in tqdm(cases.items(), desc="predict", unit="case", file=sys.stderr):
            if args.resume and all(p.is_file() for o in outputs
                                   for p in _paths(out, o, case, args.save_probabilities)):
                continue
            try:
                written, warnings = predict_case(pred, case, files, outputs, out,
                                                 probabilities=args.save_probabilities)
                if warnings:
                    info.setdefault("warnings", {})[case] = warnings
                info["files"].update(written)
            except UserError as exc:
                msg = str(exc) if str(exc).startswith(f"case {case}:") else f"case {case}: {exc}"
                failed[case] = msg
                tqdm.write(f"error: {msg}", file=sys.stderr)
            info["failed"] = failed
            _record(out, info)
        _record(out, info)
    done = len(cases) - len(failed)
    print(f"predicted {done} of {len(cases)} case(s) into {out}"
          + (f"; {len(failed)} failed: {', '.join(failed)}" if failed else ""))
    return 2 if failed else 0


def main(argv=None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
