"""Fault injector for the fault suite (tests/faults), loaded through ``PYTHONPATH``.

A subprocess started with this folder first on ``PYTHONPATH`` and ``STUDY_FAULTS`` set to
a JSON object imports this module at interpreter start-up, and so does every Ray worker
it starts (they inherit the environment). It wraps `study.tune.fake.train` so that the
trial with index ``i`` (the trial counter, ``seed % 1000`` of its training kwargs) meets
the fault ``plan[str(i)]`` at its second evaluation (trial indices start at 1):

* ``"raise"``: ``RuntimeError`` (a bug in the trial);
* ``"oom"``: ``torch.OutOfMemoryError`` (a trial exceeding its GPU memory budget);
* ``"killed"``: SIGKILL of the trial's own process (the kernel / Ray OOM killer);
* ``"nan_metric"``: from then on the trial *reports* NaN validation Dice (mean and per
  case) instead of raising.

``STUDY_FAULTS_LOG`` (optional) gets one line ``index fault`` per injected fault.
"""

import json
import os

_PLAN = os.environ.get("STUDY_FAULTS")

if _PLAN:
    import signal

    import study.tune.fake as _fake

    _plan = json.loads(_PLAN)
    _orig = _fake.train

    def _note(index, fault):
        log = os.environ.get("STUDY_FAULTS_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"{index} {fault}\n")

    def train(kw, options, val_cases, on_report, **kwargs):
        index = int(kw["seed"]) % 1000
        fault = _plan.get(str(index))
        if fault is None:
            return _orig(kw, options, val_cases, on_report, **kwargs)
        seen = []

        def report(iteration, metrics, ckpt):
            seen.append(iteration)
            if fault == "nan_metric" and len(seen) >= 2:
                metrics = dict(metrics, val_dice=float("nan"), per_case=[
                    dict(r, value=float("nan")) if r["metric"] == "dice" else r
                    for r in metrics.get("per_case") or []])
            if len(seen) == 2:
                _note(index, fault)
                if fault == "raise":
                    raise RuntimeError(f"injected fault in trial {index}")
                if fault == "oom":
                    import torch

                    raise torch.OutOfMemoryError(
                        "CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
                if fault == "killed":
                    os.kill(os.getpid(), signal.SIGKILL)
            on_report(iteration, metrics, ckpt)

        return _orig(kw, options, val_cases, report, **kwargs)

    _fake.train = train
