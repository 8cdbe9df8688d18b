"""Training-time augmentation between the sampler and the model (MONAI transforms).

``Augmented(dataset, level, kind, seed)`` wraps a training sampler (`study.data.samplers`):
item ``i`` is the sampler's item ``i`` passed through the transforms of ``level``
(:data:`LEVELS`); ``set_epoch`` and ``len`` are forwarded. Validation and test never go
through it (the engine wraps only the training sampler, and only when ``augment`` is not
``none``: ``none`` adds no wrapper, so training is bit-identical to a run without this stage).

* **Reproducible.** Every draw of item ``i`` comes from
  ``numpy.random.default_rng([seed, epoch, i, 104729])`` (the sampler's rule, with its own
  stream): which groups fire, their parameters and the seeds of MONAI's own random state. An
  item is therefore the same whichever DataLoader worker draws it, and a resumed run draws
  the same items; no global RNG is touched. Every group draws its numbers whether it fires
  or not, so changing one group's settings leaves the others' draws unchanged.
* **Spatial** (``rotate``, ``scale``, ``elastic``; then ``mirror``): one sampling grid per
  item (MONAI ``AffineGrid``: rotation and isotropic scaling; ``RandDeformGrid`` control
  points smoothly interpolated, as ``Rand2DElastic`` does, for the elastic part), applied
  by one ``Resample`` (bilinear, zero padding: the z-scored mean) to the image and to the
  mask together; the mask is then thresholded at 0.5, so it stays binary {0, 1} and lies
  exactly where the image's structure went. All channels share the grid: the three slices
  and every phase of a 2.5D slab get one transform. Rotation: 2D / 2.5D items in-plane
  (the axial plane, canonical axes 0-1); 3D patches around the superior axis by
  ``in_plane`` degrees and around the two in-plane axes by ``out_of_plane`` degrees
  (smaller: the study grid's voxels are 2-4x coarser along the slice axis, so a voxel-space
  tilt also shears). Mirroring (MONAI ``Flip``) along the listed canonical axes present in
  the item (0 = left/right is never in a shipped level: the liver is on one side; 1 =
  anterior/posterior, 2 = superior/inferior), each with probability ``p``; these are the
  axes ``study.apply.predict --tta`` mirrors.
* **Intensity** (``noise``, ``blur``, ``brightness``, ``contrast``, ``lowres``, ``gamma``, in
  nnU-Net's order): one draw per item applied jointly to all channels (the slices of a slab
  are one volume, and each phase is z-scored alike), with MONAI's ``RandGaussianNoise``,
  ``GaussianSmooth``, ``ScaleIntensity``, ``ScaleIntensityFixedMean`` (contrast around the
  mean, range kept), ``RandSimulateLowResolution`` (nearest down, linear up; in-plane for
  2D / 2.5D) and ``AdjustContrast`` (gamma on the min-max range, mean and SD kept;
  ``p_invert``: on the inverted image). The mask is untouched.

Settings (the level table below, or a dict of the same form for experiments) are checked
by :func:`check_settings`; a bad level or value raises ConfigError naming ``augment``.
"""

from __future__ import annotations

import contextlib
import copy
import math

import numpy as np
import torch
from torch.utils.data import Dataset

from study.errors import ConfigError
from study.names import AUGMENT_LEVELS

SALT = 104729  # separates the augmentation stream from the sampler's ([seed, epoch, i])
KINDS = ("3d", "2d", "2.5d")

#: level -> group -> settings. ``p``: probability per item (``mirror``: per axis); ranges
#: are [low, high] drawn uniformly; angles in degrees; ``scale`` is the zoom of the content
#: (> 1 enlarges), the same on every axis; ``noise`` draws the variance (images are
#: z-scored: variance 1); ``blur`` sigma in voxels; ``brightness`` / ``contrast`` factors;
#: ``lowres`` the zoom of the simulated acquisition; ``elastic``: control points every
#: ``spacing`` of the item's size per axis, moved by N(0, (magnitude x size)^2) voxels.
#: ``default`` follows nnU-Net v2's defaults (no elastic), in-plane rotation held to +-30
#: degrees (a supine, canonically oriented abdomen never lies at 180).
LEVELS: dict[str, dict[str, dict]] = {
    "none": {},
    "light": {
        "rotate": {"p": 0.2, "in_plane": 15.0, "out_of_plane": 0.0},
        "scale": {"p": 0.2, "range": [0.85, 1.15]},
        "noise": {"p": 0.1, "variance": [0.0, 0.05]},
        "brightness": {"p": 0.15, "range": [0.85, 1.15]},
        "gamma": {"p": 0.15, "range": [0.85, 1.2], "p_invert": 0.0},
    },
    "default": {
        "rotate": {"p": 0.2, "in_plane": 30.0, "out_of_plane": 15.0},
        "scale": {"p": 0.2, "range": [0.7, 1.4]},
        "noise": {"p": 0.1, "variance": [0.0, 0.1]},
        "blur": {"p": 0.2, "sigma": [0.5, 1.0]},
        "brightness": {"p": 0.15, "range": [0.75, 1.25]},
        "contrast": {"p": 0.15, "range": [0.75, 1.25]},
        "lowres": {"p": 0.25, "zoom": [0.5, 1.0]},
        "gamma": {"p": 0.3, "range": [0.7, 1.5], "p_invert": 0.0},
        "mirror": {"p": 0.5, "axes": [1, 2]},
    },
    "heavy": {
        "rotate": {"p": 0.3, "in_plane": 45.0, "out_of_plane": 20.0},
        "scale": {"p": 0.3, "range": [0.65, 1.6]},
        "elastic": {"p": 0.2, "spacing": 0.25, "magnitude": 0.02},
        "noise": {"p": 0.15, "variance": [0.0, 0.15]},
        "blur": {"p": 0.3, "sigma": [0.5, 1.5]},
        "brightness": {"p": 0.3, "range": [0.65, 1.5]},
        "contrast": {"p": 0.3, "range": [0.65, 1.5]},
        "lowres": {"p": 0.35, "zoom": [0.4, 1.0]},
        "gamma": {"p": 0.4, "range": [0.6, 1.7], "p_invert": 0.1},
        "mirror": {"p": 0.5, "axes": [1, 2]},
    },
}
assert tuple(LEVELS) == AUGMENT_LEVELS, "study.names.AUGMENT_LEVELS and LEVELS differ"

SPATIAL = ("rotate", "scale", "elastic", "mirror")
INTENSITY = ("noise", "blur", "brightness", "contrast", "lowres", "gamma")
#: the key of each intensity group's drawn range
RANGE_KEY = {"noise": "variance", "blur": "sigma", "brightness": "range", "contrast": "range",
             "lowres": "zoom", "gamma": "range"}
#: group -> key -> what the value must be (the checks below)
GROUPS: dict[str, dict[str, str]] = {
    "rotate": {"p": "prob", "in_plane": "angle", "out_of_plane": "angle"},
    "scale": {"p": "prob", "range": "positive range"},
    "elastic": {"p": "prob", "spacing": "fraction", "magnitude": "fraction"},
    "mirror": {"p": "prob", "axes": "axes"},
    "noise": {"p": "prob", "variance": "range >= 0"},
    "blur": {"p": "prob", "sigma": "positive range"},
    "brightness": {"p": "prob", "range": "positive range"},
    "contrast": {"p": "prob", "range": "positive range"},
    "lowres": {"p": "prob", "zoom": "zoom range"},
    "gamma": {"p": "prob", "range": "positive range", "p_invert": "prob"},
}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _why(form: str, v) -> str | None:
    """None when ``v`` has ``form``, else the accepted form."""
    if form in ("prob", "fraction"):
        ok = _num(v) and 0 <= v <= 1 and (form == "prob" or v > 0)
        return None if ok else ("a probability in [0, 1]" if form == "prob" else
                                "a number in (0, 1]")
    if form == "angle":
        return None if _num(v) and 0 <= v <= 180 else "degrees in [0, 180]"
    if form == "axes":
        ok = isinstance(v, (list, tuple)) and all(a in (0, 1, 2) for a in v)
        return None if ok and len(set(v)) == len(v) else "a list of distinct axes among 0, 1, 2"
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(_num(b) for b in v)
    ok = ok and v[0] <= v[1]
    low = {"positive range": 0 < v[0], "range >= 0": 0 <= v[0],
           "zoom range": 0 < v[0] and v[1] <= 1}[form] if ok else False
    return None if low else f"[low, high] with low <= high ({form})"


def check_settings(settings: dict) -> dict:
    """``settings`` (group -> key -> value, as a level of :data:`LEVELS`) checked; a
    ConfigError names ``augment``, the group and the key. Returns a deep copy."""
    if not isinstance(settings, dict):
        raise ConfigError(f"augment: expected a level name ({', '.join(LEVELS)}) or a "
                          f"mapping of groups, got {settings!r}")
    for group, values in settings.items():
        if group not in GROUPS:
            raise ConfigError(f"augment: unknown group {group!r}; known groups: "
                              f"{', '.join(GROUPS)}")
        keys = GROUPS[group]
        if not isinstance(values, dict) or set(values) != set(keys):
            raise ConfigError(f"augment.{group}: give exactly the keys {', '.join(keys)}, "
                              f"got {values!r}")
        for key, form in keys.items():
            why = _why(form, values[key])
            if why:
                raise ConfigError(f"augment.{group}.{key} = {values[key]!r}: must be {why}")
    return copy.deepcopy(settings)


def resolve_level(level) -> dict:
    """A level name of :data:`LEVELS` or a settings mapping -> checked settings."""
    if isinstance(level, str):
        if level not in LEVELS:
            raise ConfigError(f"augment: unknown level {level!r}; use one of "
                              f"{', '.join(LEVELS)}")
        return copy.deepcopy(LEVELS[level])
    return check_settings(level)


def _uniform(rng: np.random.Generator, lo_hi) -> float:
    return float(rng.uniform(float(lo_hi[0]), float(lo_hi[1])))


class Augmenter:
    """The transforms of one settings table for items of ``kind``: ``(x, y, rng) -> (x, y)``.

    ``x`` is ``(C, *spatial)`` float32 (2 or 3 spatial axes), ``y`` ``(1, *spatial)`` in
    {0, 1}. Picklable; MONAI is imported on first use."""

    def __init__(self, settings: dict, kind: str):
        if kind not in KINDS:
            raise ConfigError(f"augment: unknown item kind {kind!r}; use one of {list(KINDS)}")
        self.settings = check_settings(settings)
        self.kind = kind

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
        x, y = self.spatial(x, y, rng)
        return self.intensity(x, rng), y

    # ------------------------------------------------------------------ spatial
    def _fires(self, group: str, rng: np.random.Generator) -> dict | None:
        """Draw the group's coin (always, to keep the stream aligned); its settings if it fires."""
        u = float(rng.random())
        s = self.settings.get(group)
        return s if s is not None and u < s["p"] else None

    def _rotation(self, rng: np.random.Generator, nd: int):
        s = self._fires("rotate", rng)
        angles = rng.uniform(-1.0, 1.0, size=3)  # out, out, in-plane
        if s is None:
            return None
        inp = math.radians(s["in_plane"]) * float(angles[2])
        if nd == 2:
            return inp
        out = math.radians(s["out_of_plane"])
        return (out * float(angles[0]), out * float(angles[1]), inp)

    def _scale(self, rng: np.random.Generator, nd: int):
        s = self._fires("scale", rng)
        u = float(rng.random())
        if s is None:
            return None
        zoom = s["range"][0] + u * (s["range"][1] - s["range"][0])
        return (1.0 / zoom,) * nd  # MONAI scales the sampling grid: 1/zoom enlarges content

    def _deform(self, rng: np.random.Generator, size):
        s = self._fires("elastic", rng)
        seed = int(rng.integers(2**31))
        if s is None:
            return None
        spacing = tuple(max(2, round(n * s["spacing"])) for n in size)
        return spacing, s["magnitude"] * min(size), seed

    def grid(self, size, rotate, scale, deform) -> torch.Tensor:
        """The sampling grid (MONAI ``AffineGrid``, with a ``RandDeformGrid`` for ``deform``)."""
        from monai.transforms import AffineGrid, CenterSpatialCrop, RandDeformGrid

        affine = AffineGrid(rotate_params=rotate, scale_params=scale, dtype=torch.float32)
        if deform is None:
            grid, _ = affine(spatial_size=list(size))
            return grid
        spacing, magnitude, seed = deform
        control = RandDeformGrid(spacing=spacing, magnitude_range=(magnitude, magnitude))
        control.set_random_state(seed=seed)
        grid, _ = affine(grid=control(spatial_size=list(size)))
        grid = torch.nn.functional.interpolate(
            torch.as_tensor(grid).unsqueeze(0), scale_factor=list(spacing),
            mode="bicubic" if len(size) == 2 else "trilinear", align_corners=False,
            recompute_scale_factor=True)
        return CenterSpatialCrop(roi_size=list(size))(grid[0])

    def spatial(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
        """Rotation, scaling, elastic (one resampling of image and mask together), mirroring."""
        from monai.transforms import Flip, Resample

        size = tuple(x.shape[1:])
        rotate = self._rotation(rng, len(size))
        scale = self._scale(rng, len(size))
        deform = self._deform(rng, size)
        if rotate is not None or scale is not None or deform is not None:
            grid = self.grid(size, rotate, scale, deform)
            both = Resample(mode="bilinear", padding_mode="zeros", dtype=torch.float32)(
                torch.cat([x, y]), grid)
            both = _plain(both)
            x, y = both[: x.shape[0]].contiguous(), (both[x.shape[0]:] >= 0.5).float()
        m = self.settings.get("mirror")
        coins = rng.random(3)
        axes = [a for a in (m["axes"] if m else []) if a < len(size) and coins[a] < m["p"]]
        if axes:
            flip = Flip(spatial_axis=axes)
            x, y = _plain(flip(x)).contiguous(), _plain(flip(y)).contiguous()
        return x, y

    # ------------------------------------------------------------------ intensity
    def intensity(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """Noise, blur, brightness, contrast, low resolution, gamma (nnU-Net's order)."""
        for group in INTENSITY:
            s = self._fires(group, rng)
            u = rng.random(2)
            seed = int(rng.integers(2**31))
            if s is not None:
                x = _plain(self._intensity_op(group, s, u, seed, x.ndim - 1)(x))
        return x.float().contiguous()

    def _intensity_op(self, group: str, s: dict, u, seed: int, nd: int):
        from monai import transforms as mt

        lo, hi = s[RANGE_KEY[group]]
        value = float(lo + u[0] * (hi - lo))
        if group == "noise":
            op = mt.RandGaussianNoise(prob=1.0, std=math.sqrt(value), sample_std=False)
            op.set_random_state(seed=seed)
            return op
        if group == "blur":
            return mt.GaussianSmooth(sigma=value)
        if group == "brightness":
            return mt.ScaleIntensity(minv=None, maxv=None, factor=value - 1.0)
        if group == "contrast":
            return mt.ScaleIntensityFixedMean(factor=value - 1.0, preserve_range=True)
        if group == "lowres":
            op = mt.RandSimulateLowResolution(prob=1.0, zoom_range=(value, value),
                                              upsample_mode="bilinear" if nd == 2 else "trilinear")
            op.set_random_state(seed=seed)
            return op
        return mt.AdjustContrast(gamma=value, invert_image=bool(u[1] < s["p_invert"]),
                                 retain_stats=True)


def _plain(t) -> torch.Tensor:
    """A plain tensor (MONAI hands back MetaTensors)."""
    return t.as_tensor() if hasattr(t, "as_tensor") else torch.as_tensor(t)


class Augmented(Dataset):
    """``dataset`` (a training sampler) with its items augmented at ``level``; see the module
    docstring. ``level``: a name of :data:`LEVELS` or a settings mapping."""

    def __init__(self, dataset, level, kind: str, seed: int = 0):
        self.dataset = dataset
        self.level = level if isinstance(level, str) else "custom"
        self.augmenter = Augmenter(resolve_level(level), kind)
        self.seed = int(seed)
        if self.seed < 0:
            raise ConfigError(f"augment: seed must be >= 0, got {seed}")
        self.epoch = int(getattr(dataset, "epoch", 0))

    def __len__(self) -> int:
        return len(self.dataset)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if callable(getattr(self.dataset, "set_epoch", None)):
            self.dataset.set_epoch(epoch)

    def rng(self, i: int) -> np.random.Generator:
        """The generator of item ``i`` at the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(i), SALT])

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        with lean():
            return self.augmenter(x, y, self.rng(i))


@contextlib.contextmanager
def lean():
    """While an item is augmented: one torch thread (the ops are small: with the training
    process's 2 threads on a busy 2-core machine they ran 10x slower; DataLoader workers have
    one anyway, so items are computed alike everywhere) and no MONAI metadata (MetaTensor
    bookkeeping doubled the time). Both are restored after (switching the thread count back
    costs the next multi-threaded op some ms on a busy machine: still the cheaper way with
    ``num_workers=0``). MONAI's flag is process-wide, so no other thread of the process may
    run MONAI transforms meanwhile (none does here)."""
    from monai.data import get_track_meta, set_track_meta

    threads, meta = torch.get_num_threads(), get_track_meta()
    if threads != 1:  # a DataLoader worker or a 1-CPU trial already has one: no switch
        torch.set_num_threads(1)
    set_track_meta(False)
    try:
        yield
    finally:
        set_track_meta(meta)
        if threads != 1:
            torch.set_num_threads(threads)
