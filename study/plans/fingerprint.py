"""The data set fingerprint (nnU-Net's dataset fingerprint, for this project's layout): per
case, in canonical (RAS) axes, the voxel spacing and shape, the source orientation, and per
channel the intensity percentiles of the whole volume and of its foreground (label > 0)."""

from __future__ import annotations

import numpy as np

PERCENTILES = (0.5, 50.0, 99.5)


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {}
    p = np.percentile(values, PERCENTILES)
    return {"p00_5": float(p[0]), "p50": float(p[1]), "p99_5": float(p[2]),
            "mean": float(values.mean()), "std": float(values.std())}


def case_fingerprint(images: dict, label: np.ndarray | None, affine) -> dict:
    """One case: ``images`` {phase: (X, Y, Z) in the source axes}, its label (or None) and
    the source affine -> spacing / shape in canonical axes, axcodes, intensities."""
    from study.data import orientation as ori
    from study.data.dataset import voxel_spacing

    shape = next(iter(images.values())).shape
    canon = ori.canonical_affine(affine, shape)
    fg = None if label is None else np.asarray(label) > 0
    return {"spacing": [round(s, 6) for s in voxel_spacing(canon)],
            "shape": list(ori.canonical_shape(shape, affine)),
            "axcodes": ori.axcodes(affine),
            "intensity": {p: {"volume": _stats(np.asarray(v, dtype=np.float64).ravel()),
                              "foreground": {} if fg is None else
                              _stats(np.asarray(v, dtype=np.float64)[fg])}
                          for p, v in images.items()}}


def fingerprint_cases(prep, cases=None) -> dict[str, dict]:
    """{case: `case_fingerprint`} for the prepared data set's cases (default: all), read from
    the source files."""
    from study.data.dataset import read_mask, read_volume

    out = {}
    for case in cases if cases is not None else prep.case_ids:
        src = prep.source(case)
        images = {p: read_volume(path)[0] for p, path in zip(prep.phases, src["image_paths"],
                                                              strict=True)}
        label, affine = read_mask(src["label_path"], None)
        out[case] = case_fingerprint(images, label, affine)
    return out
