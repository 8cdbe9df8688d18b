"""The registry of names (no torch): architectures, base losses, LRDEHL variants.

Everything that lists or orders these names asks here: the search-space checks
(`study.tune.params`), ``TrainConfig``, the ``study.train`` CLI, the report's order and
colours. `study.models` and `study.losses` attach their implementations to these names
(and fail at import if one is missing). A new architecture is one file in ``study/models/``
plus one line here and one in ``study.models.MODELS``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str
    kind: str  # how it consumes data: "3d" (patches), "2d" (slices), "2.5d" (slice stacks)
    label: str  # the seed report's family: "3D", "2D", "hybrid"


#: in display order: the seed's tables list 3D, then 2D, then the 2.5D hybrid
ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("unet3d", "3d", "3D"),
    Arch("simplified3d", "3d", "3D"),
    Arch("unet2d", "2d", "2D"),
    Arch("hybrid", "2.5d", "hybrid"),
)}
ARCH_NAMES = tuple(ARCHS)
#: base losses (``loss``), in the order the CLI offers them; LRDEHL comes by ``switch_step``
LOSSES = ("sqdice", "dice", "bce")
LRDEHL_VARIANTS = ("mae", "mse")


def lrdehl_loss_name(variant: str) -> str:
    """The loss-function key of an LRDEHL variant (``"mae"`` -> ``"lrdehl_mae"``)."""
    return f"lrdehl_{variant}"


def display_rank(arch: str) -> int:
    """Position of ``arch`` in the display order (unknown names last)."""
    return ARCH_NAMES.index(arch) if arch in ARCHS else len(ARCH_NAMES)
