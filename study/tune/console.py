"""A quiet console for a phase study: one line per trial event and a short status line.

Ray's own output (a boxed table per trial start and result) is off by default
(``verbose=0``); this callback prints instead::

    trial 0003 started: hybrid, lr 1.2e-03, l2 3.4e-05, base_channels 16, loss sqdice
    trial 0003 stopped by ASHA at 300 of 1500 iterations: val Dice 0.6120
    trial 0004 finished the full budget (1500 iterations): val Dice 0.8123
    [arterial 04:10] 2 running, 6 done (2 full budget, 4 stopped early, 0 failed); best val Dice 0.8123 (trial 0004); ETA 03:20 (study: ~12 min left)

The ETA (`Eta`) starts from the study's projection (`study.tune.projection`) and is updated
from the measured rate: updates per second of a trial (the updates reported over the seconds
the trials ran, starts included) times the trials that can run at once; the updates still to
come are those of the running trials (under ASHA each rung ahead is reached with probability
``1 / rf``) and of the trials not started yet (the projected updates per trial, else the
expected updates of a new trial). Under ``--time`` it is never past the phase's end.

At verbosity 0 `quiet` also drops what Optuna and Ray print by themselves at each phase
(Optuna's "A new study created in RDB", Ray's experiment box and TensorBoard hint, Tune's
"Wrote the latest version" log line); `phase_line` says in one line what they said.
``python -m study.launch -v`` brings Ray's boxes back (``-vv``: every result too).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
import time

from ray import tune

from study.tune.searcher import searched_params
from study.tune.trainable import POINT

STATUS_EVERY_S = 60.0


def readable(value) -> str:
    """A parameter value for a console line: ``1.2e-05`` rather than ``0.``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e4):
        return f"{value:.1e}"
    return f"{value:.4g}"


def describe(config: dict) -> str:
    """``arch, key value, ...`` of a trial config's sampled parameters (arch first); a
    cross-validation trial (`study.tune.crossval`) is named by its finalist and fold."""
    point = (config or {}).get(POINT)
    if isinstance(point, dict):
        cv = point.get("_cv") or {}
        rest = describe({k: v for k, v in point.items() if k != "_cv"})
        return f"finalist #{cv.get('rank')}, fold {cv.get('fold')}: {rest}"
    params = searched_params(config or {})
    arch = params.pop("arch", None)
    parts = [str(arch)] if arch is not None else []
    parts += [f"{k} {readable(v)}" for k, v in sorted(params.items())]
    return ", ".join(parts)


def _name(trial) -> str:
    counter = str(getattr(trial, "experiment_tag", "")).split("_", 1)[0]
    return f"trial {int(counter):04d}" if counter.isdigit() else f"trial {trial.trial_id}"


class ConsoleLines(tune.Callback):
    """Prints trial starts / stops / failures and, every ``every_s``, a status line."""

    def __init__(self, phase: str, max_iterations: int, every_s: float = STATUS_EVERY_S,
                 print_fn=print, schedule: dict | None = None):
        self.phase, self.max_iterations, self.every_s = phase, int(max_iterations), every_s
        self.eta = Eta(int(max_iterations), schedule or {})
        self._print = print_fn
        self._started = time.time()
        self._last_status = time.time()
        self._done = {"full": 0, "early": 0, "failed": 0}
        self._best: tuple[float, str] | None = None

    def __getstate__(self):  # pickled with the Tuner: the print function stays behind
        state = self.__dict__.copy()
        state["_print"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._print = print

    def _say(self, text: str) -> None:
        self._print(text, flush=True)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.eta.start(trial.trial_id, time.time())
        self._say(f"{_name(trial)} started: {describe(trial.config)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("iteration") is not None:
            self.eta.result(trial.trial_id, int(result["iteration"]), time.time())

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.eta.finished(trial.trial_id)
        last = trial.last_result or {}
        it = int(last.get("iteration") or 0)
        dice = last.get("val_dice")
        score = f"val Dice {dice:.4f}" if isinstance(dice, float) and math.isfinite(dice) \
            else "no validation score"
        if it >= self.max_iterations:
            self._done["full"] += 1
            self._say(f"{_name(trial)} finished the full budget ({it} iterations): {score}")
        else:
            self._done["early"] += 1
            self._say(f"{_name(trial)} stopped by ASHA at {it} of {self.max_iterations} "
                      f"iterations: {score}")
        if isinstance(dice, float) and math.isfinite(dice) and it >= self.max_iterations \
                and (self._best is None or dice > self._best[0]):
            self._best = (dice, _name(trial))

    def on_trial_error(self, iteration, trials, trial, **info):
        self.eta.finished(trial.trial_id)
        self._done["failed"] += 1
        self._say(f"{_name(trial)} failed (see the closing note): {describe(trial.config)}")

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        if now - self._last_status < self.every_s:
            return
        self._last_status = now
        self._say(self.status(trials, now))

    def status(self, trials, now: float | None = None) -> str:
        running = sum(1 for t in trials if getattr(t, "status", "") == "RUNNING")
        d = self._done
        elapsed = int((now or time.time()) - self._started)
        best = f"; best val Dice {self._best[0]:.4f} ({self._best[1]})" if self._best else ""
        eta = self.eta.text(now or time.time(), self._started)
        return (f"[{self.phase} {clock(elapsed)}] {running} running, "
                f"{sum(d.values())} done ({d['full']} full budget, {d['early']} stopped early, "
                f"{d['failed']} failed){best}{eta}")


def clock(seconds: float) -> str:
    """``mm:ss`` (``h:mm:ss`` from an hour)."""
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else \
        f"{s // 60:02d}:{s % 60:02d}"


class Eta:
    """The phase's remaining time from its measured rate (module docstring).

    ``schedule``: trials, max_concurrent, grace, rf, asha, time_budget_s (the phase's plan)
    and, from the projection, seconds (of the phase), iterations (all trials together),
    after_s (what follows the phase). The rate is per trial: updates reported over the
    seconds trials ran (their starts included), times the trials that can run at once."""

    def __init__(self, max_iterations: int, schedule: dict):
        self.max_t, self.s = int(max_iterations), dict(schedule)
        self.at: dict[str, int] = {}  # trial -> last iteration reported
        self.since: dict[str, float] = {}  # trial -> time of its start / last result
        self.ended: set[str] = set()
        self.updates, self.busy = 0, 0.0  # updates reported, trial-seconds they took

    def start(self, trial: str, now: float) -> None:
        self.since.setdefault(trial, now)

    def result(self, trial: str, iteration: int, now: float) -> None:
        if trial in self.since:
            self.busy += max(0.0, now - self.since[trial])
            self.updates += max(0, iteration - self.at.get(trial, 0))
        self.since[trial] = now
        self.at[trial] = max(iteration, self.at.get(trial, 0))

    def finished(self, trial: str) -> None:
        self.ended.add(trial)

    def expected_total(self, iteration: int) -> float:
        """Expected final iteration of a trial now at ``iteration`` (ASHA: each rung ahead
        passed with probability 1 / rf)."""
        if not self.s.get("asha", True) or not self.s.get("grace"):
            return float(self.max_t)
        rf, rung = int(self.s["rf"]), int(self.s["grace"])
        rungs = []
        while rung < self.max_t:
            rungs.append(rung)
            rung *= rf
        marks = [r for r in rungs if r > iteration] + [self.max_t]
        total, p, pos = float(iteration), 1.0, iteration
        for m in marks:
            total += p * (m - pos)
            pos, p = m, p / rf
        return total

    def _pending(self) -> int:
        return max(0, int(self.s.get("trials") or 0) - len(self.since))

    def remaining_updates(self) -> float:
        running = [self.at.get(t, 0) for t in self.since if t not in self.ended]
        per_trial = self.s["iterations"] / max(1, self.s.get("trials", 1)) \
            if self.s.get("iterations") else self.expected_total(0)
        return sum(self.expected_total(it) - it for it in running) + self._pending() * per_trial

    def seconds(self, now: float, started: float) -> float | None:
        """Seconds left in the phase, None when nothing says yet."""
        left = None
        if self.updates > 0 and self.busy > 0:
            running = sum(1 for t in self.since if t not in self.ended)
            parallel = max(1, min(int(self.s.get("max_concurrent") or 1),
                                  running + self._pending()))
            left = self.remaining_updates() / (self.updates / self.busy * parallel)
        elif self.s.get("seconds"):
            left = max(0.0, float(self.s["seconds"]) - (now - started))
        if left is not None and self.s.get("time_budget_s"):
            left = min(left, max(0.0, float(self.s["time_budget_s"]) - (now - started)))
        return left

    def text(self, now: float, started: float) -> str:
        left = self.seconds(now, started)
        if left is None:
            return ""
        after = self.s.get("after_s")
        study = f" (study: ~{max(1, round((left + after) / 60))} min left)" \
            if after is not None else ""
        return f"; ETA {clock(left)}{study}"


def phase_line(plan) -> str:
    """The one line that replaces Optuna's and Ray's start-of-phase output."""
    stop = (f"ASHA from {plan.grace_period} iterations, reduction factor "
            f"{plan.reduction_factor}") if plan.early_stopping else "no early stopping"
    count = f"{plan.trials} trial(s)" if plan.time_budget_s is None else \
        f"trials until {plan.time_budget_s:.0f} s"
    return (f"phase {plan.phase}: {count} of {plan.iterations} iterations, "
            f"{plan.max_concurrent} at a time, {stop}; Optuna study {plan.optuna_study}, "
            f"Ray experiment {plan.exp_dir}")


#: lines Ray prints by itself at a phase's start (experiment box, where results go)
RAY_NOISE = ("╭", "│", "├", "╰", "View detailed results here:",
             "To visualize your results with TensorBoard")


class _Filtered(io.TextIOBase):
    """A stdout that drops Ray's start-of-phase lines (and the blank lines around them)."""

    def __init__(self, inner):
        self.inner, self._line = inner, ""

    def write(self, text: str) -> int:
        self._line += text
        *lines, self._line = self._line.split("\n")
        for line in lines:
            if line.strip() and not line.lstrip().startswith(RAY_NOISE):
                self.inner.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.inner.flush()


@contextlib.contextmanager
def quiet(verbose: int):
    """At verbosity 0: no Optuna info lines, no Ray experiment box, no Tune info log."""
    if verbose != 0:
        yield
        return
    import optuna

    loggers = [optuna.logging.get_logger("optuna"), logging.getLogger("ray.tune")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    out = sys.stdout
    sys.stdout = filtered = _Filtered(out)
    try:
        yield
    finally:
        if filtered._line.strip():
            out.write(filtered._line)
        sys.stdout = out
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def console_callbacks(label: str, iterations: int, verbose: int,
                      schedule: dict | None = None) -> list:
    """Our lines when Ray's own output is off (``verbose == 0``), else nothing (Ray's own
    tables at 1-2; nothing at all below 0: benchmarks that run many studies)."""
    return [ConsoleLines(label, iterations, schedule=schedule)] if verbose == 0 else []
