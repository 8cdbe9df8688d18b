"""Canonical orientation: every volume is worked on with its array axes in the closest RAS
order (nibabel's ``io_orientation`` / ``apply_orientation``, what ``as_closest_canonical``
does), so the same scan stored with another axis order or axis direction (another DICOM
converter, a PACS export) reaches the models as the same array. Axis 0 runs to the Right...
Left axis, 1 to Anterior... Posterior, 2 to Superior... Inferior: 2D models slice along 2
(axial) whatever the storage.

Only axis permutations and flips: no interpolation, exactly invertible. A scan whose axes
are oblique to the patient axes keeps its affine (rotated) and goes to the closest axes; the
resampling onto the study grid then works in those axes as before. Every mask written back
goes through `from_canonical` with the source affine, so it lands on the source file's own
axes and affine.
"""

from __future__ import annotations

import numpy as np

CANONICAL = "RAS"


def _ornt(affine) -> np.ndarray:
    import nibabel as nib

    return nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))


def axcodes(affine) -> str:
    """``"RAS"``, ``"LPS"``, ``"PLS"``, ...: where each array axis points."""
    import nibabel as nib

    return "".join(nib.orientations.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def is_canonical(affine) -> bool:
    return axcodes(affine) == CANONICAL


def canonical_shape(shape, affine) -> tuple[int, int, int]:
    """The shape of a volume of ``shape`` (source axes) once reoriented."""
    order = _ornt(affine)[:, 0].astype(int)
    out = [0, 0, 0]
    for src_axis, dst_axis in enumerate(order):
        out[dst_axis] = int(shape[src_axis])
    return tuple(out)


def canonical_affine(affine, shape) -> np.ndarray:
    """Voxel -> mm affine of the reoriented array (the same points in the scanner)."""
    import nibabel as nib

    ornt = _ornt(affine)
    return np.asarray(affine, dtype=np.float64) @ nib.orientations.inv_ornt_aff(
        ornt, tuple(int(s) for s in shape[:3]))


def to_canonical(arr: np.ndarray, affine) -> np.ndarray:
    """``(X, Y, Z)`` or ``(C, X, Y, Z)`` in the source axes of ``affine`` -> RAS axes."""
    import nibabel as nib

    arr = np.asarray(arr)
    ornt = _ornt(affine)
    if arr.ndim == 4:
        return np.stack([nib.orientations.apply_orientation(c, ornt) for c in arr])
    return nib.orientations.apply_orientation(arr, ornt)


def from_canonical(arr: np.ndarray, affine) -> np.ndarray:
    """The inverse of `to_canonical`: a RAS-ordered ``(X, Y, Z)`` array back to the axes of
    the source file whose affine is ``affine``."""
    import nibabel as nib

    back = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(CANONICAL),
                                           _ornt(affine))
    return nib.orientations.apply_orientation(np.asarray(arr), back)
