"""Is a new scan like the training scans? Warnings naming the case and the range, never a
silent result (`study.apply.predict` prints them and records them in predictions.json)."""

from __future__ import annotations

#: a spacing up to this factor outside the training range is not worth a warning
SPACING_SLACK = 1.25


def check_scan(case: str, fingerprint: dict, plans: dict | None) -> list[str]:
    """Warnings for one new case (its `case_fingerprint`) against a run's ``plans``: spacing
    outside the training range (per canonical axis, with `SPACING_SLACK`), an orientation
    no training case had (handled by canonical orientation, said once), and for CT channels
    a median intensity outside the training cases' range (MR intensities have no absolute
    scale: the per-volume normalisation handles them)."""
    if not plans or "ranges" not in plans:
        return []
    out = []
    rng = plans["ranges"]
    lo, hi = rng["spacing"]["min"], rng["spacing"]["max"]
    sp = fingerprint["spacing"]
    if any(s < a / SPACING_SLACK or s > b * SPACING_SLACK for s, a, b in zip(sp, lo, hi,
                                                                             strict=True)):
        out.append(f"case {case}: voxel spacing {_mm(sp)} mm is outside the training range "
                   f"{_mm(lo)} .. {_mm(hi)} mm (RAS axes); the models never saw this "
                   f"resolution, check the masks")
    if rng.get("axcodes") and fingerprint["axcodes"] not in rng["axcodes"]:
        out.append(f"case {case}: stored in {fingerprint['axcodes']} orientation, the training "
                   f"scans in {', '.join(rng['axcodes'])}; reoriented to RAS as they were")
    normalisation = plans.get("normalisation") or {}
    for phase, stats in fingerprint["intensity"].items():
        known = rng.get("intensity", {}).get(phase) or {}
        if (normalisation.get(phase) or {}).get("scheme") != "ct" or "p50" not in known:
            continue
        value, (a, b) = stats["volume"]["p50"], known["p50"]
        if not a - 100 <= value <= b + 100:
            out.append(f"case {case}: {phase} median intensity {value:.0f} is outside the "
                       f"training range {a:.0f} .. {b:.0f} (HU); is it really CT, calibrated?")
    return out


def _mm(values) -> str:
    return " x ".join(f"{v:.2f}" for v in values)
