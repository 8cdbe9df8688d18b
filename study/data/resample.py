"""Resampling to the standard grid, intensity normalisation and int16 quantisation.

* Images: trilinear (``torch.nn.functional.interpolate(mode="trilinear", align_corners=False)``).
* Masks: nearest neighbour (``mode="nearest-exact"``, the same voxel-centre convention, so a
  mask stays aligned with its image).
* Normalisation, per volume and per phase, after resampling: clip intensities to the
  0.5th..99.5th percentile of the volume, then z-score (subtract the mean, divide by the
  standard deviation of the clipped volume). A constant volume becomes all zeros.
* Storage: int16 with a per-case, per-phase scale (``value = int16 * scale``), chosen so the
  largest magnitude maps to 32000; masks uint8.

With ``align_corners=False`` voxel ``j`` of the new grid sits at native voxel coordinate
``(j + 0.5) * s - 0.5`` with ``s = native / new`` along each axis; `grid_affine` encodes this,
so a resampled prediction can be mapped back onto the source geometry.
"""

from __future__ import annotations

import numpy as np

CLIP_PERCENTILES = (0.5, 99.5)
INT16_MAX = 32000.0
NORMALISATION = "percentile-clip 0.5/99.5 then z-score, per volume and phase"


def _interp(vol: np.ndarray, grid: tuple[int, int, int], mode: str) -> np.ndarray:
    import torch  # lazy: `python -m study.data check` stays light
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[None, None]
    kwargs = {"align_corners": False} if mode == "trilinear" else {}
    with torch.no_grad():
        out = F.interpolate(t, size=tuple(int(g) for g in grid), mode=mode, **kwargs)
    return out[0, 0].numpy()


def resample_image(image: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """(C, X, Y, Z) or (X, Y, Z) float -> same leading dims on ``grid``, trilinear."""
    if image.ndim == 4:
        return np.stack([_interp(c, grid, "trilinear") for c in image]).astype(np.float32)
    return _interp(image, grid, "trilinear").astype(np.float32)


def resample_mask(mask: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """(X, Y, Z) integer mask -> ``grid``, nearest neighbour, uint8."""
    return np.rint(_interp(mask.astype(np.float32), grid, "nearest-exact")).astype(np.uint8)


def grid_affine(affine: np.ndarray, shape: tuple[int, ...], grid: tuple[int, ...]) -> np.ndarray:
    """Affine of the resampled grid (voxel -> mm) given the native affine and shape."""
    s = np.asarray(shape[:3], dtype=np.float64) / np.asarray(grid[:3], dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = np.diag(s)
    m[:3, 3] = (s - 1.0) / 2.0
    return np.asarray(affine, dtype=np.float64) @ m


def grid_spacing(spacing, shape, grid) -> tuple[float, float, float]:
    return tuple(float(sp) * float(n) / float(g) for sp, n, g in zip(spacing, shape, grid, strict=True))


def normalise(vol: np.ndarray) -> np.ndarray:
    """Percentile clip (0.5, 99.5) then z-score of one 3D volume; float32."""
    vol = np.asarray(vol, dtype=np.float32)
    lo, hi = np.percentile(vol, CLIP_PERCENTILES)
    clipped = np.clip(vol, lo, hi)
    std = float(clipped.std())
    if std < 1e-8:
        return np.zeros_like(clipped)
    return ((clipped - float(clipped.mean())) / std).astype(np.float32)


def apply_scheme(vol: np.ndarray, scheme: dict | None) -> np.ndarray:
    """Normalise one volume by its channel's scheme (`study.data.intensity`): ``ct`` = clip
    to the data set's foreground percentiles, standardise with its foreground mean and std;
    None or ``zscore`` = per volume (`normalise`)."""
    if not scheme or scheme.get("scheme") != "ct":
        return normalise(vol)
    lo, hi = scheme["clip"]
    out = np.clip(np.asarray(vol, dtype=np.float32), lo, hi) - np.float32(scheme["mean"])
    return (out / np.float32(scheme["std"])).astype(np.float32)


def quantise(vol: np.ndarray) -> tuple[np.ndarray, float]:
    """float volume -> (int16 volume, scale) with ``vol ~= int16 * scale``."""
    peak = float(np.abs(vol).max()) if vol.size else 0.0
    scale = peak / INT16_MAX if peak > 0 else 1.0
    q = np.clip(np.rint(np.asarray(vol, dtype=np.float64) / scale), -32767, 32767).astype(np.int16)
    return q, scale


def prepare_channel(vol: np.ndarray, grid, scheme: dict | None = None) -> tuple[np.ndarray, float]:
    """One native phase volume -> what the cache stores: (int16 on ``grid``, scale).

    Resample (trilinear), normalise (``scheme``: the channel's, `study.data.intensity`; None
    = per-volume z-score), quantise: the cache builder and `preprocess_image` (prediction on
    new scans) both go through here, so a model sees the same numbers.
    """
    return quantise(apply_scheme(resample_image(vol, tuple(int(g) for g in grid)), scheme))


def preprocess_image(image: np.ndarray, grid, schemes=None) -> np.ndarray:
    """Native ``(C, X, Y, Z)`` image -> the normalised float32 ``(C, *grid)`` a model sees,
    bit-identical to ``Prepared.image`` of the same volumes (int16 round trip included).
    ``schemes``: one normalisation scheme per channel (None: per-volume z-score)."""
    out = np.empty((len(image), *(int(g) for g in grid)), dtype=np.float32)
    for i, chan in enumerate(image):
        q, scale = prepare_channel(chan, grid, None if schemes is None else schemes[i])
        out[i] = q
        out[i] *= np.float32(scale)
    return out
