"""`Prepared`: a read-only, memory-mapped view of one preprocessing cache directory.

Pickling it is cheap (paths, split and the parsed meta.json); memory maps are dropped on
pickling and reopened lazily on first use, so Ray can ship it to trial workers and many
trials on one node share the page cache. If the cache directory does not exist where it is
unpickled (another node without a shared cache), the first array access finds or builds the
same cache there with the original `prepare` arguments (`ensure_local`); the split travels
with the object, so every node uses the head's split.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from study.errors import ConfigError


class Prepared:
    """Preprocessed data set: every case on one grid, or each on its own grid at one target
    spacing (`case_grid`). Arrays are (X, Y, Z); images (C, X, Y, Z)."""

    def __init__(self, cache_dir: Path, root: Path, split: dict, split_path: Path,
                 args: dict | None = None, build=None):
        """``args`` and ``build`` (`study.data.cache.prepare`, passed in so that this module
        does not import the cache) rebuild the cache on a machine that lacks it."""
        self.cache_dir = Path(cache_dir)
        self._args = dict(args or {})
        self._build = build
        self.root = Path(root)
        self.split = {k: list(v) for k, v in split.items()}
        self.split_path = Path(split_path)
        self.meta = json.loads((self.cache_dir / "meta.json").read_text(encoding="utf-8"))
        self._mm: dict[str, np.ndarray] = {}

    # --- pickling: no memmaps travel ------------------------------------------------------
    def with_split(self, split: dict) -> Prepared:
        """The same cache with another split (cross-validation folds): a shallow copy."""
        other = Prepared.__new__(Prepared)
        other.__dict__.update(self.__dict__, split={k: list(v) for k, v in split.items()},
                              _mm={})
        return other

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mm"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"Prepared({self.cache_dir}, phases={self.phases}, grid={self.grid}, "
                f"cases={len(self.case_ids)})")

    # --- description ---------------------------------------------------------------------
    @property
    def phases(self) -> list[str]:
        return list(self.meta["phases"])

    @property
    def fixed_grid(self) -> bool:
        """Whether every case has the one shape `grid` (else: its own, at `target_spacing`)."""
        return bool(self.meta["settings"].get("grid"))

    @property
    def grid(self) -> tuple[int, int, int]:
        """The shape of every case (fixed grid); at a target spacing the median case grid
        (what patch and slice sizes are planned from; per case see `case_grid`)."""
        if self.fixed_grid:
            return tuple(self.meta["settings"]["grid"])
        grids = np.array([self.case_grid(c) for c in self.case_ids], dtype=np.float64)
        return tuple(int(v) for v in np.rint(np.median(grids, axis=0)))

    @property
    def target_spacing(self) -> tuple[float, float, float] | None:
        """The target spacing (mm) the cases were resampled to; None on a fixed grid."""
        sp = self.meta["settings"].get("spacing")
        return None if sp is None else tuple(float(v) for v in sp)

    def case_grid(self, case_id: str) -> tuple[int, int, int]:
        """The shape case ``case_id`` is stored at."""
        c = self._case(case_id)
        return tuple(int(g) for g in (c.get("grid") or self.meta["settings"]["grid"]))

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]

    @property
    def settings(self) -> dict:
        return dict(self.meta["settings"], fingerprint=self.fingerprint,
                    cache_dir=str(self.cache_dir), split_path=str(self.split_path))

    @property
    def label_name(self) -> str:
        return self.meta["label"]

    @property
    def case_ids(self) -> list[str]:
        return list(self.meta["cases"])

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Mean grid spacing (mm) over cases; per case see `case_spacing`."""
        arr = np.array([c["spacing"] for c in self.meta["cases"].values()], dtype=np.float64)
        return tuple(float(v) for v in arr.mean(axis=0))

    def case_spacing(self, case_id: str) -> tuple[float, float, float]:
        return tuple(float(v) for v in self._case(case_id)["spacing"])

    def source(self, case_id: str) -> dict:
        """Native geometry, to resample a prediction back: image/label paths, the source
        file's affine and shape (its own axes), ``canonical_shape`` (the shape in the RAS
        axes the grid was made in; = shape for caches made before canonical orientation),
        ``canonical`` (whether the grid axes are the canonical ones) and ``grid_affine``
        (voxel -> mm of the resampled grid)."""
        c = self._case(case_id)
        return {
            "image_paths": [self.root / p for p in c["image_paths"]],
            "label_path": self.root / c["label_path"],
            "affine": np.array(c["affine"], dtype=np.float64),
            "grid_affine": np.array(c["grid_affine"], dtype=np.float64),
            "shape": tuple(c["shape"]),
            "canonical_shape": tuple(c.get("canonical_shape", c["shape"])),
            "canonical": "canonical_shape" in c,
            "spacing": tuple(c["native_spacing"]),
        }

    def tumor_voxels(self, case_id: str) -> int:
        return int(self._case(case_id)["tumor_voxels"])

    def slice_tumor(self, case_id: str) -> np.ndarray:
        """Tumor voxel count of every axial slice z (length Z)."""
        return np.asarray(self._case(case_id)["slice_tumor"], dtype=np.int64)

    # --- arrays --------------------------------------------------------------------------
    def phase_index(self, phases) -> list[int]:
        if isinstance(phases, str):
            phases = [phases]
        out = []
        for p in phases:
            if p not in self.meta["phases"]:
                raise ConfigError(f"phase {p!r} is not in data set {self.root} (phases: "
                                  f"{self.meta['phases']}); pick one of those")
            out.append(self.meta["phases"].index(p))
        if not out:
            raise ConfigError("no phases given; pick at least one of " f"{self.meta['phases']}")
        return out

    def _case(self, case_id: str) -> dict:
        try:
            return self.meta["cases"][case_id]
        except KeyError:
            raise KeyError(f"unknown case {case_id!r} in {self.cache_dir}") from None

    def ensure_local(self) -> Path:
        """Make sure the cache exists on this machine (find or build it); return its path."""
        if not (self.cache_dir / "meta.json").is_file():
            if not self._args or self._build is None:
                raise FileNotFoundError(f"{self.cache_dir}: preprocessing cache missing")
            args = dict(self._args, progress=False)
            local = self._build(args.pop("root"), **args)
            if local.fingerprint != self.fingerprint:
                from study.errors import DataError

                raise DataError(f"{self.root}: the data set on this machine differs from the one "
                                f"prepared elsewhere (fingerprint {local.fingerprint} != "
                                f"{self.fingerprint}); use identical data on every node")
            self.cache_dir, self._mm = local.cache_dir, {}
        return self.cache_dir

    def _open(self, rel: str) -> np.ndarray:
        mm = self._mm.get(rel)
        if mm is None:
            if not self._mm:
                self.ensure_local()
            mm = np.load(self.cache_dir / rel, mmap_mode="r")
            self._mm[rel] = mm
        return mm

    def _raw(self, case_id: str, k: int) -> np.ndarray:
        """int16 memmap (Z, X, Y) of phase index k."""
        self._case(case_id)
        return self._open(f"images/{case_id}_{k}.npy")

    def _raw_mask(self, case_id: str) -> np.ndarray:
        self._case(case_id)
        return self._open(f"masks/{case_id}.npy")

    def image(self, case_id: str, phases=None) -> np.ndarray:
        """Normalised image, float32 (len(phases), X, Y, Z)."""
        idx = self.phase_index(self.phases if phases is None else phases)
        scales = self._case(case_id)["scales"]
        out = np.empty((len(idx), *self.case_grid(case_id)), dtype=np.float32)
        for i, k in enumerate(idx):
            out[i] = self._raw(case_id, k).transpose(1, 2, 0)
            out[i] *= np.float32(scales[k])
        return out

    def mask(self, case_id: str) -> np.ndarray:
        """Binary target mask, uint8 (X, Y, Z), a read-only memory-mapped view."""
        return self._raw_mask(case_id).transpose(1, 2, 0)

    def axial(self, case_id: str, phases, zs) -> np.ndarray:
        """Axial slices ``zs`` (clamped to the volume: edge replicate), float32
        (len(phases), len(zs), X, Y) in phase-major order."""
        idx = self.phase_index(phases)
        scales = self._case(case_id)["scales"]
        g = self.case_grid(case_id)
        zs = np.clip(np.asarray(zs, dtype=np.int64), 0, g[2] - 1)
        out = np.empty((len(idx), len(zs), g[0], g[1]), dtype=np.float32)
        for i, k in enumerate(idx):
            out[i] = self._raw(case_id, k)[zs]
            out[i] *= np.float32(scales[k])
        return out

    def mask_axial(self, case_id: str, z: int) -> np.ndarray:
        """Mask slice z, uint8 (X, Y)."""
        return np.asarray(self._raw_mask(case_id)[int(z)])

    @staticmethod
    def _box(arr: np.ndarray, lo, size) -> np.ndarray:
        """Box of ``size`` (X, Y, Z) at ``lo`` from a (Z, X, Y) array, edge-replicated
        outside the volume; returned in (Z, X, Y) order."""
        g = (arr.shape[1], arr.shape[2], arr.shape[0])
        a = [min(max(int(lo[d]), 0), g[d] - 1) for d in range(3)]
        b = [max(min(int(lo[d]) + int(size[d]), g[d]), a[d] + 1) for d in range(3)]
        block = np.asarray(arr[a[2]:b[2], a[0]:b[0], a[1]:b[1]])
        # pad widths (before, after) per storage axis Z, X, Y; clipped boxes keep the edge
        pad = [(a[d] - int(lo[d]), int(lo[d]) + int(size[d]) - b[d]) for d in (2, 0, 1)]
        if any(p != (0, 0) for p in pad):
            pos = [(max(p0, 0), max(p1, 0)) for p0, p1 in pad]
            block = np.pad(block, pos, mode="edge")
            cut = tuple(slice(max(-p0, 0), max(-p0, 0) + int(size[d]))
                        for (p0, _), d in zip(pad, (2, 0, 1), strict=True))
            block = block[cut]
        return block

    def crop(self, case_id: str, phases, lo, size) -> tuple[np.ndarray, np.ndarray]:
        """Box starting at voxel ``lo`` (may lie outside: edge replicate) of ``size`` (X, Y, Z).
        Returns (image float32 (C, *size), mask uint8 size)."""
        idx = self.phase_index(phases)
        scales = self._case(case_id)["scales"]
        size = tuple(int(s) for s in size)
        img = np.empty((len(idx), *size), dtype=np.float32)
        for i, k in enumerate(idx):
            block = self._box(self._raw(case_id, k), lo, size).transpose(1, 2, 0)
            np.multiply(block, np.float32(scales[k]), out=img[i], dtype=np.float32)
        mask = np.ascontiguousarray(self._box(self._raw_mask(case_id), lo, size).transpose(1, 2, 0))
        return img, mask
