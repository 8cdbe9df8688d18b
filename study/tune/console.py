"""A quiet console for a phase study: one line per trial event and a short status line.

Ray's own output (a boxed table per trial start and result) is off by default
(``verbose=0``); this callback prints instead::

    trial 0003 started: hybrid, lr 1.2e-03, l2 3.4e-05, base_channels 16, loss sqdice
    trial 0003 stopped by ASHA at 300 of 1500 iterations: val Dice 0.6120
    trial 0004 finished the full budget (1500 iterations): val Dice 0.8123
    [arterial 04:10] 2 running, 6 done (2 full budget, 4 stopped early, 0 failed); best val Dice 0.8123 (trial 0004)

``python -m study.launch -v`` brings Ray's boxes back (``-vv``: every result too).
"""

from __future__ import annotations

import math
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
                 print_fn=print):
        self.phase, self.max_iterations, self.every_s = phase, int(max_iterations), every_s
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
        self._say(f"{_name(trial)} started: {describe(trial.config)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
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
        return (f"[{self.phase} {elapsed // 60:02d}:{elapsed % 60:02d}] {running} running, "
                f"{sum(d.values())} done ({d['full']} full budget, {d['early']} stopped early, "
                f"{d['failed']} failed){best}")


def console_callbacks(label: str, iterations: int, verbose: int) -> list:
    """Our lines when Ray's own output is off (``verbose == 0``), else nothing (Ray's own
    tables at 1-2; nothing at all below 0: benchmarks that run many studies)."""
    return [ConsoleLines(label, iterations)] if verbose == 0 else []
