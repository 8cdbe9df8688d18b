"""``hybrid``: HybridUNetX, the report's 2.5D model (~1.1 M params at base 16).

Input: 3 consecutive axial slices of every phase stacked as channels (phase-major,
slice-minor, so ``in_channels = 3 * phases``); output: the logit map of the centre slice.
ResNet-v2 pre-activation residual blocks (BN-ReLU-Conv x 2 + identity, 1x1 projection when
the channel count changes, taken from the shared BN-ReLU pre-activation), 3 stacked blocks at the deepest stage, MaxPool2d down,
bilinear up, skip concatenation. Stem = 3x3 input conv + one residual block at full
resolution; a final BN-ReLU precedes the 1x1 head (the pre-activation blocks leave their
output un-normalised). Default depth 3 (channels 16, 32, 64, 128 at base 16).
"""

from __future__ import annotations

from torch import nn

from study.models.blocks import InterpUp, PreActResBlock, batch_norm, conv
from study.models.skeleton import UNet

SLICES = 3  # slices per 2.5D sample; the centre one is predicted


def _bilinear(dims: int, cin: int, cout: int) -> InterpUp:
    return InterpUp("bilinear", cin)


class HybridUNetX(UNet):
    dims = 2

    def __init__(self, in_channels: int, base_channels: int = 16, depth: int = 3):
        stem = nn.Sequential(
            conv(2, in_channels, base_channels),
            PreActResBlock(2, base_channels, base_channels),
        )
        pre_head = nn.Sequential(batch_norm(2, base_channels), nn.ReLU())
        super().__init__(
            in_channels,
            base_channels,
            depth,
            block=PreActResBlock,
            up=_bilinear,
            stem=stem,
            deep_blocks=3,
            pre_head=pre_head,
        )
