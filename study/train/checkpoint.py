"""Checkpoints: a directory with ``model.pt`` and ``config.json`` (and ``metrics.json``).

``model.pt`` is a ``torch.save`` dict of plain data only (tensors, numbers, strings, lists,
tuples, dicts, None), format 2::

    {"format": 2, "arch", "in_phases", "base_channels", "model": state_dict,
     "optimizer": state_dict | None, "iteration": int, "rng": {...} | None,
     "sampler": {"batches": int} | None, "best": {...} | None}

It is read with ``torch.load(weights_only=True)``: a file that holds anything else (a
pickled object whose loading would run code) is refused with a `DataError` before anything
in it runs. Format 1 (this project before format 2) stored the numpy RNG state as a numpy
array; it still loads, with exactly numpy's array constructor allow-listed
(`torch.serialization.safe_globals`), nothing else.

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

from study.errors import ConfigError, DataError
from study.io import atomic_dir

FORMAT = 2
READABLE = (1, 2)  # formats this version loads
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


def rng_state() -> dict:
    """The RNG states of python, numpy and torch as plain data (weights-only loadable)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos),
                  int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
    np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
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
    payload = load_weights(model_path)
    config = TrainConfig.from_json(cfg_path.read_text(encoding="utf-8"))
    return payload, config


def _numpy_array_globals() -> list:
    """What a format-1 file needs to rebuild its numpy RNG keys: numpy's array constructor,
    the array and dtype classes. They build arrays; they run no code of the file's choosing."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    return [core.multiarray._reconstruct, np.ndarray, np.dtype,
            *(getattr(np.dtypes, n) for n in ("UInt32DType", "Int64DType", "Float64DType")
              if hasattr(np, "dtypes") and hasattr(np.dtypes, n))]


def load_weights(path: str | Path) -> dict:
    """``model.pt`` -> its payload dict, loaded as plain data only (``weights_only=True``).

    A file that is not plain weights (a pickle that would import or call anything beyond
    tensors and numpy arrays) -> `DataError`, and nothing in it runs; a damaged file or an
    unknown format -> `DataError` too."""
    import pickle

    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ""
        raise DataError(
            f"{path}: not a plain-weights checkpoint: it holds Python objects whose loading "
            f"could run code ({first}); refusing to open it. Use a model written by this "
            f"project (study.train, study.launch, study.apply.export), or re-save the weights "
            f"as plain tensors") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: damaged or not a torch checkpoint ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); train or export the model again") from None
    if not isinstance(payload, dict) or payload.get("format") not in READABLE:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise DataError(f"{path}: checkpoint format {got!r}, this version reads "
                        f"{' and '.join(map(str, READABLE))}; train or export it again")
    return payload


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
