"""Target spacing: the physical resolution a data set is worked on, and each case's grid there.

A study either fixes one array *shape* for every case (``grid: [X, Y, Z]``, the seed's way,
kept to reproduce the report) or a *spacing* in mm (``spacing: auto`` or ``[x, y, z]``, each
entry a number or ``auto``): every case is then resampled to its own grid
``round(shape x spacing / target)`` (canonical axes), so a scan with twice the field of view
gets twice the voxels at the same mm per voxel, and a thin-slice scan is not squeezed into
the slice count of a thick-slice one.

``auto`` entries take nnU-Net's target spacing (`target_spacing`, its
``ExperimentPlanner.determine_fullres_target_spacing``): the median spacing per axis over the
data set's training cases (read from the NIfTI headers, in canonical RAS axes); when one axis
is much coarser than the others (more than `ANISO_THRESHOLD` x their largest spacing) and, at
that spacing, has fewer than 1/`ANISO_THRESHOLD` of their voxels, it gets the 10th percentile
of its spacings instead (never finer than the other axes), so thick-slice scans are not
resampled to a median that throws slices away.
"""

from __future__ import annotations

import numpy as np

from study.errors import ConfigError

ANISO_THRESHOLD = 3.0
AUTO = "auto"


def target_spacing(spacings, shapes) -> tuple[list[float], bool]:
    """(target spacing, anisotropic?) for per-case ``spacings`` and ``shapes`` (N x 3)."""
    spacings = np.asarray(spacings, dtype=np.float64)
    shapes = np.asarray(shapes, dtype=np.float64)
    target = np.median(spacings, axis=0)
    size = np.median(shapes * spacings / target, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(3) if a != worst]
    aniso_spacing = target[worst] > ANISO_THRESHOLD * max(target[others])
    aniso_voxels = size[worst] * ANISO_THRESHOLD < min(size[others])
    if aniso_spacing and aniso_voxels:
        value = float(np.percentile(spacings[:, worst], 10))
        if value < max(target[others]):
            value = max(max(target[others]), value) + 1e-5
        target[worst] = value
    return [float(v) for v in target], bool(aniso_spacing and aniso_voxels)


def parse_spacing(value, where: str = "spacing") -> str | tuple:
    """``auto`` or three entries (a positive number of mm or ``auto``) -> ``"auto"`` or a
    tuple; anything else is a ConfigError naming ``where``."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, (list, tuple)) and len(value) == 3:
        out = []
        for v in value:
            if isinstance(v, str) and v.strip().lower() == AUTO:
                out.append(AUTO)
                continue
            try:
                f = float(v)
            except (TypeError, ValueError):
                f = float("nan")
            if isinstance(v, bool) or not np.isfinite(f) or f <= 0:
                break
            out.append(f)
        else:
            return tuple(out)
    raise ConfigError(f"{where}: expected auto or [x, y, z] in mm (each a positive number or "
                      f"auto), got {value!r}")


def geometry(grid, spacing) -> dict:
    """`prepare`'s keyword arguments of a recorded geometry: ``{"spacing": ...}`` when a
    spacing is set, else ``{"grid": (X, Y, Z)}``."""
    return {"spacing": spacing} if spacing is not None else {"grid": tuple(grid)}


def geometry_args(grid, spacing, flag: str = "--spacing") -> dict:
    """Command-line ``--grid`` / ``--spacing`` values -> `prepare`'s keyword arguments
    (``--spacing auto`` or three values; both given -> ConfigError)."""
    if grid and spacing:
        raise ConfigError(f"--grid and {flag}: give one of them (a shape for every case, or a "
                          f"spacing in mm)")
    if spacing:
        value = spacing[0] if len(spacing) == 1 else list(spacing)
        return {"spacing": parse_spacing(value, flag)}
    return {"grid": tuple(int(g) for g in grid)} if grid else {}


def header_geometry(path) -> tuple[list[float], list[int]]:
    """(spacing, shape) of a NIfTI file in canonical (RAS) axes, from its header only."""
    import nibabel as nib

    from study.data import orientation as ori
    from study.data.dataset import voxel_spacing
    from study.errors import DataError

    try:
        img = nib.load(str(path))
        shape, affine = tuple(int(s) for s in img.shape[:3]), np.asarray(img.affine, float)
    except Exception as exc:  # nibabel raises many kinds
        raise DataError(f"{path}: cannot read the NIfTI header ({type(exc).__name__}: {exc}); "
                        f"re-export the file") from None
    canon = ori.canonical_affine(affine, shape)
    return list(voxel_spacing(canon)), list(ori.canonical_shape(shape, affine))


def resolve_spacing(request, spec) -> list[float]:
    """The target spacing (mm, canonical axes) of ``request`` (`parse_spacing`) for a data
    set (`DatasetSpec`): ``auto`` entries from its training cases' headers."""
    request = parse_spacing(request)
    entries = (AUTO,) * 3 if request == AUTO else request
    if AUTO not in entries:
        return [float(v) for v in entries]
    geo = [header_geometry(spec.label_path(c)) for c in spec.train_ids]
    auto, _ = target_spacing([g[0] for g in geo], [g[1] for g in geo])
    return [round(float(a if e == AUTO else e), 6) for e, a in zip(entries, auto, strict=True)]


def case_grid(spacing, shape, target) -> tuple[int, int, int]:
    """The grid of a case of ``shape`` at ``spacing`` (canonical axes) resampled to
    ``target`` mm: ``round(shape * spacing / target)`` per axis, at least 1."""
    return tuple(max(1, int(round(float(n) * float(s) / float(t))))
                 for n, s, t in zip(shape, spacing, target, strict=True))
