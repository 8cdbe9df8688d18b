"""Optuna TPE behind Ray Tune, made budget-aware.

Ray's ``OptunaSearch`` tells Optuna COMPLETE, with the partial-budget value, for a trial
that ASHA stopped early, so TPE would rank a 10-iteration score against 40000-iteration
scores. :class:`BudgetAwareOptunaSearch` instead

- reports every evaluation to Optuna at its *training iteration* (not Ray's report count),
  including the last one, which Ray withholds from the searcher when ASHA stops a trial;
- tells Optuna PRUNED for a trial that ended before the full budget without an error.
  Optuna's TPE ranks pruned trials by (deepest step reached, then last value) and keeps them
  apart from completed ones (``optuna/samplers/_tpe/sampler.py: _split_pruned_trials``).

:class:`DefineByRun` draws one configuration (architecture first, then the parameters that
exist only for that architecture, named ``ARCH.NAME`` in Optuna so each keeps one
distribution). ``lr_after_switch`` and ``lrdehl`` act only after the loss switches to LRDEHL:
they are drawn last, and only when ``switch_step`` is not ``never`` (so TPE and the
importances never see values that changed nothing).

The subclass relies on ``OptunaSearch`` internals (`INTERNALS`): ``pyproject.toml`` bounds
Ray and ``constraints.txt`` pins it; a Ray without them fails at once, saying so.
"""

from __future__ import annotations

import logging
import math
import warnings

import optuna
from ray.tune.search.optuna import OptunaSearch

from study.tune.dists import Dist

log = logging.getLogger(__name__)
OptunaState = optuna.trial.TrialState


#: Parameters that only matter once the loss switches to LRDEHL.
SWITCH_ONLY = ("lr_after_switch", "lrdehl")


def switches(switch_step) -> bool:
    """Whether a sampled ``switch_step`` (fraction of the budget or ``never``) switches."""
    return switch_step not in ("never", None) and float(switch_step) < 1.0


class DefineByRun:
    """Picklable define-by-run space for ``OptunaSearch`` (it is saved with the searcher)."""

    def __init__(self, params: dict[str, Dist], per_arch: dict[str, dict[str, Dist]]):
        self.params = dict(params)
        self.per_arch = {a: dict(p) for a, p in per_arch.items()}

    def __call__(self, trial) -> dict:
        out, later = {}, {}
        for name, dist in self.params.items():
            if name in SWITCH_ONLY:
                later[name] = (dist, name)
            else:
                out[name] = dist.suggest(trial, name)
        for name, dist in self.per_arch.get(out["arch"], {}).items():
            key = f"{out['arch']}.{name}"
            if name in SWITCH_ONLY:
                later[name] = (dist, key)
            else:
                out[name] = dist.suggest(trial, key)
        if switches(out.get("switch_step")):
            for name, (dist, key) in later.items():
                out[name] = dist.suggest(trial, key)
        return out


def searched_params(config: dict) -> dict:
    """The sampled parameters of a trial config (drops Optuna's ``ARCH.NAME`` copies)."""
    return {k: v for k, v in config.items() if not k.startswith("_") and "." not in k}


#: what BudgetAwareOptunaSearch uses of Ray's OptunaSearch beyond its public API
INTERNALS = ("_setup_study", "_ot_study", "_ot_trials", "_completed_trials")


def missing_internals(searcher) -> list[str]:
    """The `INTERNALS` a set-up searcher lacks (empty with a compatible Ray)."""
    return [name for name in INTERNALS if not hasattr(searcher, name)]


class BudgetAwareOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that records budget: steps are iterations; early-stopped -> PRUNED."""

    def __init__(self, *args, max_iterations: int, step_attr: str = "iteration",
                 start_with: list[dict] | None = None, **kwargs):
        self._start_with = [dict(p) for p in start_with or []]
        super().__init__(*args, **kwargs)
        self._max_iterations = int(max_iterations)
        self._step_attr = step_attr

    def _setup_study(self, mode):
        super()._setup_study(mode)
        missing = missing_internals(self)
        if missing:
            import ray

            raise RuntimeError(
                f"Ray {ray.__version__}: OptunaSearch no longer has {', '.join(missing)}, "
                f"which study.tune.searcher relies on; install the pinned versions "
                f"(pip install -c constraints.txt -e .) or adapt BudgetAwareOptunaSearch")
        # configurations to evaluate first (the space's start_with:), asked before TPE's;
        # skip_if_exists: a new Tuner on the same Optuna study (resume fallback) adds none twice
        for point in getattr(self, "_start_with", []):
            self._ot_study.enqueue_trial(point, skip_if_exists=True)

    def _report(self, trial_id: str, result: dict | None) -> None:
        if not result or trial_id not in self._ot_trials:
            return
        value, step = result.get(self.metric), result.get(self._step_attr)
        if value is None or step is None or not math.isfinite(float(value)):
            return
        ot_trial = self._ot_trials[trial_id]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "step already reported" after a restore
            try:
                ot_trial.report(float(value), int(step))
            except Exception as exc:  # the trial was finished before a driver restart
                log.debug("optuna report for %s: %s", trial_id, exc)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self._completed_trials:
            return
        self._report(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        value = result.get(self.metric) if result else None
        step = result.get(self._step_attr) if result else None
        finite = value is not None and math.isfinite(float(value))
        if error or not finite:
            state, values = OptunaState.FAIL, None
        elif step is not None and int(step) < self._max_iterations:
            self._report(trial_id, result)
            state, values = OptunaState.PRUNED, None
        else:
            self._report(trial_id, result)
            state, values = OptunaState.COMPLETE, float(value)
        try:
            self._ot_study.tell(ot_trial, values, state=state)
        except Exception as exc:  # e.g. already finished before a driver restart
            log.warning("optuna tell for %s: %s", trial_id, exc)
        self._completed_trials.add(trial_id)


def prune_reported(storage_url: str, study_name: str) -> int:
    """After Tune stopped at the time budget (it tells the searcher nothing then): Optuna
    trials still RUNNING that reported an evaluation become PRUNED at their last step, as
    an ASHA stop would; the rest are left to `fail_orphans`. Returns how many."""
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    n = 0
    for t in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        if t.intermediate_values:
            study.tell(t.number, state=OptunaState.PRUNED)
            n += 1
    return n


def finished_count(storage_url: str, study_name: str) -> int:
    """How many Optuna trials of the study ended COMPLETE or PRUNED (0 if there is no study)."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False,
                                states=(OptunaState.COMPLETE, OptunaState.PRUNED)))


def fail_orphans(storage_url: str, study_name: str) -> int:
    """Mark Optuna trials still RUNNING as FAIL (asked by a driver that was then killed).

    Call when every Ray trial of the study has finished: anything RUNNING then belongs to no
    Ray trial. Returns how many were marked.
    """
    study = optuna.load_study(study_name=study_name, storage=storage_url)
    n = 0
    for t in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        study.tell(t.number, state=OptunaState.FAIL)
        n += 1
    return n
