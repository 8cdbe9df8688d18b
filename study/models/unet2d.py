"""``unet2d``: the report's 2D U-Net on whole axial slices (~0.97 M params at base 32).

Simplified block (one Conv2d-BN-LeakyReLU per level), MaxPool2d down, bilinear
up-sampling, skip concatenation, 1x1 head. Default depth 3 (channels 32..256), which
matches the report's ~1 M parameters.
"""

from __future__ import annotations

from study.models.blocks import InterpUp, SingleConv
from study.models.skeleton import UNet


def _bilinear(dims: int, cin: int, cout: int) -> InterpUp:
    return InterpUp("bilinear", cin)


class UNet2D(UNet):
    dims = 2

    def __init__(self, in_channels: int, base_channels: int = 32, depth: int = 3):
        super().__init__(
            in_channels,
            base_channels,
            depth,
            block=SingleConv,
            up=_bilinear,
            stem=SingleConv(2, in_channels, base_channels),
        )
