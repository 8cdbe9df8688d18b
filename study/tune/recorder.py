"""Driver-side Ray Tune callback that records every result into the run's parquet tables.

It is pickled with the Tuner (``tuner.pkl``) and comes back on ``Tuner.restore``; it holds
only plain settings and a :class:`study.results.ResultsStore`, whose flush merges into what
is on disk, so a restored copy continues the same tables.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ray import tune

from study.results import ResultsStore, read_trials
from study.tune.searcher import searched_params
from study.tune.trainable import FINISHED_FILE, ROWS_FILE, SCALARS

MEAN_METRICS = {"val_dice": ("val", "dice"), "val_precision": ("val", "precision"),
                "val_recall": ("val", "recall"), "train_loss": ("train", "loss")}


def error_reason(text: str | None) -> str:
    """The last meaningful line of a Ray error trace (``FloatingPointError: NaN loss ...``)."""
    if not text:
        return "error (no trace recorded)"
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ("Error" in ln or "Exception" in ln) and ":" in ln and not ln.startswith("File "):
            return ln[:500]
    return lines[-1][:500] if lines else "error"


def _means(base: dict, rows: list[dict]) -> list[dict]:
    """``case == "mean"`` rows over the cases, finite values only."""
    by: dict[str, list[float]] = {}
    for r in rows:
        if r["value"] is not None:
            by.setdefault(r["metric"], []).append(r["value"])
    return [{**base, "split": "val", "case": "mean", "metric": m, "value": sum(v) / len(v)}
            for m, v in by.items() if v]


def _finite(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def mark_recorded(trial, info: dict) -> None:
    """Write ``FINISHED_FILE`` into the trial's folder on storage (see trainable.py)."""
    storage = getattr(trial, "storage", None)
    if storage is None or not trial.path:
        return
    fs = storage.storage_filesystem
    fs.create_dir(trial.path, recursive=True)
    tmp = f"{trial.path}/.{FINISHED_FILE}.tmp"
    with fs.open_output_stream(tmp) as f:
        f.write(json.dumps(info).encode("utf-8"))
    fs.move(tmp, f"{trial.path}/{FINISHED_FILE}")


def trial_row(*, study: str, phase: str, trial_id: str, config: dict, last: dict | None,
              max_budget: int, best: float | None, checkpoint: str | None,
              error: str | None, stopped_by: str = "ASHA") -> dict:
    last = last or {}
    params = searched_params(config)
    budget = int(last.get("iteration") or 0)
    dice = last.get("val_dice")
    if error is not None:
        status, reason = "ERROR", error_reason(error)
    elif dice is not None and _finite(dice) is None:
        # Optuna marks it FAIL too (searcher.py): no usable score, not a finished trial
        status, reason = "ERROR", f"non-finite validation Dice ({dice}) at iteration {budget}"
    elif budget >= max_budget:
        status, reason = "TERMINATED", "full budget"
    else:
        status, reason = "STOPPED", f"stopped by {stopped_by} at iteration {budget}"
    final = _finite(last.get("val_dice"))
    best = _finite(best)
    return {
        "study": study, "trial": trial_id, "arch": str(params.get("arch")), "phase": phase,
        "config": json.dumps(params, sort_keys=True, default=str), "budget": budget,
        "max_budget": int(max_budget), "status": status, "stop_reason": reason,
        "best_val_dice": best if best is not None else final,
        "wall_s": float(last.get("time_total_s") or 0.0), "final_val_dice": final,
        "checkpoint": checkpoint,
        "node": "/".join(str(last[k]) for k in ("hostname", "node_ip") if last.get(k)) or None,
        **_cost(last),
    }


def _cost(last: dict) -> dict:
    """The model's cost columns from the trial's last result (`trainable.COST_KEYS`)."""
    params = _finite(last.get("params"))
    device = last.get("infer_device")
    return {"params": int(params) if params is not None else None,
            "infer_s": _finite(last.get("infer_s")),
            "infer_peak_mb": _finite(last.get("infer_peak_mb")),
            "infer_device": str(device) if device is not None else None}


class Recorder(tune.Callback):
    def __init__(self, run_dir: str | Path, study: str, phase: str, max_budget: int,
                 flush_every_s: float = 5.0, deadline: float | None = None):
        self.store = ResultsStore(run_dir)
        self.deadline = deadline  # time.time() when the phase's time budget ends
        self.study, self.phase, self.max_budget = study, phase, int(max_budget)
        self.flush_every_s = flush_every_s
        self._last_flush = 0.0
        self._recorded_ids: set[str] | None = None

    # ------------------------------------------------------------------ rows
    def _base(self, trial, iteration: int) -> dict:
        return {"study": self.study, "trial": trial.trial_id,
                "arch": str(trial.config.get("arch")), "phase": self.phase,
                "iteration": int(iteration)}

    def _rows(self, trial, it: int, scalars: dict, per_case: list[dict]) -> list[dict]:
        """Per-case rows, their means (``case "mean"``) and the train loss of one evaluation."""
        base = self._base(trial, it)
        rows = [{**base, "split": "val", "case": str(r["case"]), "metric": str(r["metric"]),
                 "value": _finite(r["value"])} for r in per_case]
        rows += _means(base, rows)
        have = {(r["split"], r["metric"]) for r in rows}
        rows += [{**base, "split": split, "case": "mean", "metric": metric, "value": v}
                 for key, (split, metric) in MEAN_METRICS.items()
                 if (split, metric) not in have and (v := _finite(scalars.get(key))) is not None]
        return rows

    def _ingest(self, trial, checkpoint_path: str) -> None:
        """Rows of the evaluation stored with a checkpoint (``rows.json``); then flush."""
        path = Path(checkpoint_path) / ROWS_FILE
        if not path.is_file():
            return
        data = json.loads(path.read_text(encoding="utf-8"))
        self.store.add_metrics(self._rows(trial, int(data["iteration"]),
                                          data.get("scalars") or {}, data.get("rows") or []))
        self.flush()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "_rows_json" in result and result.get("iteration") is not None:
            # an evaluation without checkpoint: its rows came in the result
            self.store.add_metrics(self._rows(trial, int(result["iteration"]), result,
                                              json.loads(result["_rows_json"])))
            self._maybe_flush()

    def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
        self._ingest(trial, checkpoint.path)

    def on_trial_start(self, iteration, trials, trial, **info):
        # a trial resumed after a driver restart: its last evaluation may never have been
        # written by the driver that died (the rows are idempotent: dedupe on the key)
        if trial.checkpoint is not None:
            self._ingest(trial, trial.checkpoint.path)

    def _recorded(self) -> set[str]:
        """Trials of this study with a row in ``trials.parquet`` (read once, then kept)."""
        if self._recorded_ids is None:
            t = read_trials(self.store.run_dir)
            self._recorded_ids = set(t.filter(t["study"] == self.study)["trial"].to_list())
        return self._recorded_ids

    def __getstate__(self):  # pickled with the Tuner: read the table afresh after a restore
        return {**self.__dict__, "_recorded_ids": None}

    def _trial(self, trial, error: str | None, last: dict | None = None) -> None:
        if trial.trial_id in self._recorded():
            # recorded before a driver restart (Optuna was told then too): the first record
            # stands; Ray only ended the trial again because its saved state predates it
            return
        best = None
        analysis = getattr(trial, "metric_analysis", None) or {}
        if "val_dice" in analysis:
            best = analysis["val_dice"].get("max")
        ckpt = trial.checkpoint
        row = trial_row(
            study=self.study, phase=self.phase, trial_id=trial.trial_id, config=trial.config,
            last=last or trial.last_result, max_budget=self.max_budget, best=best,
            checkpoint=ckpt.path if ckpt is not None else None, error=error,
            stopped_by=self._stopper())
        # if the driver dies before Ray's next experiment snapshot, a restore would resume
        # this trial: the marker makes it end at once, whichever checkpoint the snapshot
        # names (written before the row, so a recorded trial always has its marker)
        last = last or trial.last_result or {}
        mark_recorded(trial, {"status": row["status"], "budget": row["budget"],
                              "result": {k: last[k] for k in SCALARS if k in last}})
        self.store.add_trial(row)
        self._recorded().add(trial.trial_id)
        self.flush()

    def _stopper(self) -> str:
        """Who ends a trial before its full budget: the time budget once it has passed."""
        deadline = getattr(self, "deadline", None)  # a Recorder pickled by an older version
        return "the time budget" if deadline and time.time() >= deadline - 1.0 else "ASHA"

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._trial(trial, None)

    def on_trial_error(self, iteration, trials, trial, **info):
        text = None
        try:  # the local error file is written before this callback; storage later
            local = trial.error_file
            text = Path(local).read_text() if local and Path(local).is_file() else \
                trial.get_error()
        except Exception:  # pragma: no cover - unreadable error file
            pass
        self._trial(trial, str(text) if text else "trial failed")

    def on_experiment_end(self, trials, **info):
        # Tune stopped at the time budget: it tells no callback about the trials it stops,
        # so record those that evaluated at least once, at the budget of their latest
        # registered checkpoint (its rows are ingested; a last result whose checkpoint Tune
        # never registered has no model behind it and is left out)
        if getattr(self, "deadline", None) and time.time() >= self.deadline - 1.0:
            for t in trials:
                ckpt = t.checkpoint
                rows = Path(ckpt.path) / ROWS_FILE if ckpt is not None else None
                if t.status == "ERROR" or rows is None or not rows.is_file():
                    continue
                data = json.loads(rows.read_text(encoding="utf-8"))
                self._ingest(t, ckpt.path)
                last = {**(t.last_result or {}), **(data.get("scalars") or {}),
                        "iteration": int(data["iteration"])}
                self._trial(t, None, last=last)
        self.flush()

    # ------------------------------------------------------------------ writing
    def _maybe_flush(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        if self.store.pending:
            self.store.flush()
        self._last_flush = time.monotonic()
