"""A whole study: data, one Ray Tune experiment per phase, test evaluation.

``StudySettings.from_args`` validates everything that can be checked before training
(search space, budget, counts); ``run_study`` prepares the data (checking phases and
sizes against it), writes ``study.json`` (`study.tune.provenance`), runs the phases,
evaluates the best trials on the test cases (and the cross-validated finalists when asked)
and prints the closing note. ``study.launch`` then builds the report.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from study.errors import ConfigError
from study.evaluation.table import format_test_table
from study.io import write_text_atomic
from study.results import read_metrics, read_trials
from study.tune.params import resolve_inputs
from study.tune.provenance import now_utc, study_meta
from study.tune.space import Budget, SearchSpace, load_space, parse_space


@dataclass
class StudySettings:
    run_dir: Path
    space: SearchSpace
    budget: Budget
    seed: int
    trials: int
    max_concurrent: int
    data: str | None
    label: str | None
    phases: list[str] | None
    args: dict
    report: bool = True
    split_seed: int = 0  # train/val/test split; fixed, so --seed repeats share test cases
    time_s: float | None = None  # --time: the tuning of all phases ends by then
    finalists: int = 0  # --finalists K: cross-validate the K best configurations per phase
    folds: int = 5  # --folds F
    verbose: int = 0  # -v: Ray's own trial tables (-vv: every result)
    dry_run: bool = False  # --dry-run: print the cost projection and stop
    cpus: int | None = None  # --cpus of a local Ray instance (the projection's capacity)
    address: str | None = None  # --address of a Ray cluster

    @property
    def name(self) -> str:
        return self.run_dir.name

    @classmethod
    def from_args(cls, args, run_dir: Path, saved: dict | None = None) -> StudySettings:
        if saved and (saved.get("space") or {}).get("yaml"):
            # a resumed run uses the search space as it was when the run started
            sp = saved["space"]
            space = parse_space(yaml.safe_load(sp["yaml"]), Path(sp["path"]), sp["yaml"])
        else:
            space = load_space(args.space)
        time_s = parse_duration(getattr(args, "time", None))
        budget = space.budget(default_budget(args.budget, time_s))
        space.start_points(budget)  # start_with checked before anything runs
        for key in ("samples", "max_concurrent", "cpus"):
            v = getattr(args, key, None)
            if v is not None and v < 1:
                raise ConfigError(f"--{key.replace('_', '-')} {v}: must be >= 1")
        finalists, folds = int(getattr(args, "finalists", 0) or 0), getattr(args, "folds", None)
        folds = 5 if folds is None else int(folds)
        if finalists < 0:
            raise ConfigError(f"--finalists {finalists}: must be >= 0 (0 = off)")
        if finalists and folds < 2:
            raise ConfigError(f"--folds {folds}: cross-validation needs at least 2 folds")
        split_seed = getattr(args, "split_seed", None)
        if split_seed is None:  # a run from before split_seed existed split with its seed
            split_seed = (saved or {}).get("split_seed", (saved or {}).get("seed", 0))
        saved = {k: getattr(args, k, None) for k in ("space", "data", "label", "phase", "samples",
                                                     "budget", "seed", "max_concurrent", "time")}
        saved.update(finalists=finalists, folds=folds)
        saved["budget"] = budget.name
        saved["split_seed"] = int(split_seed)
        saved["space"] = str(space.path)
        if saved["data"]:
            saved["data"] = str(Path(saved["data"]).expanduser().resolve())
        return cls(run_dir=run_dir, space=space, budget=budget,
                   seed=space.seed if args.seed is None else int(args.seed),
                   trials=args.samples or (TIME_TRIALS if time_s else budget.trials),
                   max_concurrent=args.max_concurrent or budget.max_concurrent,
                   data=saved["data"], label=args.label, phases=args.phase, args=saved,
                   report=not getattr(args, "no_report", False), split_seed=int(split_seed),
                   time_s=time_s, finalists=finalists, folds=folds,
                   verbose=int(getattr(args, "verbose", 0) or 0),
                   dry_run=bool(getattr(args, "dry_run", False)),
                   cpus=getattr(args, "cpus", None), address=getattr(args, "address", None))


#: trials per phase under --time without --samples: the clock, not the count, ends the phase
TIME_TRIALS = 1000
_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text) -> float | None:
    """``--time``: ``90s``, ``30m``, ``2h``, ``1h30m`` or plain seconds -> seconds."""
    if text is None:
        return None
    import re

    t = str(text).strip().lower()
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", t)
    if not t or parts is None or not any(parts.groups()):
        raise ConfigError(f"--time {text}: use a duration such as 90s, 30m, 2h or 1h30m")
    h, m, sec = (float(g) if g else 0.0 for g in parts.groups())
    total = h * 3600 + m * 60 + sec
    if total <= 0:
        raise ConfigError(f"--time {text}: must be more than 0")
    return total


def gpu_visible() -> bool:
    """$STUDY_USE_GPU when set, else whether torch sees a CUDA device here."""
    import torch

    from study.tune.cluster import gpu_requested

    return gpu_requested(cluster_gpus=1 if torch.cuda.is_available() else 0)


def default_budget(budget: str | None, time_s: float | None) -> str:
    """``--budget`` as given; without it ``cpu`` under ``--time`` where no GPU is visible,
    ``full`` where one is, else ``smoke``."""
    if budget is not None:
        return str(budget)
    if time_s is None:
        return "smoke"
    return "full" if gpu_visible() else "cpu"


def _check_sizes(archs: list[str], params: dict, per_arch: dict, budget: Budget,
                 where: str) -> None:
    """Sizes every architecture can take: 2D grids / 3D patches multiples of 2**depth."""
    from study.models import MODELS

    for arch in archs:
        info = MODELS[arch]
        m = 2 ** info.default_depth
        if info.kind == "3d":
            patch = {**params, **per_arch.get(arch, {})}.get("patch")
            patches = [[64, 64, 64]] if patch is None else [patch.value] if patch.fixed \
                else list(patch.args)
            sizes, key = [s for p in patches for s in p], "patch"
        elif budget.grid is None:  # own grids per case: 2D windows are planned as multiples
            continue
        else:
            sizes, key = list(budget.grid[:2]), f"budgets.{budget.name}.grid"
        if any(int(s) % m for s in sizes):
            raise ConfigError(f"{where}: key '{key}': sizes {sizes} do not suit {arch} (every "
                              f"size must be a multiple of {m})")


def _check_inputs(params: dict, per_arch: dict, all_phases: list[str], where: str) -> None:
    dists = [params.get("inputs")] + [p.get("inputs") for p in per_arch.values()]
    for d in dists:
        if d is None:
            continue
        for v in d.values():
            try:
                resolve_inputs(v, all_phases[0], all_phases)
            except ConfigError as exc:
                raise ConfigError(f"{where}: key 'params.inputs': {exc}") from None


def run_study(s: StudySettings, *, saved: dict | None, init_ray, log=print) -> int:
    from study.data import prepare
    from study.data.phantom import default_phantom

    t0 = time.time()
    data = Path(s.data) if s.data else default_phantom()
    b = s.budget
    phases = study_phases(s, data, log)  # phases and label checked before preprocessing
    where = str(s.space.path)
    prep = prepare(data, label=s.label, **b.geometry, seed=s.split_seed)
    params, per_arch = s.space.space_for(b)
    archs = [params["arch"].value] if params["arch"].fixed else list(params["arch"].args)
    _check_inputs(params, per_arch, prep.phases, where)
    _check_sizes(archs, params, per_arch, b, where)
    projection = None
    if saved is None:  # a resumed run keeps the projection it started with
        projection = _project(s, prep, phases, archs, (params, per_arch), time.time() - t0, log)
        if s.dry_run:
            return 0
    from study.plans import write_plans

    meta = study_meta(s, prep, data, phases, archs, saved,
                      plans=None if saved and saved.get("plans") else write_plans(prep))
    if projection is not None:
        meta["projection"] = projection.record()
    s.run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(s.run_dir / "study.json", json.dumps(meta, indent=2, default=str))
    # the run carries its data set's channel -> phase map and labels, for study.apply.predict
    write_text_atomic(s.run_dir / "dataset.json",
                      (Path(data) / "dataset.json").read_text(encoding="utf-8"))
    log(f"study {s.name}: space {s.space.name}, budget {b.name} ({b.iterations} iterations, "
        f"eval every {b.eval_every}, {b.geometry_text}), {s.trials} trial(s) per phase, "
        f"phases {', '.join(phases)}, run directory {s.run_dir}")

    tune_s = _run_phases(s, prep, data, phases, (params, per_arch, archs), meta,
                         saved=saved, init_ray=init_ray, deadline=t0 + s.time_s
                         if s.time_s else None, log=log, t0=t0)
    from study.tune.final import evaluate_best

    evaluate_best(s.run_dir, s.name, prep, list(prep.split["test"]),
                  trainable=s.space.trainable, fake_options=s.space.fake, log=log)
    if s.finalists:
        from study.tune.crossval import run_finalists

        meta["finalists"] = run_finalists(s, prep, phases,
                                          lambda phase: trial_settings(s, prep, data, phase),
                                          {a: s.space.resources_for(a) for a in archs},
                                          resume=saved is not None, init_ray=init_ray, log=log)
    wall = time.time() - t0
    meta["postprocessing"] = _postprocessing(s.run_dir)
    meta.update(finished=now_utc(),
                wall_s=round(wall + float((saved or {}).get("wall_s") or 0.0), 1),
                tune_s=tune_s)
    if meta.get("projection"):
        meta["projection"]["actual_s"] = meta["wall_s"]
    write_text_atomic(s.run_dir / "study.json", json.dumps(meta, indent=2, default=str))
    log(closing_note(s, wall, tune_s, meta.get("projection")))
    return 0


def _project(s: StudySettings, prep, phases: list[str], archs: list[str], space: tuple,
             before_s: float, log):
    """Warm-up, then the projected wall time of the study, printed (`study.tune.projection`)."""
    import ray

    from study.tune.projection import capacity, project_study

    use_gpu = gpu_visible() and any(s.space.resources_for(a).get("gpu", 0) > 0 for a in archs)
    cap = capacity(s.cpus, s.address, use_gpu)
    if ray.is_initialized():  # a running Ray instance (tests, a notebook): its CPUs
        cap["cpu"] = float(ray.cluster_resources().get("CPU", cap["cpu"]))
    p = project_study(s, prep, phases, archs, space, before_s=before_s, cap=cap, log=log,
                      overheads={"ray_start": 0.0} if ray.is_initialized() else None)
    log(p.line())
    return p


def _run_phases(s: StudySettings, prep, data: Path, phases: list[str], space: tuple,
                meta: dict, *, saved: dict | None, init_ray, deadline: float | None,
                log, t0: float | None = None) -> dict[str, float]:
    """One Ray Tune experiment per phase not done yet (each with its share of the time
    left); returns the tuning wall time per phase, summed over invocations."""
    from study.tune.tuner import PhasePlan, phase_done, run_phase

    params, per_arch, archs = space
    b = s.budget
    resources = {a: s.space.resources_for(a) for a in archs}
    tune_s = dict((saved or {}).get("tune_s") or {})  # tuning wall time per phase, summed
    start_points = s.space.start_points(b)
    for i, phase in enumerate(phases):
        plan = PhasePlan(
            study=s.name, phase=phase, run_dir=s.run_dir, params=params, per_arch=per_arch,
            resources=resources, run=trial_settings(s, prep, data, phase), iterations=b.iterations,
            trials=s.trials, max_concurrent=s.max_concurrent, grace_period=b.grace_period,
            reduction_factor=b.reduction_factor, seed=s.seed, max_failures=s.space.max_failures,
            resume=saved is not None, start_with=start_points, verbose=s.verbose,
            sampler=s.space.sampler_for(b), early_stopping=b.early_stopping == "asha",
            expect=_expect(meta.get("projection"), phases[i:], t0))
        if plan.resume and phase_done(plan):
            continue
        if deadline is not None:  # the time left, shared evenly by the phases still to run
            plan.time_budget_s = max(1.0, (deadline - time.time()) / (len(phases) - i))
            log(f"phase {phase}: time budget {plan.time_budget_s:.0f} s")
        init_ray()
        t = time.time()
        run_phase(plan)
        tune_s[phase] = round(float(tune_s.get(phase, 0.0)) + time.time() - t, 1)
        meta["tune_s"] = tune_s
        write_text_atomic(s.run_dir / "study.json", json.dumps(meta, indent=2, default=str))
    return tune_s


def _expect(projection: dict | None, phases: list[str], t0: float | None) -> dict | None:
    """What the console's ETA starts from: the phase's projected seconds and updates, and
    the projected seconds of what follows it (later phases, testing)."""
    if not projection or t0 is None or phases[0] not in projection.get("phases", {}):
        return None
    per = projection["phases"]
    later = sum(per[p]["seconds"][1] for p in phases[1:] if p in per)
    return {"seconds": per[phases[0]]["seconds"][1],
            "iterations": per[phases[0]]["iterations"][1],
            "after_s": later + float(projection.get("final_s") or 0.0)}


def trial_settings(s: StudySettings, prep, data: Path, phase: str):
    """The fixed settings every trial of a phase gets (``run`` in trainable.py)."""
    from study.data import resolve_cache_root
    from study.tune.settings import TrialSettings

    b = s.budget
    return TrialSettings(
        trainable=s.space.trainable, fake=dict(s.space.fake or {}), phase=phase,
        all_phases=tuple(prep.phases), iterations=int(b.iterations),
        eval_every=int(b.eval_every), seed=int(s.seed), data=str(data), label=s.label,
        grid=None if b.grid is None else tuple(int(g) for g in b.grid),
        spacing=b.spacing, data_seed=int(s.split_seed),
        cache_root=str(resolve_cache_root(None)), val_cases=tuple(prep.split["val"]))


def _postprocessing(run_dir: Path) -> dict:
    """PHASE/ARCH -> the postprocessing chosen on validation (best/PHASE/ARCH/...json)."""
    from study.tune.final import POSTPROCESSING_FILE

    out = {}
    for f in sorted((run_dir / "best").glob(f"*/*/{POSTPROCESSING_FILE}")):
        out[f"{f.parent.parent.name}/{f.parent.name}"] = json.loads(f.read_text())
    return out


def study_phases(s: StudySettings, data: Path, log) -> list[str]:
    """The phases to study, checked against the data set (its dataset.json only).

    ``--phase`` must name data-set phases. The budget's / space's phases too, unless none
    of them exists there (e.g. a one-channel T2 set under a 4-phase space): then the data
    set's phases are studied, and a line says so. A partial mismatch stays an error.
    """
    from study.data import read_dataset

    have = read_dataset(data, label=s.label).phases  # also checks the label exists
    want = list(s.phases or s.budget.phases or s.space.phases or have)
    unknown = [p for p in want if p not in have]
    if unknown and not s.phases and len(unknown) == len(want):
        log(f"phases: the space's {', '.join(want)} are not in {data}; studying the data "
            f"set's phases instead: {', '.join(have)}")
        return list(have)
    if unknown:
        raise ConfigError(f"phase(s) {', '.join(unknown)} not in the data set {data} "
                          f"(phases: {', '.join(have)}); fix --phase or 'phases' in "
                          f"{s.space.path}")
    return want


def closing_note(s: StudySettings, wall: float, tune_s: dict[str, float],
                 projection: dict | None = None) -> str:
    from study.results import best_trials

    trials = read_trials(s.run_dir).filter(pl.col("study") == s.name)
    lines = ["", f"== study {s.name}: finished in {wall:.0f} s (this invocation)"]
    if projection and projection.get("actual_s"):
        lines.append(f"projected {projection['low_s']:.0f}-{projection['high_s']:.0f} s "
                     f"(median {projection['mid_s']:.0f} s) before the start; took "
                     f"{projection['actual_s']:.0f} s "
                     f"({projection['actual_s'] / projection['mid_s'] - 1:+.0%} of the median)")
    for phase in sorted(set(trials["phase"].to_list())):
        t = trials.filter(pl.col("phase") == phase)
        count = {st: t.filter(pl.col("status") == st).height
                 for st in ("TERMINATED", "STOPPED", "ERROR")}
        inside = float(t["wall_s"].sum() or 0.0)
        timed = t.filter(pl.col("stop_reason").str.starts_with("stopped by the time")).height
        line = (f"phase {phase}: {t.height} trial(s): {count['TERMINATED']} full budget, "
                f"{count['STOPPED'] - timed} stopped by ASHA, "
                + (f"{timed} stopped by the time budget, " if timed else "")
                + f"{count['ERROR']} failed")
        if tune_s.get(phase) and inside > 0:
            slots = max(1, min(s.max_concurrent, t.height))
            line += (f"; tuning wall {tune_s[phase]:.0f} s vs {inside:.0f} s of training "
                     f"inside trials ({slots} slot(s)): Ray overhead x"
                     f"{tune_s[phase] / (inside / slots):.2f}")
        lines.append(line)
        for e in t.filter(pl.col("status") == "ERROR").iter_rows(named=True):
            lines.append(f"  failed {e['trial']}: {e['stop_reason']}")
    for r in best_trials(trials).iter_rows(named=True):
        lines.append(f"best {r['phase']}/{r['arch']}: trial {r['trial']} val_dice "
                     f"{r['final_val_dice'] if r['final_val_dice'] is not None else float('nan'):.4f}"
                     f" at {r['budget']} iterations (highest rung reached); config {r['config']}")
    chosen = best_trials(trials)["trial"].to_list()
    metrics = read_metrics(s.run_dir).filter((pl.col("study") == s.name)
                                             & pl.col("trial").is_in(chosen))
    lines += ["", "test set, per case (whole volume, best trial per phase and "
              "architecture):", format_test_table(metrics)]
    if s.finalists:
        from study.results.finalists import format_summary, read_finalists

        table = read_finalists(s.run_dir).filter(pl.col("study") == s.name)
        lines += ["", format_summary(table)]
    return "\n".join(lines)
