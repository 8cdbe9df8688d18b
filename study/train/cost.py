"""What a model costs to use and to train, measured with the study's own code (issue 23).

* `measure_model` / `measure_checkpoint`: parameter count, seconds to predict one volume on
  the study grid (the inference training validates with: `study.evaluation.predictors`),
  and the peak memory of that prediction: CUDA's max allocated bytes on a GPU, the growth of
  the process's peak resident set (Linux ``VmHWM``, reset first through
  ``/proc/self/clear_refs``, after glibc's ``malloc_trim``) on a CPU; both above what was in use before the model was
  loaded, so it counts weights + activations. The global RNG states are left untouched (a
  trial measured mid-training trains on exactly as it would have).
* `time_training`: a short warm-up of a configuration: ``2 * steps`` training updates with
  an evaluation on the validation cases after each half; the second half gives the steady
  seconds per update and the seconds per evaluation (validation + checkpoint), what the
  study's cost projection (`study.tune.projection`) is built from.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import torch

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


def param_count(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _status_kb(key: str) -> int | None:
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so that memory freed by training does
    not hide what the prediction needs from the resident set size."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block above the level at its start, in MB (None if unmeasurable)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mb: float | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        _trim()
        try:  # "5" resets the peak resident set size (VmHWM) to the current one
            CLEAR_REFS.write_text("5")
        except OSError:
            pass
        self._base = _status_kb("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.mb = max(0.0, (peak - self._base) / 2**20)
            return
        peak = _status_kb("VmHWM")
        if peak is not None and self._base is not None:
            self.mb = max(0.0, (peak - self._base) / 1024.0)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


def _predict_seconds(model: torch.nn.Module, config, prep, case: str) -> float:
    from study.evaluation.predictors import model_predictor

    predict = model_predictor(model, config, prep)
    t = time.perf_counter()
    predict(case)  # returns a numpy array: the device work is finished
    return time.perf_counter() - t


def _record(model: torch.nn.Module, seconds: float, mem: PeakMemory) -> dict:
    dev = next(model.parameters()).device
    return {"params": param_count(model), "infer_s": seconds, "infer_peak_mb": mem.mb,
            "infer_device": device_name(dev)}


def measure_model(model: torch.nn.Module, config, prep, case: str) -> dict:
    """Cost of ``model`` (with its TrainConfig) predicting ``case`` of ``prep`` once:
    ``params``, ``infer_s``, ``infer_peak_mb`` (activations only: the model is loaded),
    ``infer_device``."""
    with PeakMemory(next(model.parameters()).device) as mem:
        seconds = _predict_seconds(model, config, prep, case)
    return _record(model, seconds, mem)


def measure_checkpoint(ckpt: str | Path, prep, case: str, device=None) -> dict:
    """`measure_model` of a checkpoint directory on ``device`` (default: cuda if any); the
    peak memory counts the weights too (loaded inside the measurement)."""
    from study.train.checkpoint import load_model
    from study.train.engine import resolve_device

    dev = resolve_device(device)
    devices = [dev.index if dev.index is not None else torch.cuda.current_device()] \
        if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # building a model draws from the RNG
        with PeakMemory(dev) as mem:
            model, config = load_model(ckpt, device=dev)
            seconds = _predict_seconds(model, config, prep, case)
        return _record(model, seconds, mem)


def time_training(config, prep, steps: int = 4, threads: int | None = None) -> dict:
    """Warm-up of ``config`` on ``prep``: seconds per training update (steady) and per
    evaluation (validation cases + checkpoint), with ``threads`` torch threads (a trial's
    CPUs; default: as set). ``config.iterations``/``eval_every`` are replaced."""
    import dataclasses

    from study.train.engine import train

    cfg = dataclasses.replace(config, iterations=2 * steps, eval_every=steps)
    marks: list[tuple[float, float]] = []  # (time of the report, ms per update before it)

    def on_report(iteration, metrics, ckpt) -> None:
        marks.append((time.perf_counter(), float(metrics.get("ms_per_iteration") or 0.0)))

    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    t0 = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=devices), \
                tempfile.TemporaryDirectory(prefix="study-warmup-") as work:
            train(cfg, prep, on_report, workdir=work)
    finally:
        torch.set_num_threads(old)
    (t1, _), (t2, ms2) = marks[0], marks[1]
    step_s = ms2 / 1000.0
    return {"step_s": step_s, "eval_s": max(0.0, (t2 - t1) - steps * step_s),
            "first_s": t1 - t0, "total_s": t2 - t0}
