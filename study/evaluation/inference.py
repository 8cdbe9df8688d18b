"""Whole-volume inference: probability maps on the standard grid, and NIfTI export.

* ``"3d"`` models: MONAI sliding-window inference with overlapping windows and Gaussian
  blending of the logits (see `gaussian_weights`), so window borders leave no seams.
* ``"2d"`` models: every axial slice ``[:, :, z]``, in batches.
* ``"2.5d"`` models: every axial slice with its two neighbours as extra channels, phase-major
  (``[p0@z-1, p0@z, p0@z+1, p1@z-1, ...]``); the first and last slice repeat themselves as
  the missing neighbour (replicate padding).

Everything runs under ``torch.inference_mode``; on CUDA also with bf16 autocast and
channels-last memory. The model is put in eval mode and its previous mode is restored.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from study.errors import ConfigError
from study.io import atomic_path

KINDS = ("3d", "2d", "2.5d")
#: 2D inputs are padded (replicate) in X and Y to a multiple of ``model.size_multiple``
#: (this default when the model has no such attribute) and cropped back.
SIZE_MULTIPLE = 16
#: Gaussian blending: sigma = SIGMA_SCALE * window size (MONAI's default).
SIGMA_SCALE = 0.125


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _pad_xy(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dims of ``(B, C, X, Y)`` up to ``multiple`` (replicate)."""
    nx, ny = x.shape[-2:]
    px, py = (-nx) % multiple, (-ny) % multiple
    if px == 0 and py == 0:
        return x, (nx, ny)
    return F.pad(x, (0, py, 0, px), mode="replicate"), (nx, ny)


def slab_indices(z: torch.Tensor, depth: int) -> torch.Tensor:
    """For centre slices ``z`` (B,), the indices ``(B, 3)`` of [z-1, z, z+1], clamped."""
    offsets = torch.tensor([-1, 0, 1], device=z.device)
    return (z[:, None] + offsets[None, :]).clamp_(0, depth - 1)


def make_slabs(image: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """2.5D inputs ``(B, 3C, X, Y)`` for slices ``z`` of ``image`` ``(C, X, Y, Z)``.

    Channel order is phase-major, slice-minor: ``[p0@z-1, p0@z, p0@z+1, p1@z-1, ...]``.
    """
    c, nx, ny, nz = image.shape
    idx = slab_indices(z, nz)  # (B, 3)
    g = image[:, :, :, idx.reshape(-1)]  # (C, X, Y, B*3)
    g = g.reshape(c, nx, ny, len(z), 3).permute(3, 0, 4, 1, 2)  # (B, C, 3, X, Y)
    return g.reshape(len(z), c * 3, nx, ny)


def _run_2d(model, image: torch.Tensor, kind: str, batch_size: int, dev: torch.device):
    c, nx, ny, nz = image.shape
    out = torch.empty((nx, ny, nz), dtype=torch.float32, device=dev)
    cl = dev.type == "cuda"
    multiple = int(getattr(model, "size_multiple", SIZE_MULTIPLE))
    for start in range(0, nz, batch_size):
        z = torch.arange(start, min(start + batch_size, nz), device=dev)
        if kind == "2d":
            x = image[:, :, :, z].permute(3, 0, 1, 2)  # (B, C, X, Y)
        else:
            x = make_slabs(image, z)
        x, (ox, oy) = _pad_xy(x.contiguous(), multiple)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        logits = model(x)[:, 0, :ox, :oy].float()  # (B, X, Y)
        out[:, :, start : start + len(z)] = torch.sigmoid(logits).permute(1, 2, 0)
    return out


def gaussian_weights(patch, device=None, sigma_scale: float = SIGMA_SCALE) -> torch.Tensor:
    """Separable Gaussian window weights (max 1), sigma = ``sigma_scale * size`` per axis.

    The same map as MONAI's ``mode="gaussian"`` but without its floor of 1e-3: with the
    floor, a voxel on the volume's corner sits on the border of every window covering it
    (each clamped to 1e-3) and gets a plain average of border predictions, i.e. a seam.
    """
    w = None
    for n in patch:
        r = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        g = torch.exp(-(r**2) / (2 * (sigma_scale * n) ** 2))
        w = g if w is None else w[..., None] * g
    return w.clamp_(min=1e-30).to(device=device, dtype=torch.float32)


def _run_3d(model, image, patch, overlap, batch_size, dev):
    from monai.inferers import sliding_window_inference

    x = image[None]  # (1, C, X, Y, Z)
    patch = tuple(int(p) for p in patch)
    cl = dev.type == "cuda"

    def predictor(t: torch.Tensor) -> torch.Tensor:
        if cl:
            t = t.contiguous(memory_format=torch.channels_last_3d)
        return model(t).float()

    logits = sliding_window_inference(
        x,
        roi_size=patch,
        sw_batch_size=batch_size,
        predictor=predictor,
        overlap=overlap,
        mode="gaussian",
        roi_weight_map=gaussian_weights(patch, dev),
        padding_mode="replicate",
    )
    return torch.sigmoid(logits[0, 0].float())


def mirror_sets(kind: str, axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of ``axes`` (the empty one first): the flips of test-time mirroring."""
    axes = tuple(sorted({int(a) for a in axes}))
    allowed = (0, 1, 2) if kind == "3d" else (0, 1)
    if any(a not in allowed for a in axes):
        raise ConfigError(f"mirror axes {axes}: a {kind} model mirrors along "
                          f"{', '.join(map(str, allowed))} only (2D models predict each slice "
                          f"on its own: flipping the slice axis changes nothing)")
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def mirror_axes_for(kind: str, affine=None) -> tuple[int, ...]:
    """Axes test-time mirroring flips for a volume with this ``affine``: every axis except
    the one closest to left-right (mirroring the body left-right puts the liver on the wrong
    side), and for 2D/2.5D models only the in-plane axes X, Y. Without an affine, axis 0 is
    taken as left-right (NIfTI's usual RAS/LPS storage)."""
    lr = 0
    if affine is not None:
        import nibabel as nib

        codes = nib.orientations.aff2axcodes(np.asarray(affine, dtype=float))
        lr = next((i for i, c in enumerate(codes) if c in ("L", "R")), 0)
    axes = (0, 1, 2) if kind == "3d" else (0, 1)
    return tuple(a for a in axes if a != lr)


def predict_volume(
    model: torch.nn.Module,
    kind: str,
    image: np.ndarray,
    *,
    patch=(64, 64, 64),
    overlap: float = 0.5,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    mirror_axes: Sequence[int] = (),
) -> np.ndarray:
    """Probability map ``(X, Y, Z)`` float32 for ``image`` ``(C, X, Y, Z)`` float32.

    ``kind`` is the model kind (``study.models.model_kind(arch)``). ``patch`` and
    ``overlap`` (fraction of the window shared with its neighbour, 0 <= overlap < 1) apply
    to 3D models only; ``batch_size`` is windows (3D) or slices (2D/2.5D) per forward pass.
    ``device=None`` runs where the model's parameters are. ``mirror_axes`` (test-time
    mirroring, as nnU-Net): the volume is also predicted flipped along every non-empty
    subset of these axes (0 = X, 1 = Y, 2 = Z; in-plane only for 2D/2.5D models), each map
    flipped back, and the 2**k probability maps averaged; see `mirror_axes_for`.
    """
    if kind not in KINDS:
        raise ConfigError(f"model kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    image = np.asarray(image)
    if image.ndim != 4:
        raise ConfigError(f"image must be (C, X, Y, Z); got shape {image.shape}")
    if not 0.0 <= float(overlap) < 1.0:
        raise ConfigError(f"overlap must be in [0, 1); got {overlap}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}")
    flips = mirror_sets(kind, mirror_axes)
    dev = torch.device(device) if device is not None else _model_device(model)
    if _model_device(model) != dev:
        model.to(dev)
    if dev.type == "cuda":
        fmt = torch.channels_last_3d if kind == "3d" else torch.channels_last
        model.to(memory_format=fmt)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _autocast(dev):
            x = torch.as_tensor(np.ascontiguousarray(image, dtype=np.float32)).to(dev)
            total = None
            for flip in flips:
                xi = torch.flip(x, [a + 1 for a in flip]) if flip else x
                if kind == "3d":
                    prob = _run_3d(model, xi, patch, float(overlap), batch_size, dev)
                else:
                    prob = _run_2d(model, xi, kind, batch_size, dev)
                prob = (torch.flip(prob, list(flip)) if flip else prob).float()
                total = prob if total is None else total + prob
            return (total / len(flips) if len(flips) > 1 else total).cpu().numpy()
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- NIfTI export


def resample_to_shape(vol: np.ndarray, shape, order: int = 1) -> np.ndarray:
    """Resample ``vol`` to ``shape`` over the same field of view (voxel centres aligned,
    i.e. ``align_corners=False``, edges clamped), linear (``order=1``: torch trilinear) or
    nearest (``order=0``: torch nearest-exact). float32 in and out, no coordinate grid: a
    512 x 512 x 200 output needs the output array and little else."""
    shape = tuple(int(s) for s in shape)
    if tuple(vol.shape) == shape:
        return np.asarray(vol)
    t = torch.from_numpy(np.ascontiguousarray(vol, dtype=np.float32))[None, None]
    with torch.no_grad():
        if order == 1:
            out = F.interpolate(t, size=shape, mode="trilinear", align_corners=False)
        else:
            out = F.interpolate(t, size=shape, mode="nearest-exact")
    return out[0, 0].numpy()


def to_native(prob: np.ndarray, shape, affine=None) -> np.ndarray:
    """Probability map on the study grid -> float32 on the source grid. Without ``affine``
    the grid's axes are the source's and ``shape`` is the source shape; with the source
    ``affine`` the grid is in canonical (RAS) axes: resampled to the canonical shape, then
    put back in the source file's axes (`study.data.orientation.from_canonical`)."""
    from study.data import orientation as ori

    shape = tuple(int(s) for s in shape)[:3]
    prob = np.asarray(prob, dtype=np.float32)
    if affine is None:
        return resample_to_shape(prob, shape, order=1).astype(np.float32, copy=False)
    out = resample_to_shape(prob, ori.canonical_shape(shape, affine), order=1)
    return np.ascontiguousarray(ori.from_canonical(out, affine), dtype=np.float32)


def to_source(prob: np.ndarray, src: dict) -> np.ndarray:
    """`to_native` for a prepared case: ``src`` = ``Prepared.source(case)``."""
    return to_native(prob, src["shape"], src["affine"] if src.get("canonical") else None)


def save_nifti(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Save ``data`` with ``affine`` (qform and sform, code 1) atomically."""
    import nibabel as nib

    img = nib.Nifti1Image(data, np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    suffix = ".nii.gz" if str(path).endswith(".nii.gz") else ".nii"
    with atomic_path(path, suffix=suffix) as tmp:
        nib.save(img, str(tmp))


def write_prediction_nifti(
    prob: np.ndarray,
    prep,
    case_id: str,
    path: str | os.PathLike,
    threshold: float = 0.5,
    *,
    prob_path: str | os.PathLike | None = None,
) -> Path:
    """Write the thresholded prediction as a uint8 mask NIfTI in the source geometry.

    ``prob`` is on the prepared grid; it is resampled (linearly, over the same field of view)
    to ``prep.source(case_id)["shape"]`` and thresholded there, then saved with the source
    affine so it overlays the original image in ITK-SNAP / 3D Slicer. ``prob_path`` also
    writes the resampled probability (float32). Writes are atomic.
    """
    src = prep.source(case_id)
    affine = np.asarray(src["affine"], dtype=np.float64)
    p = to_source(prob, src)
    mask = (p >= threshold).astype(np.uint8)
    path = Path(path)
    save_nifti(mask, affine, path)
    if prob_path is not None:
        save_nifti(p.astype(np.float32), affine, Path(prob_path))
    return path
