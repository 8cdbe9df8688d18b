"""The inputs of `study.apply.predict` (and of the validation of what it applies): cases in the
raw naming of training (``CASE_XXXX.nii.gz``, one file per channel), read and checked, then
put on the run's study grid with its orientation and normalisation."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from study.errors import ConfigError, DataError

NIFTI = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})\.nii(\.gz)?$")
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})\.(?P<ext>.+)$")


def find_cases(inputs: list[Path]) -> dict[str, dict[str, Path]]:
    """``-i`` folder(s) or files -> {case: {channel "0001": path}}. Files named like a
    channel but not NIfTI are kept (the case then fails with a clear message)."""
    files: list[Path] = []
    for p in inputs:
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            files.append(p)
        else:
            raise ConfigError(f"-i {p}: no such file or folder")
    cases: dict[str, dict[str, Path]] = {}
    ignored = []
    for f in files:
        m = CHANNEL_FILE.match(f.name)
        if m is None:
            ignored.append(f.name)
            continue
        cases.setdefault(m.group("case"), {})[m.group("ch")] = f
    if ignored:
        print(f"note: ignored {len(ignored)} file(s) not named CASE_XXXX.nii.gz: "
              f"{', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}", file=sys.stderr)
    if not cases:
        where = ", ".join(str(p) for p in inputs)
        raise DataError(f"-i {where}: no input images; expected files named CASE_0000.nii.gz "
                        f"(one per channel, as in the training data)")
    return dict(sorted(cases.items()))


def read_case(case: str, files: dict[str, Path], phases: list[str],
              channels: dict[str, str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The phases' native volumes of one case, checked: {phase: (X, Y, Z)}, affine."""
    from study.data.dataset import AFFINE_ATOL, read_volume

    vols: dict[str, np.ndarray] = {}
    first: tuple[Path, np.ndarray, np.ndarray] | None = None
    for phase in phases:
        ch = channels[phase]
        path = files.get(ch)
        if path is None:
            have = ", ".join(sorted(f.name for f in files.values()))
            raise DataError(f"case {case}: missing channel {ch} ({phase}): no {case}_{ch}.nii.gz "
                            f"(found {have}); add the {phase} image or choose models with "
                            f"--phase")
        if not NIFTI.match(path.name):
            raise DataError(f"case {case}: {path} is not a NIfTI file (.nii or .nii.gz); "
                            f"convert it, e.g. with SimpleITK or dcm2niix")
        data, affine = read_volume(path)
        if not np.all(np.isfinite(data)):
            raise DataError(f"case {case}: {path} has NaN/Inf voxels; replace them and re-export")
        if first is None:
            first = (path, data, affine)
        elif data.shape != first[1].shape:
            raise DataError(f"case {case}: {path} has shape {data.shape} but {first[0].name} has "
                            f"{first[1].shape}; the phases of a case must be on one grid")
        elif not np.allclose(affine, first[2], atol=AFFINE_ATOL, rtol=0):
            raise DataError(f"case {case}: {path} has another affine than {first[0].name}; "
                            f"resample the phases onto one grid first")
        vols[phase] = data
    assert first is not None
    return vols, first[2]


def grid_inputs(vols: dict[str, np.ndarray], affine, bundle):
    """A case's native phase volumes -> ({phase: normalised volume on the study grid}, the
    affine of the axes the grid is in). A run trained in canonical orientation gets its
    inputs reoriented to RAS first (`study.data.orientation`), exactly as its cache was; a
    run trained at a target spacing puts each case on its own grid at that spacing."""
    from study.data import orientation as ori
    from study.data.dataset import voxel_spacing
    from study.data.resample import preprocess_image

    shape = next(iter(vols.values())).shape
    if bundle.canonical:
        vols = {p: ori.to_canonical(v, affine) for p, v in vols.items()}
        affine = ori.canonical_affine(affine, shape)
    schemes = bundle.preprocessing.get("channel_normalisation") or {}
    work_shape = next(iter(vols.values())).shape
    grid = bundle.case_grid(voxel_spacing(affine), work_shape)
    return {p: preprocess_image(v[None], grid, [schemes.get(p)])[0]
            for p, v in vols.items()}, affine
