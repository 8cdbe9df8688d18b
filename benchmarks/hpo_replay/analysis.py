"""From replayed studies to the issue's figures (pure functions, no Ray).

A replayed study is a list of evaluation events (`replay.events`): trial, configuration,
iteration, recorded Dice, compute spent so far. From it:

- `incumbents`: after each event, the budget-aware incumbent (highest iteration reached,
  then highest Dice) and the Dice of that model;
- `reach`: the compute at which the incumbent first scores at least a target (None if never:
  censored at the compute the study spent);
- `value_at`: the incumbent's Dice once a given compute is spent;
- `picked_true_best`: whether the incumbent at a compute is the configuration with the best
  *final* Dice among those the study had started by then.

`summarise` turns the per-seed numbers into medians with 95 % intervals (percentiles over
seeds for a policy's values; a seeded bootstrap over seeds for the ratio of medians to
random search's; Wilson intervals for the true-best shares).

Compute to a target is *censored* for a seed whose study ended before it got there: such a
seed is not counted at what it spent. `survival` gives, per policy, the share of seeds that
reached the target (Wilson interval) and the Kaplan-Meier median of compute to target with
its 95 % interval (scipy.stats.ecdf on `scipy.stats.CensoredData`, log-log pointwise band
inverted at 0.5: lifelines' `median_survival_times` of the band). A policy where fewer than
half the seeds reached the target has **no median** (None: its studies end before half of
them get there, and Kaplan-Meier would assume they go on); nor does an interval end that
the band never brings below 0.5.
"""

from __future__ import annotations

import json
import math

import numpy as np


def finals(table, iterations: int) -> dict[str, float]:
    """Configuration key (as `replay.config_key` names it) -> recorded Dice at the budget;
    a table with training seeds (v2): ``DESIGN:CONFIG`` -> the mean over its seeds (what
    the replay's trainable reports, `study.tune.fake.mean_curves`)."""
    from benchmarks.hpo_replay.replay import _table_form
    from study.tune.fake import REPLAY_VALUES, mean_curves

    if "seed" in table.columns:
        return {name: c["dice"][iterations] for name, c in mean_curves(table).items()
                if iterations in c["dice"]}

    params = [c for c in table.columns if c not in REPLAY_VALUES]
    last = table.filter(table["iteration"] == iterations)
    return {json.dumps({c: str(_table_form(c, r[c])) for c in params}, sort_keys=True):
            float(r["val_dice"]) for r in last.iter_rows(named=True)}


def incumbents(events: list[dict]) -> list[dict]:
    """After each event: compute, the incumbent trial, its configuration, iteration, Dice."""
    state: dict[str, tuple[int, float, str]] = {}
    out = []
    for e in events:
        state[e["trial"]] = (e["iteration"], e["dice"], e["config"])
        trial = max(state, key=lambda t: (state[t][0], state[t][1]))
        it, dice, config = state[trial]
        out.append({"compute": e["compute"], "trial": trial, "config": config,
                    "iteration": it, "dice": dice})
    return out


def reach(incs: list[dict], target: float) -> int | None:
    for inc in incs:
        if inc["dice"] >= target:
            return inc["compute"]
    return None


def value_at(incs: list[dict], compute: float) -> float:
    """The incumbent's Dice once ``compute`` is spent (the last event within it; NaN if the
    study had not evaluated anything by then)."""
    value = math.nan
    for inc in incs:
        if inc["compute"] > compute:
            break
        value = inc["dice"]
    return value


def picked_true_best(events: list[dict], incs: list[dict], final: dict[str, float],
                     compute: float | None = None) -> bool | None:
    """Whether the incumbent at ``compute`` (None: the end) has the best final Dice among the
    configurations started by then (ties count as a hit)."""
    upto = [i for i, e in enumerate(events) if compute is None or e["compute"] <= compute]
    if not upto:
        return None
    started = {events[i]["config"] for i in upto}
    chosen = incs[upto[-1]]["config"]
    return final[chosen] >= max(final[c] for c in started) - 1e-12


def per_seed(run: dict, final: dict[str, float], iterations: int, at_budgets: float) -> dict:
    """The numbers of one replayed study (compute in full budgets)."""
    incs = incumbents(run["events"])
    best = max(final.values())
    spent = run["events"][-1]["compute"] if run["events"] else 0
    out = {"policy": run["policy"], "seed": run["seed"], "spent": spent / iterations,
           "trials": len({e["trial"] for e in run["events"]})}
    for q in (0.95, 0.99):
        c = reach(incs, q * best)
        out[f"c{round(q * 100)}"] = (c if c is not None else spent) / iterations
        out[f"c{round(q * 100)}_censored"] = c is None
    out["dice_at"] = value_at(incs, at_budgets * iterations)
    out["true_best_at"] = picked_true_best(run["events"], incs, final, at_budgets * iterations)
    out["true_best_end"] = picked_true_best(run["events"], incs, final)
    out["final_dice"] = incs[-1]["dice"] if incs else math.nan
    if incs and run.get("chosen"):  # the product's own choice at the end is the incumbent
        out["chosen_matches"] = abs(run["chosen"]["val_dice"] - incs[-1]["dice"]) < 1e-9
    return out


def interval(values, q=(2.5, 50.0, 97.5)) -> list[float]:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    return [float(np.percentile(v, p)) for p in q] if v.size else [math.nan] * 3


def ratio_interval(a, b, n: int = 10000, seed: int = 0) -> list[float]:
    """median(a) / median(b) with a seeded bootstrap 95 % interval (seeds resampled)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    ra = np.median(a[rng.integers(0, a.size, (n, a.size))], axis=1)
    rb = np.median(b[rng.integers(0, b.size, (n, b.size))], axis=1)
    r = ra / rb
    return [float(np.percentile(r, 2.5)), float(np.median(a) / np.median(b)),
            float(np.percentile(r, 97.5))]


def share_interval(hits: list[bool], z: float = 1.959964) -> list[float]:
    """Wilson score 95 % interval of a share of successes: [low, high]."""
    n = len(hits)
    if n == 0:
        return [math.nan, math.nan]
    p = sum(hits) / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def summarise(rows: list[dict], baseline: str = "random") -> list[dict]:
    """Per policy: medians and 95 % intervals over seeds, ratios to ``baseline``."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["policy"], []).append(r)
    base = by.get(baseline, [])
    out = []
    for policy, rs in by.items():
        s = {"policy": policy, "seeds": len(rs)}
        for key in ("c95", "c99"):
            vals = [r[key] for r in rs]
            s[key] = interval(vals)
            s[f"{key}_censored"] = sum(r[f"{key}_censored"] for r in rs)
            if base:
                s[f"{key}_ratio"] = ratio_interval(vals, [r[key] for r in base])
        s["dice_at"] = interval([r["dice_at"] for r in rs])
        s["spent"] = interval([r["spent"] for r in rs])
        s["trials"] = interval([r["trials"] for r in rs])
        for key in ("true_best_at", "true_best_end"):
            hits = [r[key] for r in rs if r[key] is not None]
            s[key] = sum(hits) / len(hits) if hits else math.nan
            s[f"{key}_ci"] = share_interval(hits)
        out.append(s)
    return out


def km_median(times, censored, confidence: float = 0.95) -> dict:
    """Kaplan-Meier median of ``times`` (``censored[i]``: seed i never reached the target and
    ``times[i]`` is what it spent) with its interval: ``{"n", "reached", "share",
    "share_ci", "median", "ci": [low, high]}``; None where undefined (module docstring)."""
    import warnings

    from scipy import stats

    t = np.asarray(times, dtype=float)
    c = np.asarray(censored, dtype=bool)
    out = {"n": int(t.size), "reached": int((~c).sum()),
           "share": float((~c).mean()) if t.size else math.nan,
           "share_ci": [float(v) for v in share_interval(list(~c))], "median": None,
           "ci": [None, None]}
    if not t.size or out["reached"] == 0:
        return out
    sf = stats.ecdf(stats.CensoredData(uncensored=t[~c], right=t[c])).sf
    with warnings.catch_warnings():  # undefined at S = 0 or 1: those points carry no bound
        warnings.simplefilter("ignore", RuntimeWarning)
        band = sf.confidence_interval(confidence_level=confidence, method="log-log")
    if out["share"] >= 0.5:
        out["median"] = _first_below_half(sf)
    point = np.asarray(sf.probabilities, dtype=float)
    out["ci"] = [_first_below_half(band.low, point), _first_below_half(band.high, point)]
    if out["median"] is None:
        out["ci"][1] = None
    return out


def _first_below_half(fn, point=None) -> float | None:
    """The first time at which a step survival function is at or below 0.5; a band's
    undefined points (NaN, where the estimate is 0 or 1) take the estimate ``point``."""
    q = np.asarray(fn.quantiles, dtype=float)
    p = np.asarray(fn.probabilities, dtype=float)
    if point is not None:
        p = np.where(np.isnan(p), point, p)
    hit = np.flatnonzero(np.nan_to_num(p, nan=1.0) <= 0.5 + 1e-12)
    return float(q[hit[0]]) if hit.size else None


def km_ratio(a: dict, b: dict, n: int = 2000, seed: int = 0) -> list:
    """Ratio of Kaplan-Meier medians of two policies (``{"times", "censored"}`` each) with a
    seeded bootstrap 95 % interval over seeds; an undefined median counts as infinite, so
    an interval end may be None (unbounded) and the ratio itself None."""
    rng = np.random.default_rng(seed)

    def med(d, idx=None) -> float:
        t, c = np.asarray(d["times"], float), np.asarray(d["censored"], bool)
        if idx is not None:
            t, c = t[idx], c[idx]
        m = km_median(t, c)["median"]
        return math.inf if m is None else m

    ratios = []
    na, nb = len(a["times"]), len(b["times"])
    for _ in range(n):
        ma, mb = med(a, rng.integers(0, na, na)), med(b, rng.integers(0, nb, nb))
        ratios.append(math.inf if math.isinf(ma) else ma / mb if not math.isinf(mb) else 0.0)
    point = med(a) / med(b) if not math.isinf(med(b)) else math.nan
    lo, hi = (float(np.percentile(ratios, q, method="inverted_cdf")) for q in (2.5, 97.5))
    fin = lambda v: None if math.isinf(v) or math.isnan(v) else v  # noqa: E731
    return [fin(lo), fin(point), fin(hi)]


def survival(rows: list[dict], baseline: str = "random") -> list[dict]:
    """Per policy and target (95 %, 99 %): share reaching it and the Kaplan-Meier median of
    compute to it, with intervals, and the ratio of medians to ``baseline``'s."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["policy"], []).append(r)
    out = []
    for policy, rs in by.items():
        s = {"policy": policy, "seeds": len(rs)}
        for key in ("c95", "c99"):
            d = {"times": [r[key] for r in rs], "censored": [r[f"{key}_censored"] for r in rs]}
            s[key] = km_median(d["times"], d["censored"])
            base = by.get(baseline)
            if base:
                s[f"{key}_ratio"] = km_ratio(d, {"times": [r[key] for r in base],
                                                 "censored": [r[f"{key}_censored"]
                                                              for r in base]})
        out.append(s)
    return out
