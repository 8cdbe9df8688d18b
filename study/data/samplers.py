"""Training samplers (torch Datasets) over a `Prepared` data set.

* ``"3d"``: patches (default 64^3). ``empty_fraction`` is the share of tumor-free patches
  (default 0.5, the report's balance). Item ``i`` is tumor-free when
  ``floor((i+1)*f) > floor(i*f)``, so every prefix of the items holds the share ``f`` up to
  one item (at 0.5: even indices tumor-centred, odd ones tumor-free). A tumor-centred item is
  centred on a random tumor voxel of a random tumor-bearing case; a tumor-free one comes from
  a tumor-free region (a random centre whose whole patch holds no tumor; after 50 failed
  draws, any centre that is not tumor). Out-of-volume parts are edge-replicated.
* ``"2d"``: axial slices ``(C, X, Y)``: every slice with tumor, plus a seeded
  ``empty_fraction`` of the tumor-free slices (1.0 = every slice). Whole slices on a fixed
  grid; with ``patch=(PX, PY)`` (cases on their own grids, `Prepared.case_grid`) a window of
  that size: centred on the slice where the slice is smaller (edge-replicated), else at a
  random place that holds a random tumor voxel of the slice (tumor slices: foreground
  oversampling) or anywhere (tumor-free slices), drawn from the item's seed.
* ``"2.5d"``: the same slices with their two neighbours, ``(3C, X, Y)`` in phase-major,
  slice-minor order ``[p0@z-1, p0@z, p0@z+1, p1@z-1, ...]``; edges replicate the end slice;
  target = centre slice.

Items are ``(x float32 tensor, y float32 tensor (1, ...))``. Randomness of item ``i`` comes
from ``default_rng([seed, epoch, i])`` only, so items are reproducible and identical
whichever DataLoader worker draws them. ``length`` (default: 3D 32 per case, 2D/2.5D the
number of selected slices) sets ``len()``; 2D/2.5D indices wrap around.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
from torch.utils.data import Dataset

from study.errors import ConfigError

KINDS = ("3d", "2d", "2.5d")
NEG_TRIES = 50
#: ``empty_fraction`` when none is given: 3D = share of tumor-free patches (the report's
#: balance), 2D/2.5D = share of the tumor-free slices kept (all of them).
DEFAULT_EMPTY_FRACTION = {"3d": 0.5, "2d": 1.0, "2.5d": 1.0}


def check_empty_fraction(kind: str, value) -> float:
    """``value`` (None = the kind's default) checked for ``kind``; ConfigError if out of range."""
    if value is None:
        return DEFAULT_EMPTY_FRACTION.get(kind, 1.0)
    f = float(value)
    if not 0.0 <= f <= 1.0:
        raise ConfigError(f"empty_fraction must be in [0, 1], got {value}")
    if kind == "3d" and f >= 1.0:
        raise ConfigError(f"empty_fraction {value} for 3D patches is the share of tumor-free "
                          f"patches: 1 leaves no tumor-centred patch; use a value below 1 "
                          f"(0.5 = balanced)")
    return f


class _Base(Dataset):
    def __init__(self, prep, case_ids, phases, seed: int):
        if isinstance(phases, str):
            phases = [phases]
        self.prep = prep
        self.phases = list(phases)
        prep.phase_index(self.phases)  # validates the names
        self.case_ids = list(case_ids)
        if not self.case_ids:
            raise ConfigError("sampler needs at least one case id")
        known = set(prep.case_ids)
        unknown = [c for c in self.case_ids if c not in known]
        if unknown:
            raise ConfigError(f"unknown case id(s) {unknown} for {prep.cache_dir}")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws (3D) for a new pass; items stay reproducible per epoch."""
        self.epoch = int(epoch)

    def _rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(i)])


class PatchSampler3D(_Base):
    def __init__(self, prep, case_ids, phases, *, seed=0, patch=(64, 64, 64), length=None,
                 empty_fraction=None):
        super().__init__(prep, case_ids, phases, seed)
        self.empty_fraction = check_empty_fraction("3d", empty_fraction)
        share = Fraction(self.empty_fraction).limit_denominator(10**6)
        self._share = (share.numerator, share.denominator)
        self.patch = tuple(int(p) for p in patch)
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ConfigError(f"patch must be three positive sizes, got {patch}")
        self.pos_cases = [c for c in self.case_ids if prep.tumor_voxels(c) > 0]
        if not self.pos_cases:
            raise ConfigError(f"no tumor voxels in cases {self.case_ids}: balanced 3D sampling "
                              f"needs at least one case with tumor")
        self.length = int(length) if length is not None else 32 * len(self.case_ids)
        self._tumor_idx: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.length

    def _tumor_voxels(self, case_id: str) -> np.ndarray:
        idx = self._tumor_idx.get(case_id)
        if idx is None:  # flat indices into the (Z, X, Y) storage
            idx = np.flatnonzero(np.asarray(self.prep._raw_mask(case_id))).astype(np.int64)
            self._tumor_idx[case_id] = idx
        return idx

    def _box_has_tumor(self, case_id, lo) -> bool:
        g = self.prep.case_grid(case_id)
        a = [max(0, lo[d]) for d in range(3)]
        b = [min(g[d], lo[d] + self.patch[d]) for d in range(3)]
        m = self.prep._raw_mask(case_id)
        return bool(np.asarray(m[a[2]:b[2], a[0]:b[0], a[1]:b[1]]).any())

    def is_positive(self, i: int) -> bool:
        """Whether item i is tumor-centred (see the module docstring)."""
        n, d = self._share
        i = int(i)
        return (i + 1) * n // d == i * n // d

    def centre(self, i: int) -> tuple[str, tuple[int, int, int], bool]:
        """(case, centre voxel (x, y, z), positive) of item i."""
        rng = self._rng(i)
        if self.is_positive(i):
            case = self.pos_cases[rng.integers(len(self.pos_cases))]
            g = self.prep.case_grid(case)
            vox = self._tumor_voxels(case)
            z, x, y = np.unravel_index(int(vox[rng.integers(len(vox))]), (g[2], g[0], g[1]))
            return case, (int(x), int(y), int(z)), True
        case = self.case_ids[rng.integers(len(self.case_ids))]
        g = self.prep.case_grid(case)
        half = [p // 2 for p in self.patch]
        mask = self.prep._raw_mask(case)
        c = None
        for _ in range(NEG_TRIES):
            c = tuple(int(rng.integers(g[d])) for d in range(3))
            if not self._box_has_tumor(case, [c[d] - half[d] for d in range(3)]):
                return case, c, False
        while mask[c[2], c[0], c[1]]:  # fallback: at least the centre is tumor-free
            c = tuple(int(rng.integers(g[d])) for d in range(3))
        return case, c, False

    def __getitem__(self, i: int):
        case, c, _ = self.centre(i)
        lo = [c[d] - self.patch[d] // 2 for d in range(3)]
        img, msk = self.prep.crop(case, self.phases, lo, self.patch)
        return torch.from_numpy(img), torch.from_numpy(msk[None].astype(np.float32))


class SliceSampler(_Base):
    """2D slices (``context=0``) or 2.5D slabs (``context=1``: 3 slices per phase)."""

    def __init__(self, prep, case_ids, phases, *, seed=0, length=None, empty_fraction=None,
                 context: int = 0, patch=None):
        super().__init__(prep, case_ids, phases, seed)
        empty_fraction = check_empty_fraction("2d", empty_fraction)
        self.context = int(context)
        self.patch = None if patch is None else tuple(int(p) for p in patch)[:2]
        if self.patch is None and not getattr(prep, "fixed_grid", True):
            raise ConfigError("the cases are on their own grids (a target spacing): 2D/2.5D "
                              "sampling needs an in-plane patch size (patch=(PX, PY))")
        rng = np.random.default_rng([self.seed, 7919])
        items, empty = [], []
        for ci, case in enumerate(self.case_ids):
            counts = prep.slice_tumor(case)
            for z, n in enumerate(counts):
                (items if n > 0 else empty).append((ci, z))
        n_keep = int(round(float(empty_fraction) * len(empty)))
        keep = sorted(rng.choice(len(empty), size=n_keep, replace=False).tolist()) if n_keep else []
        items += [empty[j] for j in keep]
        items.sort()
        if not items:
            raise ConfigError(f"no slices selected from cases {self.case_ids} (no tumor and "
                              f"empty_fraction={empty_fraction}); raise empty_fraction")
        self.items = np.asarray(items, dtype=np.int64)
        self.length = int(length) if length is not None else len(self.items)

    def __len__(self) -> int:
        return self.length

    def item(self, i: int) -> tuple[str, int]:
        ci, z = self.items[int(i) % len(self.items)]
        return self.case_ids[int(ci)], int(z)

    def corner(self, i: int, case: str, z: int) -> tuple[int, int]:
        """(x, y) of the window's first voxel for item ``i`` (see the module docstring)."""
        rng = self._rng(i)
        g = self.prep.case_grid(case)
        hit = None
        if any(g[d] > self.patch[d] for d in (0, 1)):
            xs, ys = np.nonzero(self.prep.mask_axial(case, z))
            if len(xs):
                k = int(rng.integers(len(xs)))
                hit = (int(xs[k]), int(ys[k]))
        lo = []
        for d in (0, 1):
            n, p = g[d], self.patch[d]
            if n <= p:
                lo.append(-((p - n) // 2))
            elif hit is None:
                lo.append(int(rng.integers(n - p + 1)))
            else:
                lo.append(int(rng.integers(max(0, hit[d] - p + 1), min(n - p, hit[d]) + 1)))
        return lo[0], lo[1]

    def _window(self, case: str, z: int, i: int):
        x0, y0 = self.corner(i, case, z)
        c, (px, py) = self.context, self.patch
        img, msk = self.prep.crop(case, self.phases, (x0, y0, z - c), (px, py, 2 * c + 1))
        x = img.transpose(0, 3, 1, 2).reshape(-1, px, py)  # (C*S, X, Y), phase-major
        return (torch.from_numpy(np.ascontiguousarray(x)),
                torch.from_numpy(msk[None, :, :, c].astype(np.float32)))

    def __getitem__(self, i: int):
        case, z = self.item(i)
        if self.patch is not None:
            return self._window(case, z, i)
        zs = np.arange(z - self.context, z + self.context + 1)
        x = self.prep.axial(case, self.phases, zs)  # (C, S, X, Y), phase-major
        x = x.reshape(-1, *x.shape[2:])
        y = self.prep.mask_axial(case, z)[None].astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def make_sampler(kind: str, prep, case_ids, phases, *, seed: int = 0, patch=(64, 64, 64),
                 length: int | None = None, empty_fraction: float | None = None,
                 slice_patch=None) -> Dataset:
    """A seeded, picklable torch Dataset of training items; see the module docstring.
    ``empty_fraction`` None = the kind's default (:data:`DEFAULT_EMPTY_FRACTION`);
    ``slice_patch`` (PX, PY): the 2D/2.5D window (None: whole slices of a fixed grid)."""
    if kind == "3d":
        return PatchSampler3D(prep, case_ids, phases, seed=seed, patch=patch, length=length,
                              empty_fraction=empty_fraction)
    if kind in ("2d", "2.5d"):
        return SliceSampler(prep, case_ids, phases, seed=seed, length=length,
                            empty_fraction=empty_fraction, context=1 if kind == "2.5d" else 0,
                            patch=slice_patch)
    raise ConfigError(f"unknown sampler kind {kind!r}; choose one of {list(KINDS)}")


def slice_patch(prep, multiple: int = 1) -> tuple[int, int] | None:
    """The 2D/2.5D window of a data set whose cases have their own grids: the median case
    grid in-plane, rounded up to a multiple of ``multiple`` (the model's size multiple);
    None on a fixed grid (whole slices)."""
    if getattr(prep, "fixed_grid", True):
        return None
    m = max(1, int(multiple))
    return tuple(-(-int(v) // m) * m for v in prep.grid[:2])
