"""Plans: takes a prepared data set (`study.data.Prepared`), gives its fingerprint (per-case
spacing, shape, orientation, intensities) and a plan (target spacing, median shape, slice
axis, the ranges a new scan is checked against), written as ``plans.json`` beside the cache.

See docs/CONTRACTS.md ("study/plans").
"""

from study.plans.check import check_scan
from study.plans.fingerprint import case_fingerprint, fingerprint_cases
from study.plans.planner import make_plans, target_spacing, write_plans

__all__ = ["case_fingerprint", "check_scan", "fingerprint_cases", "make_plans",
           "target_spacing", "write_plans"]
