"""``simplified3d``: the report's SimplifiedUNet (3D, one conv per level, ~2.9 M params at base 32).

One Conv3d-BN-LeakyReLU per level, MaxPool3d down, parameter-free nearest up-sampling,
skip concatenation, 1x1x1 head. Default depth 3 (channels 32, 64, 128, 256 at base 32):
the report's ~2 M figure rules out a fifth level (which would give ~11.7 M).
"""

from __future__ import annotations

from study.models.blocks import InterpUp, SingleConv
from study.models.skeleton import UNet


def _nearest(dims: int, cin: int, cout: int) -> InterpUp:
    return InterpUp("nearest", cin)


class SimplifiedUNet3D(UNet):
    dims = 3

    def __init__(self, in_channels: int, base_channels: int = 32, depth: int = 3):
        super().__init__(
            in_channels,
            base_channels,
            depth,
            block=SingleConv,
            up=_nearest,
            stem=SingleConv(3, in_channels, base_channels),
        )
