"""Models: takes an architecture name and the number of phases, gives a torch module (the
U-Net family of the report; one file per architecture, registered in `study.names.ARCHS`).

``MODELS[name] -> ModelInfo(name, kind, cls, default_base, default_depth)``;
``build_model(arch, in_phases, base_channels=None, depth=None)`` builds one;
``model_kind(arch)`` says how it consumes data (``"3d"``, ``"2d"`` or ``"2.5d"``).

``depth`` is the number of 2x down-samplings; inputs must have spatial sizes that are
multiples of ``2**depth`` (``model.size_multiple``). Defaults per architecture are chosen
so the parameter counts at the report's settings match its figures (see each module).

Parameter counts with one phase at the default settings (``tests/models`` pins them):
unet3d 26,321,473 (base 32, depth 4); simplified3d 2,905,345 (base 32, depth 3);
unet2d 969,409 (base 32, depth 3); hybrid 1,108,289 (base 16, depth 3).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from study.errors import ConfigError
from study.models.hybrid import SLICES
from study.names import ARCHS


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: str  # "3d" | "2d" | "2.5d"
    cls: type[nn.Module]
    default_base: int
    default_depth: int

    def in_channels(self, in_phases: int) -> int:
        """Input channels for ``in_phases`` phases (2.5D stacks 3 slices per phase)."""
        return in_phases * SLICES if self.kind == "2.5d" else in_phases


def _model_class(path: str) -> type[nn.Module]:
    import importlib

    module, cls = path.split(":")
    return getattr(importlib.import_module(f"study.models.{module}"), cls)


#: every architecture of the registry `study.names.ARCHS`, with its class
MODELS: dict[str, ModelInfo] = {
    a.name: ModelInfo(a.name, a.kind, _model_class(a.model), a.default_base, a.default_depth)
    for a in ARCHS.values()
}


class UnknownArchError(ConfigError, KeyError):
    """An architecture name that is not in ``MODELS`` (a KeyError and a ConfigError)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def model_info(arch: str) -> ModelInfo:
    try:
        return MODELS[arch]
    except (KeyError, TypeError):
        raise UnknownArchError(
            f"unknown architecture {arch!r} (key 'arch'); known: {', '.join(MODELS)}"
        ) from None


def model_kind(arch: str) -> str:
    return model_info(arch).kind


def build_model(
    arch: str, in_phases: int, base_channels: int | None = None, depth: int | None = None
) -> nn.Module:
    """Build ``arch`` for ``in_phases`` MRI phases; ``None`` picks the architecture default."""
    info = model_info(arch)
    if not isinstance(in_phases, int) or in_phases < 1:
        raise ConfigError(
            f"in_phases must be a positive integer (number of phases), got {in_phases!r}"
        )
    base = info.default_base if base_channels is None else base_channels
    if not isinstance(base, int) or base < 1:
        raise ConfigError(f"key 'base_channels' must be a positive integer, got {base!r}")
    dep = info.default_depth if depth is None else depth
    if not isinstance(dep, int) or dep < 1:
        raise ConfigError(f"key 'depth' must be a positive integer, got {dep!r}")
    return info.cls(info.in_channels(in_phases), base_channels=base, depth=dep)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "MODELS",
    "ModelInfo",
    "UnknownArchError",
    "build_model",
    "count_parameters",
    "model_info",
    "model_kind",
]
