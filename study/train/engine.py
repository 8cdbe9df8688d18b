"""The plain-torch training engine (no Ray): ``train``, ``evaluate``, ``load_model``.

``train(config, prep, on_report, workdir=...)`` trains one model for ``config.iterations``
updates and every ``eval_every`` updates (and after the last one) evaluates it on the
validation cases, whole volume per case, writes a checkpoint and calls
``on_report(iteration, metrics, checkpoint_dir)``. ``on_report`` may raise `StopTraining`
to end the run early and cleanly (a plain-loop equivalent of an ASHA stop).

Optimisation (SCIENCE.md "Optimisation"): Adam, betas (0.9, 0.99); the learning rate is
halved every ``config.halve_every`` updates (``config.halvings(step)``) and multiplied by ``lr_after_switch`` from
``switch_step`` on. L2 regularisation is the term ``l2/2 * sum(w**2)`` over the conv (and
linear) weights added to the objective (biases and normalisation parameters are not
penalised). It is applied through Adam's coupled ``weight_decay=l2`` on that parameter
group, whose update is exactly the gradient of that term, without computing the sum at
every step; the reported ``train_loss`` is the segmentation loss, and ``train_l2`` the
value of the L2 term at the report.

On CUDA the forward runs under bf16 autocast with channels-last memory; the loss is always
computed in float32. A non-finite loss raises `NonFiniteLoss` (a ``FloatingPointError``)
naming the iteration (1-based like the reports: iteration i is the i-th update); on CUDA the check runs every ``NAN_CHECK_EVERY`` updates to avoid a
device sync per step, so the named iteration is the first bad one within that window.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from study.errors import ConfigError
from study.evaluation.predictors import case_spacing, model_predictor
from study.train.batches import batch_stream
from study.train.checkpoint import (
    load_model,
    read_checkpoint,
    rng_state,
    seed_everything,
    set_rng_state,
    write_checkpoint,
)
from study.train.config import TrainConfig

__all__ = [
    "TrainConfig",
    "StopTraining",
    "NonFiniteLoss",
    "train",
    "preflight",
    "evaluate",
    "load_model",
    "summarise",
    "resolve_device",
]

Report = Callable[[int, dict, "Path | None"], None]
NAN_CHECK_EVERY = 50  # CUDA only; CPU checks every update
CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"


class StopTraining(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raise from ``on_report`` to end training after that report."""


class NonFiniteLoss(FloatingPointError):
    def __init__(self, iteration: int, value: float):
        super().__init__(f"non-finite loss at iteration {iteration} (loss = {value})")
        self.iteration = iteration


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train config key 'device' = {device!r}: CUDA is not available here")
    return dev


def evaluate(
    model: torch.nn.Module,
    config: TrainConfig,
    prep,
    case_ids,
    *,
    on_prediction: Callable[[str, np.ndarray], None] | None = None,
) -> list[dict]:
    """Whole-volume metrics per case -> rows ``{"case", "metric", "value"}``.

    Runs on the model's device. ``on_prediction(case_id, prob)`` (optional) receives each
    probability map, e.g. to write it with `study.evaluation.inference.write_prediction_nifti`.
    """
    from study.evaluation.metrics import case_metrics

    predict = model_predictor(model, config, prep)
    rows: list[dict] = []
    for case in case_ids:
        prob = predict(case)
        truth = np.asarray(prep.mask(case))
        m = case_metrics(prob, truth, case_spacing(prep, case), threshold=config.threshold)
        rows.extend({"case": case, "metric": k, "value": float(v)} for k, v in m.items())
        if on_prediction is not None:
            on_prediction(case, prob)
    return rows


def summarise(rows: list[dict], prefix: str = "val_") -> dict[str, float]:
    """Mean over cases of each metric (non-finite values skipped; NaN when none is finite)."""
    by_metric: dict[str, list[float]] = {}
    for r in rows:
        by_metric.setdefault(r["metric"], []).append(float(r["value"]))
    out = {}
    for name, vals in by_metric.items():
        finite = [v for v in vals if math.isfinite(v)]
        out[prefix + name] = float(np.mean(finite)) if finite else float("nan")
    return out


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Adam:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    rest = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.l2}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.Adam(groups, lr=config.lr, betas=(0.9, 0.99))


def l2_term(model: torch.nn.Module, l2: float) -> float:
    with torch.no_grad():
        s = sum(float(p.float().pow(2).sum()) for p in model.parameters() if p.ndim > 1)
    return 0.5 * l2 * s


class _LossLog:
    """Collects per-update losses on the device; syncs only at ``flush``."""

    def __init__(self, device: torch.device):
        self.every = NAN_CHECK_EVERY if device.type == "cuda" else 1
        self.pending: list[tuple[int, torch.Tensor]] = []
        self.total, self.count = 0.0, 0

    def add(self, iteration: int, loss: torch.Tensor) -> None:
        self.pending.append((iteration, loss.detach()))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        vals = torch.stack([v for _, v in self.pending]).float().cpu().tolist()
        for (it, _), v in zip(self.pending, vals, strict=True):
            if not math.isfinite(v):
                raise NonFiniteLoss(it, v)
        self.total += sum(vals)
        self.count += len(vals)
        self.pending.clear()

    def take_mean(self) -> float:
        self.flush()
        mean = self.total / self.count if self.count else float("nan")
        self.total, self.count = 0.0, 0
        return mean


def preflight(config: TrainConfig, prep) -> torch.device:
    """Every check `train` makes before training, without building anything: the config
    against the data (phases), the device, and the patch/grid sizes against the
    architecture. Raises ConfigError; returns the device training would use."""
    from study.models import model_info

    config.check(phases_available=list(prep.phases))
    dev = resolve_device(config.device)
    info = model_info(config.arch)
    _check_sizes(2**info.default_depth, info.kind, config, _fixed_grid(prep))
    return dev


def _fixed_grid(prep):
    return prep.grid if getattr(prep, "fixed_grid", True) else None


def _check_sizes(m: int, kind: str, config: TrainConfig, grid) -> None:
    """3D patches, and the in-plane size of a fixed grid (``grid`` None: the cases have their
    own grids and 2D windows are planned as multiples of ``m``), must be multiples of m."""
    if kind != "3d" and grid is None:
        return
    sizes = config.patch if kind == "3d" else tuple(grid)[:2]
    key = "patch" if kind == "3d" else "grid (X, Y)"
    if any(int(s) % m for s in sizes):
        raise ConfigError(
            f"{key} {tuple(sizes)} does not suit arch {config.arch!r}: every size must be a "
            f"multiple of {m}; pick another {'patch' if kind == '3d' else 'grid'}"
        )


@dataclass
class _Session:
    """What one `train` call works with (built by `_build`)."""

    config: TrainConfig
    prep: object
    dev: torch.device
    kind: str
    model: torch.nn.Module
    optimizer: torch.optim.Adam
    loss_fn: Callable
    log: _LossLog
    ckpt_dir: Path
    best_dir: Path
    best: dict = field(default_factory=lambda: {"val_dice": -math.inf, "iteration": None})


def train(
    config: TrainConfig,
    prep,
    on_report: Report | None = None,
    *,
    resume_from: str | Path | None = None,
    workdir: str | Path,
) -> dict:
    """Train, evaluating and reporting every ``eval_every`` updates; return the last metrics.

    Checkpoints go to ``workdir/checkpoint`` (latest, replaced at each report) and
    ``workdir/best`` (weights of the best ``val_dice`` so far, with its metrics.json). The
    returned dict is the last report's metrics plus ``checkpoint_dir``, ``best_dir``,
    ``best_val_dice``, ``best_iteration``. After a resume, ``best_val_dice`` covers the whole
    run but ``workdir/best`` only appears when this part of the run beat it (``best_dir``
    is None otherwise). Resuming a checkpoint that already reached ``iterations`` trains
    nothing and returns the checkpoint's metrics.
    """
    s = _build(config, prep, Path(workdir))
    start, restored_rng = 0, None
    if resume_from is not None:
        start, restored_rng = _restore(s, Path(resume_from))
        if start >= config.iterations:  # nothing left to do: hand back the stored metrics
            return _finished_result(Path(resume_from), s.best)
    batches = _batches(s, start)
    if restored_rng is not None:
        set_rng_state(restored_rng)
    metrics: dict = {}
    t_last, it_last = time.perf_counter(), start
    s.model.train()
    try:
        for step in range(start, config.iterations):
            lr = _update(s, next(batches), step)
            done = step + 1
            if done % config.eval_every and done != config.iterations:
                continue
            metrics = _report(s, done, lr, since=(t_last, it_last))
            if on_report is not None:
                on_report(done, metrics, s.ckpt_dir)
            t_last, it_last = time.perf_counter(), done
    except StopTraining:
        pass
    finally:
        del batches  # shuts down DataLoader workers
    return {**metrics, "checkpoint_dir": s.ckpt_dir if s.ckpt_dir.exists() else None,
            "best_dir": s.best_dir if s.best_dir.exists() else None,
            "best_val_dice": s.best["val_dice"], "best_iteration": s.best["iteration"]}


def _build(config: TrainConfig, prep, workdir: Path) -> _Session:
    """Checks, seeding, the model on its device, the optimizer and the loss schedule."""
    from study.losses import LossSchedule
    from study.models import build_model, model_kind

    dev = preflight(config, prep)
    workdir.mkdir(parents=True, exist_ok=True)
    kind = model_kind(config.arch)
    seed_everything(config.seed)
    model = build_model(config.arch, len(config.phases), config.base_channels)
    _check_sizes(int(getattr(model, "size_multiple", 1)), kind, config, _fixed_grid(prep))
    model.to(dev)
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last_3d if kind == "3d" else torch.channels_last)
    loss_fn = LossSchedule(base=config.loss, switch_step=config.switch_step,
                           lrdehl=config.lrdehl, budget=config.iterations)
    return _Session(config=config, prep=prep, dev=dev, kind=kind, model=model,
                    optimizer=_optimizer(model, config), loss_fn=loss_fn, log=_LossLog(dev),
                    ckpt_dir=workdir / CHECKPOINT_DIR, best_dir=workdir / BEST_DIR)


def _restore(s: _Session, resume_from: Path) -> tuple[int, dict | None]:
    """Load a checkpoint into the session: (iteration reached, its RNG state)."""
    payload, _ = read_checkpoint(resume_from)
    config = s.config
    if payload["arch"] != config.arch or payload["in_phases"] != len(config.phases):
        raise ConfigError(
            f"checkpoint {resume_from} holds arch {payload['arch']!r} with "
            f"{payload['in_phases']} phase(s); the config asks for {config.arch!r} with "
            f"{len(config.phases)}: resume with the checkpoint's config.json"
        )
    s.model.load_state_dict(payload["model"])
    if payload.get("optimizer") is not None:
        s.optimizer.load_state_dict(payload["optimizer"])
    s.best = payload.get("best") or s.best
    return int(payload["iteration"]), payload.get("rng")


def _batches(s: _Session, start: int):
    """The training batch stream, positioned after ``start`` batches."""
    from study.data.samplers import make_sampler, slice_patch

    c = s.config
    dataset = make_sampler(s.kind, s.prep, list(s.prep.split["train"]), list(c.phases),
                           seed=c.seed, patch=tuple(c.patch), empty_fraction=c.empty_fraction,
                           slice_patch=slice_patch(s.prep, getattr(s.model, "size_multiple", 1)))
    if c.augment != "none":  # training items only: validation and test never augment
        from study.data.augment import Augmented

        dataset = Augmented(dataset, c.augment, s.kind, seed=c.seed)
    return batch_stream(dataset, c.batch_size, c.seed, start_batch=start,
                        num_workers=c.num_workers, pin_memory=s.dev.type == "cuda")


def _update(s: _Session, batch, step: int) -> float:
    """One optimisation step at 0-based ``step``; returns the learning rate used."""
    lr = s.config.lr_at(step)
    for g in s.optimizer.param_groups:
        g["lr"] = lr
    x, y = batch
    x = x.to(s.dev, non_blocking=True)
    y = y.to(s.dev, non_blocking=True)
    cuda = s.dev.type == "cuda"
    if cuda:
        x = x.contiguous(memory_format=torch.channels_last_3d if s.kind == "3d"
                         else torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
        logits = s.model(x)
    loss = s.loss_fn(logits.float(), y.float(), step)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    s.optimizer.step()
    s.log.add(step + 1, loss)
    return lr


def _report(s: _Session, done: int, lr: float, since: tuple[float, int]) -> dict:
    """Evaluate on the validation cases, write the checkpoints; the report's metrics."""
    train_loss = s.log.take_mean()
    ms_per_it = 1000.0 * (time.perf_counter() - since[0]) / max(1, done - since[1])
    rows = evaluate(s.model, s.config, s.prep, list(s.prep.split["val"]))
    metrics = {"iteration": done, **summarise(rows, "val_"), "train_loss": train_loss,
               "train_l2": l2_term(s.model, s.config.l2), "lr": lr, "nan_loss": False,
               "ms_per_iteration": ms_per_it, "per_case": rows}
    metrics.setdefault("val_dice", float("nan"))
    vd = metrics["val_dice"]
    if math.isfinite(vd) and vd > s.best["val_dice"]:
        s.best = {"val_dice": vd, "iteration": done}
        write_checkpoint(s.best_dir, model=s.model, config=s.config, iteration=done,
                         metrics=metrics)
    metrics["best_val_dice"] = s.best["val_dice"]
    write_checkpoint(s.ckpt_dir, model=s.model, config=s.config, iteration=done,
                     optimizer=s.optimizer, rng=rng_state(), sampler={"batches": done},
                     best=s.best, metrics=metrics)
    s.model.train()
    return metrics


def _finished_result(ckpt: Path, best: dict) -> dict:
    import json

    mpath = ckpt / "metrics.json"
    metrics = json.loads(mpath.read_text(encoding="utf-8")) if mpath.is_file() else {}
    metrics.update(checkpoint_dir=ckpt, best_dir=None, best_val_dice=best["val_dice"],
                   best_iteration=best["iteration"])
    return metrics


def copy_checkpoint(src: str | Path, dst: str | Path) -> Path:
    """Copy a checkpoint directory (e.g. ``best``) to ``dst``, replacing it."""
    from study.io import atomic_dir

    with atomic_dir(dst) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return Path(dst)
