"""The preprocessing cache: every case resampled, normalised, stored as .npy.

Geometry: ``grid=(X, Y, Z)`` resamples every case to that one shape (the seed's way);
``spacing="auto"`` or ``(x, y, z)`` mm (entries may be ``"auto"``) resamples each case to its
own grid at the target spacing (`study.data.spacing`). ``prepare(root, ...)`` returns a
`Prepared` view of
``CACHE_ROOT/<dataset name>-<key>/`` where ``key`` hashes the data set fingerprint (dataset.json
plus name and content digest of every NIfTI file, see `_file_digest`: content, not paths or
mtimes, so a copy of the same data on another node finds/builds the same key) and the preprocessing
settings. Layout::

    meta.json                      settings, fingerprint, per-case geometry, scales (written last)
    images/<case>_<k>.npy          int16 (Z, X, Y) per phase k (axial slices contiguous)
    masks/<case>.npy               uint8 (Z, X, Y), 1 = target label
    splits/seed<S>_val<V>_test<T>.json

The directory is built under a temporary name and renamed into place, so it is either
complete or absent; a file lock serialises builders on one node and "first rename wins"
resolves builders on different nodes sharing a file system. Reads are memory-mapped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np

from study.data import orientation as ori
from study.data import resample as rs
from study.data.dataset import (
    DatasetSpec,
    load_case,
    read_dataset,
    resolve_cache_root,
    voxel_spacing,
)
from study.data.intensity import ZSCORE, channel_schemes
from study.data.prepared import Prepared
from study.data.spacing import case_grid, parse_spacing, resolve_spacing
from study.data.splits import load_or_write_split, make_split
from study.errors import ConfigError, DataError
from study.io import atomic_dir, ensure_writable_dir, stale_dirs

CACHE_VERSION = 2  # 2: canonical (RAS) orientation
DEFAULT_GRID = (320, 256, 72)
_HASH_CHUNK = 1 << 16
_fp_memo: dict[tuple, str] = {}


def _file_digest(path: Path) -> str:
    """Digest of one file's content. ``.gz``: size + first and last 64 KiB (the gzip trailer
    holds a CRC32 of the whole uncompressed content, so any change of the voxels shows);
    other files: the whole content. Memoised per process on (path, size, mtime)."""
    st = path.stat()
    memo_key = (str(path), st.st_size, st.st_mtime_ns)
    if memo_key in _fp_memo:
        return _fp_memo[memo_key]
    h = hashlib.sha256(str(st.st_size).encode())
    with open(path, "rb") as f:
        if path.name.endswith(".gz") and st.st_size > 2 * _HASH_CHUNK:
            h.update(f.read(_HASH_CHUNK))
            f.seek(-_HASH_CHUNK, os.SEEK_END)
            h.update(f.read())
        else:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    _fp_memo[memo_key] = h.hexdigest()
    return _fp_memo[memo_key]


def fingerprint(spec: DatasetSpec) -> str:
    """Content fingerprint of a data set (dataset.json + every image/label file)."""
    h = hashlib.sha256((spec.root / "dataset.json").read_bytes())
    for case in spec.case_ids:
        for p in [*spec.image_paths(case), spec.label_path(case)]:
            h.update(f"{p.parent.name}/{p.name}:{_file_digest(p)}\n".encode())
    return h.hexdigest()[:20]


def settings_for(spec: DatasetSpec, grid, schemes: dict | None = None, spacing=None) -> dict:
    """The preprocessing settings (hashed into the cache key): ``grid`` (one shape) or the
    resolved target ``spacing`` (mm; ``grid`` None)."""
    return {
        "version": CACHE_VERSION,
        "grid": None if grid is None else [int(g) for g in grid],
        **({} if spacing is None else {"spacing": [float(s) for s in spacing]}),
        "label": spec.label_name,
        "label_value": spec.label_value,
        "image_interpolation": "trilinear (torch, align_corners=False)",
        "mask_interpolation": "nearest-exact (torch)",
        "normalisation": rs.NORMALISATION,
        "orientation": ori.CANONICAL,
        "channel_normalisation": schemes or {p: dict(ZSCORE) for p in spec.phases},
        "storage": "int16 * scale (per case and phase); masks uint8",
    }


def _cache_key(fp: str, settings: dict) -> str:
    blob = json.dumps({"fingerprint": fp, "settings": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_case(spec: DatasetSpec, case_id: str, settings: dict, out: Path) -> dict:
    case = load_case(spec, case_id)
    schemes = settings["channel_normalisation"]
    source_shape = tuple(int(s) for s in case.label.shape)
    # work in the closest RAS axes: the same scan stored in another axis order gives the
    # same arrays (study.data.orientation); the source geometry is kept to write back
    image, label = ori.to_canonical(case.image, case.affine), ori.to_canonical(case.label,
                                                                                case.affine)
    affine = ori.canonical_affine(case.affine, source_shape)
    shape = tuple(int(s) for s in label.shape)
    grid = settings["grid"] or case_grid(voxel_spacing(affine), shape, settings["spacing"])
    scales = []
    for k, chan in enumerate(image):
        q, scale = rs.prepare_channel(chan, grid, schemes.get(spec.phases[k]))
        np.save(out / "images" / f"{case_id}_{k}.npy", np.ascontiguousarray(q.transpose(2, 0, 1)))
        scales.append(scale)
    mask = rs.resample_mask(label, grid)
    np.save(out / "masks" / f"{case_id}.npy", np.ascontiguousarray(mask.transpose(2, 0, 1)))
    per_slice = mask.reshape(-1, mask.shape[2]).sum(axis=0)
    return {
        "scales": scales,
        "grid": [int(g) for g in grid],
        "shape": list(source_shape),
        "axcodes": ori.axcodes(case.affine),
        "canonical_shape": list(shape),
        "native_spacing": list(case.spacing),
        "spacing": list(rs.grid_spacing(voxel_spacing(affine), shape, grid)),
        "affine": case.affine.tolist(),
        "grid_affine": rs.grid_affine(affine, shape, grid).tolist(),
        "image_paths": [str(p.relative_to(spec.root)) for p in case.image_paths],
        "label_path": str(case.label_path.relative_to(spec.root)),
        "tumor_voxels": int(mask.sum()),
        "native_tumor_voxels": int(label.sum()),
        "slice_tumor": [int(v) for v in per_slice],
    }


def _build(spec: DatasetSpec, fp: str, settings: dict, final: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    host = socket.gethostname().replace("-", "_")
    for stale in stale_dirs(final, host):  # crashed builds on this node
        shutil.rmtree(stale, ignore_errors=True)
    # another builder (node, process) that finishes first wins: its cache is kept
    with atomic_dir(final, existing="keep", tag=host) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        (tmp / "splits").mkdir()
        cases = {}
        desc = f"preparing {spec.root.name} -> {geometry_text(settings)}"
        for case_id in tqdm(spec.case_ids, desc=desc, unit="case", disable=not progress):
            cases[case_id] = _build_case(spec, case_id, settings, tmp)
        meta = {"fingerprint": fp, "settings": settings, "phases": spec.phases,
                "label": spec.label_name, "train_ids": spec.train_ids, "test_ids": spec.test_ids,
                "source_root": str(spec.root), "cases": cases}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")


def geometry_text(settings: dict) -> str:
    """``128x128x32`` (one grid) or ``2.5x2.5x7.7 mm`` (a target spacing)."""
    if settings.get("grid"):
        return "x".join(map(str, settings["grid"]))
    return "x".join(f"{s:g}" for s in settings["spacing"]) + " mm"


def _check_geometry(grid, spacing) -> tuple:
    if spacing is not None:
        if grid is not None:
            raise ConfigError("give either grid (one shape for every case) or spacing (mm), "
                              "not both")
        return None, parse_spacing(spacing)
    grid = tuple(int(g) for g in (DEFAULT_GRID if grid is None else grid))
    if len(grid) != 3 or min(grid) < 1:
        raise ConfigError(f"grid must be three positive sizes (X, Y, Z), got {grid}")
    return grid, None


def prepare(root, *, label: str | None = None, grid=None, spacing=None, cache_root=None,
            seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2,
            progress: bool = True) -> Prepared:
    """Preprocess a data set into the cache (once) and return a memory-mapped view of it.
    ``grid`` (default `DEFAULT_GRID` when no ``spacing``) or ``spacing``: see the module
    docstring."""
    grid, spacing = _check_geometry(grid, spacing)
    spec = read_dataset(root, label=label)
    split_args = {"train_ids": spec.train_ids, "test_ids": spec.test_ids, "seed": seed,
                  "val_fraction": val_fraction, "test_fraction": test_fraction,
                  "where": str(spec.root)}
    make_split(**split_args)  # fail on an impossible split before building anything
    fp = fingerprint(spec)
    croot = resolve_cache_root(cache_root)
    target = None if spacing is None else resolve_spacing(spacing, spec)
    settings = settings_for(spec, grid, channel_schemes(spec, croot, fp), target)
    final = croot / f"{spec.root.name}-{_cache_key(fp, settings)}"
    if not (final / "meta.json").is_file():
        ensure_writable_dir(croot, "cache root ($STUDY_CACHE or --cache)", DataError)
        with _locked(croot / f".{final.name}.lock"):
            if final.exists() and not (final / "meta.json").is_file():
                shutil.rmtree(final)  # not built by this code (renames are atomic): rebuild
            if not final.exists():
                _build(spec, fp, settings, final, progress)
    split_path = final / "splits" / f"seed{seed}_val{val_fraction:g}_test{test_fraction:g}.json"
    split = load_or_write_split(split_path, spec.case_ids, **split_args)
    args = {"root": str(spec.root), "label": label, "grid": grid, "spacing": spacing,
            "cache_root": cache_root,
            "seed": seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    return Prepared(final, spec.root, split, split_path, args=args, build=prepare)

