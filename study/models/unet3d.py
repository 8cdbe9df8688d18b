"""``unet3d``: the original 3D U-Net of the report (64^3 patches, ~26.3 M params at base 32).

Two Conv3d-BN-LeakyReLU per level, MaxPool3d down, ConvTranspose3d up (keeping the
channels, as in Cicek et al.), skip concatenation, 1x1x1 head. Default depth 4: input conv level + 4
down-sampled levels (channels 32, 64, 128, 256, 512 at base 32).
"""

from __future__ import annotations

from study.models.blocks import DoubleConv, TransposedUp
from study.models.skeleton import UNet


def _transposed_keep(dims: int, cin: int, cout: int) -> TransposedUp:
    # As in Cicek et al. (2016): the 2x2x2 up-convolution keeps the channel count; the
    # first decoder conv reduces (c_{l+1} + c_l) -> c_l.
    return TransposedUp(dims, cin, cin)


class UNet3D(UNet):
    dims = 3

    def __init__(self, in_channels: int, base_channels: int = 32, depth: int = 4):
        super().__init__(
            in_channels,
            base_channels,
            depth,
            block=DoubleConv,
            up=_transposed_keep,
            stem=DoubleConv(3, in_channels, base_channels),
        )
