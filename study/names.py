"""The registry of names (no torch): architectures, base losses, LRDEHL variants, augment levels.

Everything that lists or orders these names asks here: the search-space checks
(`study.tune.params`), ``TrainConfig``, the ``python -m study.train`` CLI, the report's order and
colours. `study.models` and `study.losses` attach their implementations to these names
(and fail at import if one is missing). A new architecture is one file in ``study/models/``
plus one line here (`ARCHS`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str
    kind: str  # how it consumes data: "3d" (patches), "2d" (slices), "2.5d" (slice stacks)
    label: str  # the seed report's family: "3D", "2D", "hybrid"
    model: str  # "module:Class" under study.models (imported by study.models, with torch)
    default_base: int  # base channels at the report's settings
    default_depth: int  # 2x down-samplings


#: in display order: the seed's tables list 3D, then 2D, then the 2.5D hybrid.
#: A new architecture: its file in study/models/ and one line here.
ARCHS: dict[str, Arch] = {a.name: a for a in (
    Arch("unet3d", "3d", "3D", "unet3d:UNet3D", 32, 4),
    Arch("simplified3d", "3d", "3D", "simplified3d:SimplifiedUNet3D", 32, 3),
    Arch("unet2d", "2d", "2D", "unet2d:UNet2D", 32, 3),
    Arch("hybrid", "2.5d", "hybrid", "hybrid:HybridUNetX", 16, 3),
)}
ARCH_NAMES = tuple(ARCHS)
#: base losses (``loss``), in the order the CLI offers them; LRDEHL comes by ``switch_step``
LOSSES = ("sqdice", "dice", "bce")
LRDEHL_VARIANTS = ("mae", "mse")
#: training-time augmentation levels (``augment``), weakest first; their transforms are the
#: table ``study.data.augment.LEVELS``
AUGMENT_LEVELS = ("none", "light", "default", "heavy")


def lrdehl_loss_name(variant: str) -> str:
    """The loss-function key of an LRDEHL variant (``"mae"`` -> ``"lrdehl_mae"``)."""
    return f"lrdehl_{variant}"


def display_rank(arch: str) -> int:
    """Position of ``arch`` in the display order (unknown names last)."""
    return ARCH_NAMES.index(arch) if arch in ARCHS else len(ARCH_NAMES)
