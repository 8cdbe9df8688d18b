"""Replay searches over the recorded table through the real ``study/tune`` path.

One (policy, seed) = one phase study run by `study.tune.tuner.run_phase`, exactly as
``study.launch`` runs it: Ray Tune, `BudgetAwareOptunaSearch` (TPE or random over the
table's values as categorical parameters, seeded by the seed), ASHA (`ResumableASHA`) or
none, PRUNED for stopped trials, the `Recorder` writing ``trials.parquet`` /
``metrics.parquet``, and the search space written as YAML and read by
`study.tune.space.load_space`. The trainable is the fake one with ``fake: {replay: TABLE}``:
each trial reports the recorded validation Dice of its configuration at each evaluation
(`study.tune.fake.replay_curve`) instead of training. Trials run one at a time
(``max_concurrent: 1``), so the order of events, and with it the compute, is exact:
compute is counted in training iterations (an ASHA-stopped trial costs the iterations it
reached).

What a policy would hand over at any moment is the *budget-aware incumbent*: among the
trials so far (the running one at the iteration it reached), the one that reached the
highest budget, then the highest validation Dice (`study.results.ranked_trials`' rule; at
the end of a run the incumbent is checked to be `study.results.best_trials`' choice). Its
value is the recorded Dice of that model (the checkpoint at the budget it reached), i.e.
what the product would test and ship.

Issue 29: over a table with training seeds (`record.record_v2`) the study searches the
continuous space `record.SPACE` (log-uniform lr, L2, lr factor) and the trainable answers
each proposed point with the nearest recorded configuration, mean over its seeds
(``fake.nearest``; `benchmarks.hpo_replay.lookup` says why and measures the error); a
trial's configuration is then that recorded one (``DESIGN:CONFIG``). With
``concurrency`` k > 1 trials run k at a time as the product runs them: each evaluation
sleeps ``time_scale`` x its recorded seconds, so the trials report in the order their
recorded costs give (ASHA decides on that order), and the trainables log when they report;
the events are put in that order, compute is the iterations trained by all trials up to an
event, and the incumbent follows the events (`analysis.incumbents`).
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

PHASE = "replay"
VAL_CASES = ("v1", "v2", "v3")


@dataclass(frozen=True)
class Policy:
    name: str
    sampler: dict  # a space's sampler: (study.tune.sampler.parse_sampler)
    early_stopping: str = "asha"  # or "none"
    grace: float = 0.125  # grace period, fraction of the budget (at least one evaluation)
    reduction_factor: int = 2
    trials: int = 64
    start_with: tuple = ()  # configurations asked first (plain names)
    note: str = ""


def load_table(path: str | Path):
    import polars as pl

    return pl.read_parquet(path)


def table_settings(table, path: str | Path | None = None) -> dict:
    """Parameters and their values, budget and evaluation interval of a replay table. A
    table with a ``seed`` column (the v2 recording) is replayed over the continuous space
    (``continuous``: `record.SPACE`, answered by the nearest recorded configuration; its
    ``path`` is kept to name a trial's configuration, `config_key`)."""
    from study.tune.fake import REPLAY_VALUES

    iterations = sorted(set(table["iteration"].to_list()))
    grid = {c: sorted(set(table[c].to_list()), key=_order) for c in table.columns
            if c not in REPLAY_VALUES}
    out = {"grid": grid, "iterations": max(iterations), "eval_every": iterations[0]}
    if "seed" in table.columns:
        out.update(continuous=True, table=str(Path(path).resolve()) if path else None)
    return out


def _order(v):
    return (0, float(v), "") if _number(v) else (1, 0.0, str(v))


def _number(v) -> bool:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return True
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _yaml_value(column: str, v):
    """A table value as the space writes it (switch_step fractions are numbers there)."""
    if column == "switch_step" and v != "never":
        return float(v)
    return v


def _grid_params(settings: dict) -> dict:
    """The first table's space: its values as categorical parameters."""
    params = {"arch": "unet2d", "batch_size": 4}
    for column, values in settings["grid"].items():
        values = [_yaml_value(column, v) for v in values]
        params[column] = values[0] if len(values) == 1 else {"choice": values}
    if "switch_step" in params:  # the recording's fixed LRDEHL settings
        params.update({"lr_after_switch": 1.0, "lrdehl": "mae"})
    return params


def _start_point(point: dict, continuous: bool) -> dict:
    """A policy's start point; over the continuous space one that switches gets the
    grid's LRDEHL settings (lr factor 1, MAE) where it names none, as the cpu budget's."""
    from study.tune.fake import SWITCH_ONLY

    out = dict(point)
    if continuous and out.get("switch_step", "never") != "never":
        out = {**dict(zip(SWITCH_ONLY, (1.0, "mae"), strict=True)), **out}
    return out


def space_dict(table_path: str | Path, settings: dict, policy: Policy, seed: int,
               concurrency: int = 1, time_scale: float = 0.0,
               log_events: str | Path | None = None) -> dict:
    """The search space of one replayed study (a regular space YAML, trainable fake):
    ``concurrency`` trials at once (CPU shares so that 2 Ray CPUs hold them), each
    evaluation after ``time_scale`` x its recorded seconds, logged to ``log_events``."""
    from benchmarks.hpo_replay.record import NEAREST, SPACE, SPACE_FIXED

    it, every = settings["iterations"], settings["eval_every"]
    # ASHA judges a trial at its first evaluation at or past each rung (grace x rf^k)
    grace = max(every, int(round(policy.grace * it)))
    continuous = bool(settings.get("continuous"))
    params = {"arch": "unet2d", "batch_size": 4, **SPACE, **SPACE_FIXED} if continuous \
        else _grid_params(settings)
    budget = {"iterations": it, "eval_every": every, "grid": [8, 8, 8],
              "trials": policy.trials, "max_concurrent": int(concurrency),
              "grace_period": min(grace, it),
              "reduction_factor": policy.reduction_factor, "phases": [PHASE],
              "sampler": policy.sampler, "early_stopping": policy.early_stopping}
    if policy.start_with:
        budget["start_with"] = [_start_point(p, continuous) for p in policy.start_with]
    replay = {"table": str(Path(table_path).resolve())}  # study.tune.fake.replay_options
    if continuous:
        replay["nearest"] = NEAREST
    if time_scale:
        replay["time_scale"] = float(time_scale)
    if log_events:
        replay["log_events"] = str(log_events)
    return {"description": f"HPO replay: {policy.name}", "trainable": "fake", "seed": seed,
            "params": params, "fake": {"replay": replay if len(replay) > 1 else replay["table"],
                                       "checkpoints": False},
            "resources": {"default": {"cpu": min(1.0, 2.0 / concurrency), "gpu": 0}},
            "budgets": {"replay": budget}}


def run_policy(table_path: str | Path, settings: dict, policy: Policy, seed: int,
               work: Path, concurrency: int = 1, time_scale: float = 0.0) -> dict:
    """One replayed study; returns its events and the product's own choice. With
    ``concurrency`` > 1 the trials sleep ``time_scale`` x their recorded seconds per
    evaluation and log when they report (`event_times`): the events follow that order."""
    from study.results import best_trials, read_metrics, read_trials
    from study.tune.settings import TrialSettings
    from study.tune.space import load_space
    from study.tune.tuner import PhasePlan, run_phase

    name = f"{policy.name.replace(' ', '_').replace('+', '-')}-s{seed}"
    run_dir = Path(work) / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    path = run_dir / "space.yaml"
    log = (run_dir / "events.jsonl").resolve() if concurrency > 1 else None  # workers' cwd
    path.write_text(yaml.safe_dump(space_dict(
        table_path, settings, policy, seed, concurrency,
        time_scale if concurrency > 1 else 0.0, log)))
    space = load_space(path)
    b = space.budget("replay")
    params, per_arch = space.space_for(b)
    run = TrialSettings(trainable="fake", phase=PHASE, all_phases=(PHASE,),
                        iterations=b.iterations, eval_every=b.eval_every, seed=seed, data="",
                        grid=b.grid, cache_root="", val_cases=VAL_CASES, fake=space.fake)
    plan = PhasePlan(study=name, phase=PHASE, run_dir=run_dir, params=params, per_arch=per_arch,
                     resources={"unet2d": space.resources_for("unet2d")}, run=run,
                     iterations=b.iterations, trials=b.trials, max_concurrent=b.max_concurrent,
                     grace_period=b.grace_period, reduction_factor=b.reduction_factor,
                     seed=seed, start_with=space.start_points(b), verbose=-1,
                     sampler=space.sampler_for(b), early_stopping=b.early_stopping == "asha",
                     flush_every_s=60.0)
    t0 = time.perf_counter()
    run_phase(plan)
    wall = time.perf_counter() - t0
    trials, metrics = read_trials(run_dir), read_metrics(run_dir)
    chosen = best_trials(trials).row(0, named=True)
    out = {"policy": policy.name, "seed": seed, "wall_s": wall, "concurrency": concurrency,
           "events": events(trials, metrics, settings, trial_order(plan.exp_dir),
                            event_times(log) if log else None),
           "chosen": {"trial": chosen["trial"], "budget": chosen["budget"],
                      "val_dice": chosen["final_val_dice"]}}
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def trial_order(exp_dir: Path) -> dict[str, int]:
    """Trial id -> its creation counter, from the trial folders (``trial_0003_<id>``)."""
    from study.tune.params import trial_index

    return {d.name.split("_", 2)[2]: trial_index(d) for d in Path(exp_dir).glob("trial_*_*")}


def event_times(path: Path) -> dict[tuple[str, int], float]:
    """(trial, iteration) -> when the trainable reported it (``fake.log_events``)."""
    out = {}
    if Path(path).is_file():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                e = json.loads(line)
                out.setdefault((e["trial"], int(e["iteration"])), float(e["t"]))
    return out


@lru_cache(maxsize=4)
def _curves(path: str) -> dict:
    from study.tune.fake import mean_curves

    return mean_curves(load_table(path))


def config_key(config_json: str, settings: dict) -> str:
    """A trial's configuration named by the table's parameters (JSON, sorted keys); over
    the continuous space, the recorded configuration that answered it (``DESIGN:CONFIG``,
    `study.tune.fake.nearest_id`, as the trainable looked it up)."""
    params = json.loads(config_json)
    if settings.get("continuous"):
        from benchmarks.hpo_replay.record import NEAREST
        from study.tune.fake import nearest_id, table_point

        curves = _curves(settings["table"])
        kw = {**params, "iterations": settings["iterations"], "switch_step": None
              if params.get("switch_step") in (None, "never")
              else int(round(float(params["switch_step"]) * settings["iterations"]))}
        point = table_point(kw, next(iter(curves.values()))["params"])
        return nearest_id(curves, point, NEAREST)
    return json.dumps({c: str(_table_form(c, params.get(c))) for c in settings["grid"]},
                      sort_keys=True)


def _table_form(column: str, v):
    if column == "switch_step":
        return "never" if v in (None, "never") else f"{float(v):g}"
    return f"{float(v):g}" if _number(v) and not isinstance(v, str) else v


def events(trials, metrics, settings: dict, order: dict[str, int],
           times: dict[tuple[str, int], float] | None = None) -> list[dict]:
    """The replayed study as a sequence of evaluations in the order they happened:
    trial, configuration, iteration, recorded Dice, compute spent so far (iterations trained
    by all trials up to that event). One trial at a time (``times`` None) that order is the
    trials' creation order, each trial's evaluations in turn; trials side by side, the
    order in which the trainables reported them (``times``, `event_times`; an evaluation
    without a time goes last)."""
    import polars as pl

    val = metrics.filter((pl.col("split") == "val") & (pl.col("case") == "mean")
                         & (pl.col("metric") == "dice"))
    keys = dict(zip(trials["trial"].to_list(),
                    [config_key(c, settings) for c in trials["config"].to_list()], strict=True))
    evals = [(t, int(it), float(v)) for t, it, v in zip(
        val["trial"].to_list(), val["iteration"].to_list(), val["value"].to_list(), strict=True)
        if t in keys]
    if times is None:
        evals.sort(key=lambda e: (order[e[0]], e[1]))
    else:
        evals.sort(key=lambda e: (times.get((e[0], e[1]), math.inf), order[e[0]], e[1]))
    out, spent, last = [], 0, {}
    for trial, it, value in evals:
        spent += it - last.get(trial, 0)
        last[trial] = it
        out.append({"trial": trial, "config": keys[trial], "iteration": it, "dice": value,
                    "compute": spent})
    return out


def run_all(table_path: str | Path, policies: list[Policy], seeds: list[int],
            work: Path | None = None, log=print, concurrency: int = 1,
            time_scale: float = 0.0) -> list[dict]:
    """Every policy over every seed, in one Ray session (policies interleaved per seed)."""
    import os

    import ray

    # Ray saves the experiment at most this often (s): the study's 2 s is for resuming a
    # killed driver; a replay is rerun instead, and the saves would dominate its cost
    os.environ["TUNE_GLOBAL_CHECKPOINT_S"] = "600"
    table = load_table(table_path)
    settings = table_settings(table, table_path)
    own = work is None
    work = Path(work or tempfile.mkdtemp(prefix="hpo-replay-"))
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    runs = []
    try:
        for seed in seeds:
            for policy in policies:
                got = run_policy(table_path, settings, policy, seed, work, concurrency,
                                 time_scale)
                runs.append(got)
                log(f"seed {seed:3d} {policy.name:<28} c{concurrency} "
                    f"{len(got['events']):4d} evaluations, "
                    f"{got['events'][-1]['compute'] if got['events'] else 0:6d} iterations, "
                    f"chose {got['chosen']['val_dice']:.4f} ({got['wall_s']:.1f} s)")
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return runs


# --------------------------------------------------------------------------- the policies

TPE = {"name": "tpe", "n_startup_trials": 10, "multivariate": False, "group": False}
RANDOM = {"name": "random"}
#: the `cpu` budgets' start_with (search_spaces/unet2d.yaml), in the table's parameters
CPU_START_WITH = (
    {"lr": 1.0e-3, "l2": 1.0e-5, "base_channels": 16, "loss": "dice", "switch_step": "never"},
    {"lr": 1.0e-3, "l2": 5.0e-4, "base_channels": 16, "loss": "sqdice", "switch_step": 0.75})
#: the shipped `full` budgets' schedule: grace 1/8 of the budget, halving (rf 2)
POLICIES = (
    # 48 trials: 2 of the 64 configurations are within 99 % of the best, so random search
    # needs ~32 full trainings for it, median; with 48 it gets there in ~80 % of seeds
    Policy("random", RANDOM, "none", trials=48, note="random search, every trial to the end"),
    Policy("tpe", TPE, "none", trials=48, note="TPE, every trial to the end"),
    Policy("random+asha", RANDOM, "asha", 0.125, 2, 48, note="random search + ASHA"),
    Policy("tpe+asha", TPE, "asha", 0.125, 2, 48, note="the product: TPE + ASHA"),
    Policy("tpe+asha rf3 g0.2", TPE, "asha", 0.2, 3, 48,
           note="the cpu budgets' schedule (grace 1/5, rf 3)"),
    Policy("tpe+asha g0.1 rf3", TPE, "asha", 0.1, 3, 48,
           note="grace one evaluation (1/10), rf 3"),
    Policy("tpe+asha startup5", {**TPE, "n_startup_trials": 5}, "asha", 0.125, 2, 48,
           note="TPE after 5 random trials instead of 10"),
    Policy("tpe+asha multivariate", {**TPE, "multivariate": True, "group": True}, "asha",
           0.125, 2, 48, note="multivariate, grouped TPE"),
    Policy("tpe+asha start_with", TPE, "asha", 0.125, 2, 48, start_with=CPU_START_WITH,
           note="the cpu budgets' two start_with configurations asked first"),
    Policy("tpe+asha multivariate rf3 g0.2", {**TPE, "multivariate": True, "group": True},
           "asha", 0.2, 3, 48, note="the shipped default since this replay"),
    Policy("cpu budget", {**TPE, "multivariate": True, "group": True}, "asha", 0.2, 3, 48,
           start_with=CPU_START_WITH,
           note="the cpu budgets as shipped: multivariate TPE, ASHA 1/5 rf 3, start_with"),
    Policy("tpe multivariate", {**TPE, "multivariate": True, "group": True}, "none",
           trials=48, note="multivariate, grouped TPE, every trial to the end"),
)


def policy_key(policy: Policy, concurrency: int = 1, time_scale: float = 0.0) -> str:
    """The cache key of a policy's studies; one trial at a time it is the policy alone (the
    first replay's keys), side by side the concurrency and time scale are part of it."""
    from dataclasses import asdict

    key = json.dumps(asdict(policy), sort_keys=True, default=list)
    return key if concurrency == 1 else f"{key}|c{concurrency}|t{time_scale:g}"


def _cached(cache_dir: Path) -> dict[tuple[str, int], dict]:
    done = {}
    for path in sorted(Path(cache_dir).glob("replay_runs*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["key"], r["seed"])] = r
    return done


def replay(table_path: str | Path, policies=POLICIES, seeds=range(30),
           cache_dir: Path | None = None, shard: tuple[int, int] = (0, 1),
           log=print, concurrency: int = 1, time_scale: float = 0.0) -> list[dict]:
    """Every (policy, seed), each run once: finished runs are kept as JSON lines in
    ``cache_dir`` and not rerun, so a killed replay continues. ``shard = (i, n)`` runs only
    the seeds with ``seed % n == i`` (n processes side by side, one file each) and returns
    what is cached. ``concurrency`` trials at once, ``time_scale``: `run_policy`."""
    done = _cached(cache_dir) if cache_dir is not None else {}
    i, n = shard
    key = lambda p: policy_key(p, concurrency, time_scale)  # noqa: E731
    todo = [(p, s) for s in seeds for p in policies if (key(p), s) not in done and s % n == i]
    log(f"{len(done)} replayed studies cached; {len(todo)} to run at concurrency "
        f"{concurrency}")
    out = Path(cache_dir or ".") / f"replay_runs_{i}of{n}.jsonl"
    for policy, seed in todo:
        got = run_all(table_path, [policy], [seed], log=log, concurrency=concurrency,
                      time_scale=time_scale)[0]
        got["key"] = key(policy)
        done[(got["key"], seed)] = got
        if cache_dir is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(got) + "\n")
    return [done[(key(p), s)] for s in seeds for p in policies if (key(p), s) in done]
