"""Statistics over test cases, shared by the closing note and the report (scipy, seeded).

* `bootstrap_ci`: percentile bootstrap 95% CI of a mean over cases (``scipy.stats.bootstrap``).
* `wilcoxon_pair`: paired Wilcoxon signed-rank test of per-case values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


def bootstrap_ci(values: Sequence[float], *, seed: int = BOOTSTRAP_SEED,
                 n_resamples: int = BOOTSTRAP_RESAMPLES,
                 confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean over cases (``scipy.stats.bootstrap``, resamples
    drawn from ``default_rng(seed)``: the same values always give the same interval). None
    with fewer than two values."""
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if x.size < 2:
        return None
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                          method="percentile", rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return float(ci.low), float(ci.high)



def min_p_value(n_effective: int) -> float:
    """The smallest two-sided p-value the exact Wilcoxon signed-rank test can give with
    ``n_effective`` non-zero differences: every sign agreeing, 2 / 2**n (0.0625 with 5,
    0.03125 with 6): below 6 effective pairs p < 0.05 is impossible."""
    return min(1.0, 2.0 / 2.0 ** n_effective) if n_effective > 0 else 1.0


def wilcoxon_pair(a: Sequence[float], b: Sequence[float]) -> dict:
    """Paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided, its default
    zero handling and method) of per-case values ``a`` vs ``b``: n (pairs), n_effective (the
    non-zero differences the test uses: scipy's default ``zero_method="wilcox"`` drops the
    zeros), min_p (`min_p_value` of n_effective), median of ``a - b``, statistic, p-value.
    Every difference zero: p = 1 (nothing to tell apart)."""
    import numpy as np
    from scipy import stats

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    n_eff = int(np.count_nonzero(d))
    out = {"n": int(d.size), "n_effective": n_eff, "min_p": min_p_value(n_eff),
           "median_diff": float(np.median(d)) if d.size else None,
           "statistic": None, "p_value": None}
    if d.size == 0:
        return out
    if np.all(d == 0):
        return {**out, "statistic": 0.0, "p_value": 1.0}
    res = stats.wilcoxon(x, y)
    return {**out, "statistic": float(res.statistic), "p_value": float(res.pvalue)}
