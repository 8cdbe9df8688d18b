"""Reading an nnU-Net v2 / Medical Segmentation Decathlon style raw data set.

Layout::

    DATASET/dataset.json   {"channel_names": {"0": "pre", ...}, "labels": {"background": 0, ...},
                            "numTraining": N, "file_ending": ".nii.gz"}
    DATASET/imagesTr/CASE_0000.nii.gz ...   (one file per channel = phase)
    DATASET/labelsTr/CASE.nii.gz
    DATASET/imagesTs/..., DATASET/labelsTs/...   (optional held-out test cases)

`read_dataset` checks the structure (files, names, keys) without reading voxels;
`load_case` reads one case and checks its voxels (shapes, affines, values). Every problem
raises `study.errors.DataError` naming the file and saying how to fix it.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from study.errors import DataError
from study.io import read_json_object

REQUIRED_KEYS = ("channel_names", "labels", "file_ending")
AFFINE_ATOL = 1e-3  # mm; affines of a case's files must agree to this tolerance


class DataWarning(UserWarning):
    """Something unusual but usable in a data set (e.g. a case without any tumor)."""


def resolve_cache_root(cache_root: str | os.PathLike | None = None) -> Path:
    """The cache root: the argument, else ``$STUDY_CACHE``, else ``~/.cache/study``."""
    if cache_root is not None:
        return Path(cache_root).expanduser()
    env = os.environ.get("STUDY_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "study"


@dataclass(frozen=True)
class DatasetSpec:
    """The structure of a raw data set (no voxels)."""

    root: Path
    phases: list[str]  # channel names in channel order
    label_name: str
    label_value: int
    labels: dict[str, int]
    train_ids: list[str]  # cases in imagesTr
    test_ids: list[str]  # cases in imagesTs (may be empty)
    file_ending: str
    channel_keys: list[str] = field(default_factory=list)  # "0", "1", ... as in dataset.json

    @property
    def case_ids(self) -> list[str]:
        return [*self.train_ids, *self.test_ids]

    def _split_dir(self, case_id: str) -> tuple[str, str]:
        if case_id in self.test_ids:
            return "imagesTs", "labelsTs"
        if case_id in self.train_ids:
            return "imagesTr", "labelsTr"
        raise KeyError(f"unknown case {case_id!r} in {self.root}")

    def image_paths(self, case_id: str) -> list[Path]:
        images, _ = self._split_dir(case_id)
        return [
            self.root / images / f"{case_id}_{int(k):04d}{self.file_ending}"
            for k in self.channel_keys
        ]

    def label_path(self, case_id: str) -> Path:
        _, labels = self._split_dir(case_id)
        return self.root / labels / f"{case_id}{self.file_ending}"


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(
            f"{path}: dataset.json not found; a data set needs DATASET/dataset.json with "
            f"channel_names, labels and file_ending (nnU-Net v2 layout)"
        )
    meta = read_json_object(path, DataError, "fix the file",
                            "with channel_names, labels, file_ending")
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise DataError(
            f"{path}: missing required key(s) {', '.join(missing)}; add e.g. "
            '"channel_names": {"0": "arterial"}, "labels": {"background": 0, "tumor": 1}, '
            '"file_ending": ".nii.gz"'
        )
    return meta


def _parse_channels(path: Path, channel_names) -> tuple[list[str], list[str]]:
    if not isinstance(channel_names, dict) or not channel_names:
        raise DataError(f'{path}: "channel_names" must be a non-empty object like {{"0": "arterial"}}')
    try:
        keys = sorted(channel_names, key=int)
    except (TypeError, ValueError):
        raise DataError(
            f'{path}: "channel_names" keys must be channel numbers "0", "1", ...; got {list(channel_names)}'
        ) from None
    if [int(k) for k in keys] != list(range(len(keys))):
        raise DataError(f'{path}: "channel_names" keys must be 0..{len(keys) - 1} without gaps; got {keys}')
    phases = [str(channel_names[k]) for k in keys]
    if len(set(phases)) != len(phases):
        raise DataError(f'{path}: "channel_names" has duplicate names {phases}; each phase needs a unique name')
    return keys, phases


def _parse_labels(path: Path, labels, label: str | None) -> tuple[dict[str, int], str, int]:
    if not isinstance(labels, dict) or not labels:
        raise DataError(f'{path}: "labels" must be an object like {{"background": 0, "tumor": 1}}')
    parsed: dict[str, int] = {}
    for name, value in labels.items():
        if isinstance(value, list | tuple):  # nnU-Net region labels: not supported
            raise DataError(f'{path}: label "{name}" is a region {value}; only integer labels are supported')
        try:
            parsed[str(name)] = int(value)
        except (TypeError, ValueError):
            raise DataError(f'{path}: label "{name}" has non-integer value {value!r}') from None
    if parsed.get("background", 0) != 0:
        raise DataError(f'{path}: label "background" must be 0')
    foreground = {k: v for k, v in parsed.items() if v != 0}
    if not foreground:
        raise DataError(f'{path}: "labels" declares no foreground label; add e.g. "tumor": 1')
    if label is None:
        if "tumor" in foreground:
            label = "tumor"
        elif len(foreground) == 1:
            label = next(iter(foreground))
        else:
            raise DataError(
                f"{path}: several foreground labels {sorted(foreground)} and none is named "
                f'"tumor"; choose one with --label NAME'
            )
    if label not in foreground:
        raise DataError(
            f'{path}: label "{label}" is not a foreground label of this data set; '
            f"choose one of {sorted(foreground)}"
        )
    return parsed, label, foreground[label]


def _scan_images(
    folder: Path, file_ending: str, n_channels: int, *, required: bool
) -> list[str]:
    if not folder.is_dir():
        if required:
            raise DataError(f"{folder}: folder not found; training images go in DATASET/imagesTr")
        return []
    pattern = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})" + re.escape(file_ending) + "$")
    found: dict[str, set[int]] = {}
    lower: dict[str, str] = {}
    for entry in sorted(os.listdir(folder)):
        if entry.startswith("."):
            continue
        if not entry.endswith(file_ending):
            warnings.warn(f"{folder / entry}: ignored (does not end with {file_ending})",
                          DataWarning, stacklevel=3)
            continue
        m = pattern.match(entry)
        if not m:
            raise DataError(
                f"{folder / entry}: file name must be CASE_XXXX{file_ending} "
                f"(XXXX = 4-digit channel number); rename it or move it out of {folder.name}"
            )
        case, ch = m.group("case"), int(m.group("ch"))
        if ch >= n_channels:
            raise DataError(
                f"{folder / entry}: channel {ch:04d} is not declared in dataset.json "
                f"channel_names (0..{n_channels - 1}); declare it or remove the file"
            )
        key = case.lower()
        if key in lower and lower[key] != case:
            raise DataError(
                f"{folder / entry}: duplicate case id {case!r} (also {lower[key]!r} differing "
                f"only in case); case ids must be unique"
            )
        lower[key] = case
        found.setdefault(case, set()).add(ch)
    if not found and required:
        raise DataError(
            f"{folder}: no images{' (empty directory)' if not any(folder.iterdir()) else ''}; "
            f"expected files like CASE_0000{file_ending}"
        )
    for case, chans in found.items():
        missing = sorted(set(range(n_channels)) - chans)
        if missing:
            names = ", ".join(str(folder / f"{case}_{c:04d}{file_ending}") for c in missing)
            raise DataError(f"{names}: missing phase file(s) for case {case!r}; every case needs all {n_channels} channels")
    return sorted(found)


def _check_labels_exist(root: Path, labels_dir: str, ids: list[str], file_ending: str) -> None:
    folder = root / labels_dir
    for case in ids:
        path = folder / f"{case}{file_ending}"
        if not path.is_file():
            raise DataError(f"{path}: label file missing for case {case!r}; add the mask")
    if folder.is_dir():
        known = set(ids)
        for entry in sorted(os.listdir(folder)):
            if entry.startswith(".") or not entry.endswith(file_ending):
                continue
            case = entry[: -len(file_ending)]
            if case not in known:
                warnings.warn(f"{folder / entry}: label without images, ignored", DataWarning, stacklevel=3)


def read_dataset(root: str | os.PathLike, label: str | None = None) -> DatasetSpec:
    """Read and check the structure of a raw data set (no voxels are read)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data set folder not found")
    json_path = root / "dataset.json"
    meta = _read_json(json_path)
    keys, phases = _parse_channels(json_path, meta["channel_names"])
    labels, label_name, label_value = _parse_labels(json_path, meta["labels"], label)
    file_ending = meta["file_ending"]
    if not isinstance(file_ending, str) or file_ending not in (".nii.gz", ".nii"):
        raise DataError(f'{json_path}: "file_ending" must be ".nii.gz" or ".nii"; got {file_ending!r}')
    train = _scan_images(root / "imagesTr", file_ending, len(keys), required=True)
    test = _scan_images(root / "imagesTs", file_ending, len(keys), required=False)
    dup = sorted(set(train) & set(test))
    if dup:
        raise DataError(
            f"{root / 'imagesTs'}: duplicate case id(s) {dup} also in imagesTr; a case must be "
            f"either training or test"
        )
    _check_labels_exist(root, "labelsTr", train, file_ending)
    if test:
        _check_labels_exist(root, "labelsTs", test, file_ending)
    n = meta.get("numTraining")
    if n is not None and n != len(train):
        warnings.warn(f"{json_path}: numTraining is {n} but imagesTr holds {len(train)} cases",
                      DataWarning, stacklevel=2)
    return DatasetSpec(root=root, phases=phases, label_name=label_name, label_value=label_value,
                       labels=labels, train_ids=train, test_ids=test, file_ending=file_ending,
                       channel_keys=keys)


def _load_nifti(path: Path, *, dtype=np.float32):
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=dtype)
    except Exception as exc:  # nibabel raises many kinds (ImageFileError, EOFError, zlib.error)
        raise DataError(f"{path}: cannot read NIfTI ({type(exc).__name__}: {exc}); the file is "
                        f"unreadable or truncated, re-export it") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: image must be 3D, got shape {tuple(data.shape)}; "
                        f"export one 3D volume per phase")
    if min(data.shape) < 1:
        raise DataError(f"{path}: empty image of shape {data.shape}")
    return data, np.asarray(img.affine, dtype=np.float64)


def voxel_spacing(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm along the array axes (norms of the affine's columns)."""
    a = np.asarray(affine, dtype=np.float64)
    return tuple(float(s) for s in np.sqrt((a[:3, :3] ** 2).sum(axis=0)))


def read_volume(path: str | os.PathLike, *, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """One 3D NIfTI file -> ``(array, affine)``; unreadable / not 3D -> DataError naming it."""
    return _load_nifti(Path(path), dtype=dtype)


def read_mask(path: str | os.PathLike, value: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A label file -> ``(uint8 mask, affine)``: 1 where the label equals ``value``
    (``None``: any value > 0). Non-finite values -> DataError naming the file."""
    raw, affine = _load_nifti(Path(path), dtype=np.float64)
    if not np.all(np.isfinite(raw)):
        raise DataError(f"{path}: NaN/Inf values in the label; labels must be integers")
    mask = (raw > 0) if value is None else (raw == value)
    return mask.astype(np.uint8), affine


@dataclass
class Case:
    """One case in memory: native geometry."""

    case_id: str
    image: np.ndarray  # (C, X, Y, Z) float32
    label: np.ndarray  # (X, Y, Z) uint8, 1 = target structure
    affine: np.ndarray  # 4x4
    spacing: tuple[float, float, float]
    image_paths: list[Path]
    label_path: Path


def _same_grid(path, shape, affine, ref_path, ref_shape, ref_affine, rule: str) -> None:
    """DataError naming ``path`` when its shape or affine differs from ``ref_path``'s."""
    if tuple(shape) != tuple(ref_shape):
        raise DataError(f"{path}: shape {tuple(shape)} differs from {ref_path} "
                        f"{tuple(ref_shape)}; {rule}")
    if not np.allclose(affine, ref_affine, atol=AFFINE_ATOL, rtol=0):
        raise DataError(f"{path}: affine differs from {ref_path}; {rule}")


def load_case(spec: DatasetSpec, case_id: str) -> Case:
    """Read one case and check it: 3D, finite, same shape/affine everywhere, valid labels."""
    paths = spec.image_paths(case_id)
    chans, affine0 = [], None
    for p in paths:
        data, affine = _load_nifti(p)
        if not np.all(np.isfinite(data)):
            bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
            raise DataError(f"{p}: {bad} NaN/Inf voxel(s); replace them (e.g. with 0) and re-export")
        if chans:
            _same_grid(p, data.shape, affine, paths[0], chans[0].shape, affine0,
                       "all phases of a case must be co-registered on one grid (resample them "
                       "onto one grid first)")
        else:
            affine0 = affine
        chans.append(data)
    label_path = spec.label_path(case_id)
    raw, laffine = _load_nifti(label_path, dtype=np.float64)
    _same_grid(label_path, raw.shape, laffine, paths[0], chans[0].shape, affine0,
               "the label must be on the image grid (same shape and affine)")
    if not np.all(np.isfinite(raw)):
        raise DataError(f"{label_path}: NaN/Inf values in the label; labels must be integers")
    values = np.unique(raw)
    allowed = set(spec.labels.values())
    bad = [v for v in values.tolist() if v not in allowed]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:10])
        raise DataError(f"{label_path}: label value(s) {shown} not declared in dataset.json labels "
                        f"{spec.labels}; declare them or fix the mask")
    label = (raw == spec.label_value).astype(np.uint8)
    spacing = voxel_spacing(affine0)
    return Case(case_id=case_id, image=np.stack(chans).astype(np.float32, copy=False), label=label,
                affine=affine0, spacing=spacing, image_paths=paths, label_path=label_path)
