"""``replay`` command: run the policies, print the table, write the JSON and the page."""

from __future__ import annotations

import math
import os
from pathlib import Path

from benchmarks.common import REPO, print_table, write_result
from benchmarks.hpo_replay import analysis, figures
from benchmarks.hpo_replay.record import DATA, PARTS_NAME, TABLE
from benchmarks.hpo_replay.replay import POLICIES, load_table, replay, table_settings

CACHE = DATA / PARTS_NAME  # replay_runs_*.jsonl: finished replayed studies (resume)
PAGE = REPO / "reports" / "hpo_replay.html"


def _iv(v, digits=2) -> str:
    lo, mid, hi = v
    return "-" if math.isnan(mid) else f"{mid:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _pct(v: float, ci=None) -> str:
    if math.isnan(v):
        return "-"
    return f"{100 * v:.0f}%" + (f" [{100 * ci[0]:.0f}, {100 * ci[1]:.0f}]" if ci else "")


def table_rows(summary: list[dict]) -> list[list[str]]:
    rows = []
    for s in summary:
        rows.append([s["policy"], str(s["seeds"]), _iv(s["trials"], 0), _iv(s["spent"], 1),
                     _iv(s["c95"], 2) + (f" ({s['c95_censored']} cens.)" if s["c95_censored"]
                                        else ""),
                     _iv(s.get("c95_ratio", [math.nan] * 3)),
                     _iv(s["c99"], 2) + (f" ({s['c99_censored']} cens.)" if s["c99_censored"]
                                        else ""),
                     _iv(s.get("c99_ratio", [math.nan] * 3)), _iv(s["dice_at"], 3),
                     _pct(s["true_best_at"], s.get("true_best_at_ci")),
                     _pct(s["true_best_end"], s.get("true_best_end_ci"))])
    return rows


def _km(k: dict) -> str:
    lo, hi = (("-" if v is None else f"{v:.2f}") for v in k["ci"])
    return "none" if k["median"] is None else f"{k['median']:.2f} [{lo}, {hi}]"


def _ratio(r) -> str:
    if r is None:
        return "-"
    lo, mid, hi = (("∞" if v is None else f"{v:.2f}") for v in r)
    return "none" if r[1] is None else f"{mid} [{lo}, {hi}]"


def survival_rows(surv: list[dict]) -> list[list[str]]:
    """Per policy: share reaching 95 % / 99 % [Wilson], Kaplan-Meier median [95 %], ÷ random."""
    rows = []
    for s in surv:
        row = [s["policy"], str(s["seeds"])]
        for key in ("c95", "c99"):
            k = s[key]
            row += [_pct(k["share"], k["share_ci"]), _km(k), _ratio(s.get(f"{key}_ratio"))]
        rows.append(row)
    return rows


SURVIVAL_HEADERS = ["policy", "seeds", "reach 95%", "KM median to 95%", "÷ random",
                    "reach 99%", "KM median to 99%", "÷ random"]


def survival_table(result_path: Path | None = None) -> dict:
    """The censoring-aware table from a replay's per-seed numbers (results/hpo_replay.json):
    printed, and written as results/hpo_replay_survival.json. No replay is run."""
    import json

    path = result_path or REPO / "benchmarks" / "results" / "hpo_replay.json"
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    surv = analysis.survival(data["per_seed"])
    names = {p["name"]: p.get("note") or p["name"] for p in data.get("policies", [])}
    print_table(SURVIVAL_HEADERS, survival_rows(surv),
                title="HPO replay, censoring-aware: compute to 95 % / 99 % of the best final "
                      "Dice in full-budget trainings; seeds that never got there are censored")
    payload = {"source": str(path), "policies": names, "survival": surv,
               "best_final_dice": data.get("best_final_dice"),
               "configurations": data.get("configurations")}
    write_result("hpo_replay_survival", payload)
    return payload


HEADERS = ["policy", "seeds", "trials", "compute spent", "compute to 95%", "÷ random",
           "compute to 99%", "÷ random", "Dice at 8 budgets", "true best @8", "true best @end"]


def run(table_path: Path = TABLE, seeds: int = 30, only: list[str] | None = None,
        at: float = 8.0, cache: Path | None = CACHE, shard: tuple[int, int] = (0, 1)) -> dict:
    from study.io import write_text_atomic
    from study.report.html import esc, table

    policies = [p for p in POLICIES if not only or p.name in only]
    table_df = load_table(table_path)
    settings = table_settings(table_df)
    iterations = settings["iterations"]
    final = analysis.finals(table_df, iterations)
    runs = replay(table_path, policies, range(seeds), cache_dir=cache, shard=shard)
    if shard[1] > 1:
        return {}  # a shard only runs its studies; the plain command summarises
    rows = [analysis.per_seed(r, final, iterations, at) for r in runs]
    bad = [r for r in rows if r.get("chosen_matches") is False]
    if bad:
        raise SystemExit(f"the product's best_trials disagrees with the replay's incumbent in "
                         f"{len(bad)} studies (first: {bad[0]['policy']} seed {bad[0]['seed']})")
    summary = analysis.summarise(rows)
    best = max(final.values())
    print_table(HEADERS, table_rows(summary),
                title=f"HPO replay: {len(final)} configurations, best final val Dice {best:.4f}; "
                      f"compute in full-budget trainings ({iterations} iterations); "
                      f"median [95% interval] over seeds")
    upto = max(r["spent"] for r in rows)
    figs = [figures.anytime_figure(figures.anytime_data(runs, iterations, upto), best),
            figures.ratio_figure(summary), figures.at_budget_figure(summary, at)]
    intro = (f"<p>{len(final)} configurations recorded on real MRI "
             f"(<code>{esc(str(Path(table_path).name))}</code>), best final validation Dice "
             f"{best:.4f}; {seeds} seeds per policy; compute counted in training iterations, "
             f"shown in full-budget trainings of {iterations} iterations.</p>")
    html_rows = [[f"<td>{esc(c)}</td>" for c in row] for row in table_rows(summary)]
    write_text_atomic(PAGE, figures.page(figs, intro, table(HEADERS, html_rows)))
    print(f"wrote {PAGE}")
    payload = {"table": str(Path(table_path).relative_to(REPO)
                            if Path(table_path).is_relative_to(REPO) else table_path),
               "configurations": len(final), "best_final_dice": best, "at_budgets": at,
               "policies": [{"name": p.name, "note": p.note, "sampler": p.sampler,
                             "early_stopping": p.early_stopping, "grace": p.grace,
                             "reduction_factor": p.reduction_factor, "trials": p.trials,
                             "start_with": list(p.start_with)} for p in policies],
               "summary": summary, "per_seed": rows,
               "replay_wall_s": sum(r["wall_s"] for r in runs), "loadavg_end": os.getloadavg()}
    write_result("hpo_replay", payload)
    survival_table()
    return payload


# ----------------------------------------- issue 29: continuous table, concurrency 1 / 2 / 4

def result_name(table_path: Path) -> str:
    """``hpo_replay_v2`` for ``hpo_replay_curves_v2.parquet`` (``_v1`` for the first
    table's, ``hpo_replay_<stem>`` for another name)."""
    stem = Path(table_path).stem
    return "hpo_replay_" + (stem.removeprefix("hpo_replay_curves").lstrip("_") or "v1")


def _keyed_rows(table_path: Path, policies, seeds: int, at: float, concurrency: int,
                time_scale: float, cache: Path | None, shard) -> list[dict] | None:
    """The per-seed numbers of every policy at one concurrency (None for a shard)."""
    table_df = load_table(table_path)
    iterations = table_settings(table_df)["iterations"]
    final = analysis.finals(table_df, iterations)
    runs = replay(table_path, policies, range(seeds), cache_dir=cache, shard=shard,
                  concurrency=concurrency, time_scale=time_scale)
    if shard[1] > 1:
        return None
    rows = [{**analysis.per_seed(r, final, iterations, at), "concurrency": concurrency}
            for r in runs]
    bad = [r for r in rows if r.get("chosen_matches") is False]
    if bad:
        raise SystemExit(f"concurrency {concurrency}: the product's best_trials disagrees "
                         f"with the replay's incumbent in {len(bad)} studies (first: "
                         f"{bad[0]['policy']} seed {bad[0]['seed']})")
    return rows


def run_keyed(table_path: Path, seeds: int | list[int] = 30, only: list[str] | None = None,
              at: float = 8.0, concurrency=(1, 2, 4), time_scale: float = 0.005,
              shard: tuple[int, int] = (0, 1), cache: Path | None = None) -> dict:
    """The policies at each ``concurrency`` (trials at once) over ``table_path`` (the v2
    table: continuous space, nearest lookup); per concurrency the summary and the
    censoring-aware table (baseline: random search at the same concurrency). Cached per
    table in ``CACHE/<table stem>/``; written to ``results/<result_name>.json``."""
    policies = [p for p in POLICIES if not only or p.name in only]
    cache = cache or CACHE / Path(table_path).stem
    table_df = load_table(table_path)
    final = analysis.finals(table_df, table_settings(table_df)["iterations"])
    given = [seeds] if isinstance(seeds, int) else list(seeds)
    if len(given) not in (1, len(concurrency)):
        raise SystemExit(f"--seeds {' '.join(map(str, given))}: give one number, or one per "
                         f"concurrency ({len(concurrency)})")
    per = dict(zip(concurrency, given * len(concurrency) if len(given) == 1 else given,
                   strict=True))
    by: dict[str, dict] = {}
    for k in concurrency:
        rows = _keyed_rows(table_path, policies, per[k], at, k, time_scale, cache, shard)
        if rows is None:
            continue
        summary, surv = analysis.summarise(rows), analysis.survival(rows)
        print_table(HEADERS, table_rows(summary),
                    title=f"HPO replay, {k} trial(s) at once: {len(final)} recorded "
                          f"configurations, best final val Dice {max(final.values()):.4f}")
        print_table(SURVIVAL_HEADERS, survival_rows(surv),
                    title=f"censoring-aware, {k} trial(s) at once")
        by[str(k)] = {"summary": summary, "survival": surv, "per_seed": rows}
    if shard[1] > 1:
        return {}
    payload = {"table": str(table_path), "configurations": len(final),
               "best_final_dice": max(final.values()), "at_budgets": at,
               "time_scale": time_scale, "concurrency": list(concurrency),
               "policies": [{"name": p.name, "note": p.note} for p in policies],
               "by_concurrency": by, "loadavg_end": os.getloadavg()}
    write_result(result_name(table_path), payload)
    return payload


def lookup_report(table_path: Path) -> dict:
    """The nearest lookup's leave-one-configuration-out error on a table (printed and
    written to ``results/<result_name>_lookup.json``)."""
    from benchmarks.hpo_replay.lookup import held_out_error
    from benchmarks.hpo_replay.record import NEAREST

    table = load_table(table_path)
    got = held_out_error(table, NEAREST)
    rbf = held_out_error(table, NEAREST, method="rbf")
    noise = got["noise_floor"] or {}
    rows = [[f"{it}", f"{got['mae'][str(it)]:.4f}", f"{got['median'][str(it)]:.4f}",
             f"{got['max'][str(it)]:.4f}", f"{rbf['mae'][str(it)]:.4f}",
             f"{got['mae_mean_model'][str(it)]:.4f}",
             f"{noise[str(it)]:.4f}" if str(it) in noise else "-"] for it in got["at"]]
    print_table(["iteration", "nearest MAE", "median", "max", "RBF MAE", "MAE of the mean",
                 "seed noise floor"], rows,
                title=f"lookup, leave one of {got['configurations']} configurations out: "
                      f"|Dice error| (the replay uses nearest)")
    write_result(result_name(table_path) + "_lookup",
                 {"table": str(table_path), **got, "rbf": {k: rbf[k] for k in (
                     "mae", "median", "max")}})
    return got


#: what every shipped space's sampler comment cites: (budget, replayed policy, trials at
#: once): the `full` budgets' schedule at 4 at once (they run 8), the `cpu` budgets as
#: shipped at 2 at once (their max_concurrent)
SHIPPED = (("full", "tpe+asha multivariate", 4), ("cpu", "cpu budget", 2))
CITED_RESULT = REPO / "benchmarks" / "results" / "hpo_replay_v2_sobol.json"


def citation(payload: dict, shipped=SHIPPED) -> list[str]:
    """The comment lines a shipped space carries above its `sampler:` (each space's text
    must contain them verbatim; tests/tune/test_hpo_replay_v2.py checks it): per budget,
    share of seeds reaching 95 % / 99 % of the best and the Kaplan-Meier median of compute
    as a ratio to random search's at the same concurrency."""
    lines = ["# Evidence: benchmarks/README.md section 7, HPO replay v2 (results/"
             f"{CITED_RESULT.name}): {payload['configurations']}",
             "# Sobol configurations x 2 training seeds, censoring-aware; x random = "
             "Kaplan-Meier median of",
             "# compute to the target / random search's at the same concurrency."]
    for budget, policy, k in shipped:
        surv = {s["policy"]: s for s in payload["by_concurrency"][str(k)]["survival"]}[policy]
        lines.append(f"# `{budget}` budgets ({policy}, {k} trials at once, {surv['seeds']} "
                     "replay seeds):")
        for key, target in (("c95", "95 %"), ("c99", "99 %")):
            km, ratio = surv[key], surv.get(key + "_ratio")
            got = (f"{_ratio(ratio)} x random" if ratio and ratio[1] is not None
                   else "no median" if km["median"] is None
                   else f"median {km['median']:.2f} trainings, random has no median")
            lines.append(f"#   {target} of the best: {_pct(km['share'], km['share_ci'])} of "
                         f"seeds reach it, {got}")
    return lines

