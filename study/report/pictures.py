"""Pictures: axial slice through the largest tumor and a coronal slice, with ground truth
(green outline) and prediction (red tint) over the image, as embedded PNGs.

Images and labels come from the raw data set recorded in ``study.json`` (``"data"``,
``"label"``); predictions from ``runs/NAME/predictions/PHASE/ARCH/CASE.nii.gz`` (source
geometry, so they align with the raw files voxel for voxel). Anything missing becomes a
message on the page, never an exception.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from study.report.png import encode_palette_png
from study.report.tables import arch_key, natural_key

GRAY_LEVELS = 127  # palette: 0..126 gray, 127..253 red-tinted gray, 254 green (truth outline)
GREEN = 254
SUFFIX = ".nii.gz"


def _palette() -> np.ndarray:
    g = np.linspace(0, 255, GRAY_LEVELS)
    gray = np.stack([g, g, g], 1)
    tint = np.stack([0.5 * g + 0.5 * 255, 0.5 * g, 0.5 * g], 1)
    rest = np.array([[0, 230, 0], [255, 255, 0]])
    return np.concatenate([gray, tint, rest]).round().astype(np.uint8)


PALETTE = _palette()


@dataclass
class View:
    png: bytes
    width_mm: float
    height_mm: float
    label: str  # e.g. "axial z=12"

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class CasePictures:
    case: str
    tumor_voxels: int
    views: dict[str, list[View]] = field(default_factory=dict)  # arch -> [axial, coronal]
    problems: dict[str, str] = field(default_factory=dict)  # arch -> message


@dataclass
class PhasePictures:
    phase: str
    archs: list[str]
    cases: list[CasePictures]
    message: str = ""


def window(volume: np.ndarray) -> np.ndarray:
    """Gray levels 0..GRAY_LEVELS-1 from the 1st..99th intensity percentile of the volume."""
    v = np.asarray(volume, dtype=np.float32)
    lo, hi = np.percentile(v, [1, 99]) if v.size else (0.0, 1.0)
    scaled = (v - lo) / ((hi - lo) or 1.0)
    return (np.clip(scaled, 0, 1) * (GRAY_LEVELS - 1)).round().astype(np.uint8)


def overlay(gray: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Palette index image: prediction tinted red, ground-truth outline green."""
    idx = gray.astype(np.uint8).copy()
    idx[pred] += GRAY_LEVELS
    edge = truth & ~ndimage.binary_erosion(truth)
    idx[edge] = GREEN
    return idx


def tumor_slices(truth: np.ndarray, pred: np.ndarray | None = None) -> tuple[int, int]:
    """(z, y): the axial and coronal slices where the largest tumor component is widest.

    Falls back to the prediction, then to the volume centre, when there is no tumor.
    """
    for mask in (truth, pred):
        if mask is None or not mask.any():
            continue
        labels, n = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        comp = labels == (int(np.argmax(sizes)) + 1)
        z = int(np.argmax(comp.sum(axis=(0, 1))))
        y = int(np.argmax(comp.sum(axis=(0, 2))))
        return z, y
    return truth.shape[2] // 2, truth.shape[1] // 2


def _view(gray2d, truth2d, pred2d, zooms: tuple[float, float], label: str) -> View:
    """Axis 0 of the slice runs left to right, axis 1 bottom to top."""
    idx = overlay(gray2d, truth2d, pred2d).T[::-1]
    png = encode_palette_png(idx, PALETTE)
    return View(png, gray2d.shape[0] * zooms[0], gray2d.shape[1] * zooms[1], label)


def case_views(image, truth, pred, zooms, z: int, y: int) -> list[View]:
    """[axial at z, coronal at y] for one prediction."""
    gray = window(image)
    return [
        _view(gray[:, :, z], truth[:, :, z], pred[:, :, z], (zooms[0], zooms[1]), f"axial z={z}"),
        _view(gray[:, y, :], truth[:, y, :], pred[:, y, :], (zooms[0], zooms[2]), f"coronal y={y}"),
    ]


def _read_spec(meta: dict):
    data = meta.get("data")
    if not data:
        return None, 'study.json has no "data" (path of the raw data set): no pictures'
    if not Path(data).is_dir():
        return None, f"data set {data} (study.json \"data\") not found: no pictures"
    try:
        from study.data import read_dataset
    except ImportError:  # the data layer is always installed with the package; be tolerant
        return None, "study.data.read_dataset unavailable: no pictures"
    try:
        return read_dataset(data, label=meta.get("label")), ""
    except Exception as exc:  # DataError and friends: report, never crash the page
        return None, f"data set {data} unreadable: {exc}"


def _channel(spec, phase: str) -> int:
    for part in [phase, *phase.replace(",", "+").split("+")]:
        if part in spec.phases:
            return spec.phases.index(part)
    return 0


def _load(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    img = nib.load(str(path))
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, tuple(float(z) for z in img.header.get_zooms()[:3])


def phase_pictures(run_dir: Path, meta: dict, phase: str, max_cases: int = 3) -> PhasePictures:
    """Pictures of the best model of each architecture of one phase, for up to
    ``max_cases`` test cases (those with the most tumor voxels, the same for every arch)."""
    pdir = Path(run_dir) / "predictions" / phase
    archs = sorted((d.name for d in pdir.iterdir() if d.is_dir()), key=arch_key) if pdir.is_dir() else []
    if not archs:
        return PhasePictures(phase, [], [], f"no predictions under predictions/{phase}/")
    spec, why = _read_spec(meta)
    if spec is None:
        return PhasePictures(phase, archs, [], why)
    cases = sorted({p.name[: -len(SUFFIX)] for a in archs for p in (pdir / a).glob(f"*{SUFFIX}")},
                   key=natural_key)
    label_value = int(getattr(spec, "label_value", 1))
    truths: dict[str, tuple[np.ndarray, tuple]] = {}
    problems = []
    for case in cases:
        try:
            lab, zooms = _load(spec.label_path(case))
            truths[case] = (lab == label_value, zooms)
        except Exception as exc:  # unknown case, missing or broken file
            problems.append(f"{case}: no ground truth ({type(exc).__name__}: {exc})")
    chosen = sorted(truths, key=lambda c: (-int(truths[c][0].sum()), natural_key(c)))[:max_cases]
    out = PhasePictures(phase, archs, [], "; ".join(problems))
    channel = _channel(spec, phase)
    for case in chosen:
        truth, zooms = truths[case]
        cp = CasePictures(case, int(truth.sum()))
        try:
            image, _ = _load(spec.image_paths(case)[channel])
        except Exception as exc:
            cp.problems = {a: f"image unreadable: {exc}" for a in archs}
            out.cases.append(cp)
            continue
        preds = {}
        for arch in archs:
            path = pdir / arch / f"{case}{SUFFIX}"
            if not path.is_file():
                cp.problems[arch] = "no prediction for this case"
                continue
            try:
                pred, _ = _load(path)
            except Exception as exc:
                cp.problems[arch] = f"prediction unreadable: {exc}"
                continue
            if pred.shape != truth.shape:
                cp.problems[arch] = f"prediction shape {pred.shape} != image shape {truth.shape}"
                continue
            preds[arch] = pred > 0.5
        z, y = tumor_slices(truth, next(iter(preds.values()), None))
        for arch, pred in preds.items():
            cp.views[arch] = case_views(image, truth, pred, zooms, z, y)
        out.cases.append(cp)
    return out
