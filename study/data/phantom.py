"""A synthetic multi-phase liver MRI data set (the embedded default), deterministic by seed.

Each case is an abdomen-like body (fat rim, muscle, spine, aorta, kidneys, spleen) with a
lobulated liver holding enhancing vessels and 1-3 tumors (radius 10-25 mm, under 1% of the
voxels). Four phases follow typical liver MRI contrast dynamics:

=========  =====  =====  ======  =======  ======  ======
phase      liver  tumor  vessel  aorta    spleen  kidney
=========  =====  =====  ======  =======  ======  ======
pre        300    240    150     150      260     250
arterial   360    560    330     900      520     650      tumor hyper-enhances
portal     520    400    700     550      500     550      tumor washes out
delay      470    340    560     420      440     480
=========  =====  =====  ======  =======  ======  ======

Tumor contrast varies per tumor (x0.6..1.2 of the difference to liver) and carries texture;
every phase gets a per-case gain, a smooth multiplicative bias field (about +-15%), partial
volume blur and Rician noise (sigma 22-38). Native grids vary: about 150-170 x 120-136 x
30-40 voxels, 2.4-2.6 mm in-plane, 5-7 mm slices (or a fixed ``shape`` for tests, with the
same physical field of view). Labels: background 0, liver 1, tumor 2.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from scipy import ndimage

from study.errors import DataError
from study.io import atomic_dir, ensure_writable_dir

PHASES = ("pre", "arterial", "portal", "delay")
VERSION = 2
FOV = (400.0, 320.0)  # mm in-plane
TISSUE = {  # mean intensity per phase (pre, arterial, portal, delay)
    "muscle": (220, 260, 280, 270),
    "fat": (420, 400, 380, 370),
    "spine": (350, 340, 360, 350),
    "liver": (300, 360, 520, 470),
    "tumor": (240, 560, 400, 340),
    "vessel": (150, 330, 700, 560),
    "aorta": (150, 900, 550, 420),
    "spleen": (260, 520, 500, 440),
    "kidney": (250, 650, 550, 480),
}


def _smooth_field(rng, coords, n=6, wavelength=(150.0, 400.0)) -> np.ndarray:
    """Sum of n random low-frequency cosines over physical coords (list of 3 broadcastable
    arrays), normalised to unit max amplitude."""
    out = 0.0
    for _ in range(n):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = 2 * np.pi / rng.uniform(*wavelength)
        phase = rng.uniform(0, 2 * np.pi)
        out = out + rng.uniform(0.5, 1.0) * np.cos(
            k * (direction[0] * coords[0] + direction[1] * coords[1] + direction[2] * coords[2]) + phase)
    return out / n


def _ellipsoid(coords, centre, axes) -> np.ndarray:
    """Normalised ellipsoidal radius (< 1 inside)."""
    return np.sqrt(sum(((c - m) / a) ** 2 for c, m, a in zip(coords, centre, axes, strict=True)))


def _tube(coords, p0, direction, radius) -> np.ndarray:
    d = np.asarray(direction, dtype=np.float64)
    d /= np.linalg.norm(d)
    rel = [c - p for c, p in zip(coords, p0, strict=True)]
    t = rel[0] * d[0] + rel[1] * d[1] + rel[2] * d[2]
    dist2 = sum((r - t * dd) ** 2 for r, dd in zip(rel, d, strict=True))
    return dist2 < radius**2


def make_case(rng: np.random.Generator, shape=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One case: (image float32 (4, X, Y, Z), label uint8 (X, Y, Z), affine 4x4). The steps
    draw from ``rng`` in a fixed order (geometry, anatomy, tumors, intensities)."""
    shape, spacing, coords = _geometry(rng, shape)
    tmap, liver = _anatomy(rng, coords, shape, spacing)
    label, tumors = _tumors(rng, coords, liver)
    image = _intensities(rng, coords, tmap, tumors)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * s for n, s in zip(shape, spacing, strict=True)]
    return image, label, affine


def _geometry(rng, shape):
    """Grid size, voxel spacing (mm) and the physical coordinates of the voxel centres."""
    if shape is None:
        shape = (int(rng.integers(150, 171)), int(rng.integers(120, 137)), int(rng.integers(30, 41)))
        spacing = (float(rng.uniform(2.4, 2.6)), float(rng.uniform(2.4, 2.6)), float(rng.uniform(5.0, 7.0)))
    else:
        shape = tuple(int(s) for s in shape)
        zfov = rng.uniform(180.0, 260.0)
        spacing = (FOV[0] / shape[0], FOV[1] / shape[1], zfov / shape[2])
    spacing = tuple(round(s, 4) for s in spacing)
    coords = [((np.arange(n) - (n - 1) / 2) * s).reshape([-1 if d == i else 1 for d in range(3)])
              for i, (n, s) in enumerate(zip(shape, spacing, strict=True))]
    return shape, spacing, coords


def _anatomy(rng, coords, shape, spacing):
    """Tissue map (indices into ``["air", *TISSUE]``) and the liver mask."""
    x, y, z = coords
    zhalf = (shape[2] - 1) / 2 * spacing[2]
    # body: ellipse tapering towards the ends, fat rim
    a, b = rng.uniform(155, 180), rng.uniform(110, 130)
    taper = 1 - 0.08 * (z / max(zhalf, 1.0)) ** 2
    rbody = np.sqrt((x / (a * taper)) ** 2 + (y / (b * taper)) ** 2) * np.ones(shape)
    body = rbody < 1
    tmap = np.zeros(shape, dtype=np.uint8)
    tid = {n: i for i, n in enumerate(["air", *TISSUE])}
    tmap[body] = tid["fat"]
    tmap[rbody < 1 - 16 / a] = tid["muscle"]
    spine_c = (rng.normal(0, 4), -b + 45)
    spine = ((x - spine_c[0]) ** 2 + (y - spine_c[1]) ** 2 < 16**2) & body
    tmap[spine] = tid["spine"]
    aorta = ((x - spine_c[0] - 12) ** 2 + (y - spine_c[1] - 30) ** 2 < rng.uniform(9, 13) ** 2) & body
    tmap[aorta] = tid["aorta"]
    zc = rng.uniform(0.0, 0.3) * zhalf
    for side in (-1, 1):
        kid = _ellipsoid(coords, (side * 70 + rng.normal(0, 5), spine_c[1] + 25, zc - 55),
                         (rng.uniform(25, 32), rng.uniform(22, 28), rng.uniform(40, 50))) < 1
        tmap[kid & body] = tid["kidney"]
    spleen = _ellipsoid(coords, (95 + rng.normal(0, 6), -15 + rng.normal(0, 6), zc + 15),
                        (rng.uniform(35, 50), rng.uniform(28, 40), rng.uniform(40, 60)))
    tmap[(spleen < 1) & body] = tid["spleen"]
    # liver: lobulated ellipsoid on the other side
    lc = (-65 + rng.normal(0, 6), 10 + rng.normal(0, 6), zc + rng.normal(0, 8))
    la = (rng.uniform(75, 95), rng.uniform(65, 85), rng.uniform(60, 80))
    lobes = _smooth_field(rng, coords, n=5, wavelength=(60.0, 160.0))
    liver = (_ellipsoid(coords, lc, la) < 1 + 0.25 * lobes) & (rbody < 0.93) & ~spine & ~aorta
    tmap[liver] = tid["liver"]
    for _ in range(int(rng.integers(3, 6))):  # vessels running through the liver
        vessel = _tube(coords, [lc[i] + rng.normal(0, la[i] / 3) for i in range(3)],
                       rng.normal(size=3), rng.uniform(3.0, 6.0)) & liver
        tmap[vessel] = tid["vessel"]
    return tmap, liver


def _tumors(rng, coords, liver):
    """1-3 tumors inside the liver, away from its border: the label map (liver 1, tumor 2)
    and ``(mask, contrast strength)`` per tumor."""
    label = np.zeros(liver.shape, dtype=np.uint8)
    label[liver] = 1
    inner = ndimage.binary_erosion(liver, iterations=2)
    candidates = np.argwhere(inner if inner.any() else liver)
    tumors = []
    for _ in range(int(rng.integers(1, 4))):
        centre_vox = candidates[rng.integers(len(candidates))]
        centre = [float(coords[d].reshape(-1)[centre_vox[d]]) for d in range(3)]
        r = rng.uniform(10.0, 25.0)
        axes = [r * rng.uniform(0.8, 1.25) for _ in range(3)]
        blob = _ellipsoid(coords, centre, axes) < 1 + 0.15 * _smooth_field(rng, coords, 3, (20.0, 50.0))
        blob &= liver
        tumors.append((blob, rng.uniform(0.6, 1.2)))
        label[blob] = 2
    return label, tumors


def _intensities(rng, coords, tmap, tumors) -> np.ndarray:
    """The four phases: tissue means, textured tumors, blur, bias field, gain, Rician noise."""
    shape = tmap.shape
    image = np.empty((4, *shape), dtype=np.float32)
    texture = _smooth_field(rng, coords, n=8, wavelength=(8.0, 30.0))
    sigma = rng.uniform(22, 38)
    for p in range(4):
        lut = np.array([0.0, *[TISSUE[n][p] for n in TISSUE]], dtype=np.float32)
        vol = lut[tmap]
        liver_val, tumor_val = TISSUE["liver"][p], TISSUE["tumor"][p]
        for blob, strength in tumors:
            vol[blob] = liver_val + strength * (tumor_val - liver_val) * (1 + 0.25 * texture[blob])
        vol = ndimage.gaussian_filter(vol, sigma=(0.6, 0.6, 0.3))
        bias = np.exp(0.15 * _smooth_field(rng, coords, n=4, wavelength=(250.0, 600.0)))
        vol = vol * bias * rng.uniform(0.8, 1.25)
        n1 = rng.normal(0, sigma, size=shape)
        n2 = rng.normal(0, sigma, size=shape)
        image[p] = np.sqrt((vol + n1) ** 2 + n2**2)  # Rician magnitude noise
    return image


def _write_case(out: Path, case_id: str, image, label, affine) -> None:
    import nibabel as nib

    for p in range(image.shape[0]):
        data = np.clip(np.rint(image[p]), 0, 32767).astype(np.int16)
        img = nib.Nifti1Image(data, affine)
        img.header.set_xyzt_units("mm")
        nib.save(img, str(out / "imagesTr" / f"{case_id}_{p:04d}.nii.gz"))
    lab = nib.Nifti1Image(label.astype(np.uint8), affine)
    lab.header.set_xyzt_units("mm")
    nib.save(lab, str(out / "labelsTr" / f"{case_id}.nii.gz"))


def make_phantom(out_dir, cases: int = 12, seed: int = 0, shape=None, progress: bool = False) -> Path:
    """Write the phantom data set to ``out_dir`` (must not exist or be empty); atomic."""
    out = Path(out_dir).expanduser()
    if cases < 1:
        raise DataError(f"--cases must be at least 1, got {cases}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; choose a new folder or remove it")
    ensure_writable_dir(out.parent, "phantom output folder", DataError)
    with atomic_dir(out) as tmp:  # an empty folder there (checked above) is replaced
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        from tqdm.auto import tqdm

        for i in tqdm(range(cases), desc="phantom", unit="case", disable=not progress):
            image, label, affine = make_case(np.random.default_rng([seed, i]), shape)
            _write_case(tmp, f"phantom_{i:03d}", image, label, affine)
        meta = {"name": "phantom", "description": f"synthetic multi-phase liver MRI, study.data.phantom v{VERSION}",
                "channel_names": {str(i): p for i, p in enumerate(PHASES)},
                "labels": {"background": 0, "liver": 1, "tumor": 2},
                "numTraining": cases, "file_ending": ".nii.gz",
                "phantom": {"version": VERSION, "seed": seed, "cases": cases,
                            "shape": list(shape) if shape else None}}
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    return out


def default_phantom(cache_root=None, cases: int = 12, seed: int = 0) -> Path:
    """Path of the default phantom under the cache root, generated on first use."""
    from study.data.dataset import resolve_cache_root

    root = resolve_cache_root(cache_root)
    name = f"phantom-v{VERSION}" if (cases, seed) == (12, 0) else f"phantom-v{VERSION}-c{cases}-s{seed}"
    out = root / name
    if (out / "dataset.json").is_file():
        return out
    from study.data.cache import _locked

    with _locked(root / f".{name}.lock"):
        if not (out / "dataset.json").is_file():
            if out.exists():
                shutil.rmtree(out)
            make_phantom(out, cases=cases, seed=seed, progress=True)
    return out
