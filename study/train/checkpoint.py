"""Checkpoints: a directory with ``model.pt`` and ``config.json`` (and ``metrics.json``).

``model.pt`` is a ``torch.save`` dict::

    {"format": 1, "arch", "in_phases", "base_channels", "model": state_dict,
     "optimizer": state_dict | None, "iteration": int, "rng": {...} | None,
     "sampler": {"batches": int} | None, "best": {...} | None}

Training checkpoints carry everything needed to continue bit-for-bit on CPU (optimizer,
RNG states of python/numpy/torch, batches drawn); "best model" directories carry only the
weights. Directories are written under a temporary name and renamed, so a reader never sees
a half-written checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from study.errors import ConfigError
from study.io import atomic_dir

FORMAT = 1
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_checkpoint(
    directory: str | Path,
    *,
    model: torch.nn.Module,
    config,
    iteration: int,
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict | None = None,
    sampler: dict | None = None,
    best: dict | None = None,
    metrics: dict | None = None,
) -> Path:
    """Write a checkpoint directory atomically (replacing an existing one)."""
    directory = Path(directory)
    payload = {
        "format": FORMAT,
        "arch": config.arch,
        "in_phases": len(config.phases),
        "base_channels": config.base_channels,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "iteration": int(iteration),
        "rng": rng,
        "sampler": sampler,
        "best": best,
    }
    with atomic_dir(directory) as tmp:
        torch.save(payload, tmp / MODEL_FILE)
        (tmp / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
        if metrics is not None:
            text = json.dumps(metrics, indent=2, sort_keys=True, default=_json_default)
            (tmp / METRICS_FILE).write_text(text, encoding="utf-8")
    return directory


def read_checkpoint(directory: str | Path) -> tuple[dict, object]:
    """Return ``(payload, TrainConfig)`` from a checkpoint directory."""
    from study.train.config import TrainConfig

    directory = Path(directory)
    model_path, cfg_path = directory / MODEL_FILE, directory / CONFIG_FILE
    for p in (model_path, cfg_path):
        if not p.is_file():
            raise ConfigError(
                f"checkpoint {directory}: {p.name} is missing; pass a directory written by "
                "study.train.engine.train (it holds model.pt and config.json)"
            )
    payload = torch.load(model_path, map_location="cpu", weights_only=False)
    if payload.get("format") != FORMAT:
        raise ConfigError(f"checkpoint {model_path}: unknown format {payload.get('format')!r}")
    config = TrainConfig.from_json(cfg_path.read_text(encoding="utf-8"))
    return payload, config


def load_model(directory: str | Path, device: str | torch.device | None = None):
    """Rebuild the model of a checkpoint (eval mode) -> ``(model, TrainConfig)``."""
    from study.models import build_model

    payload, config = read_checkpoint(directory)
    model = build_model(payload["arch"], payload["in_phases"], payload["base_channels"])
    model.load_state_dict(payload["model"])
    if device is not None:
        model.to(device)
    model.eval()
    return model, config
