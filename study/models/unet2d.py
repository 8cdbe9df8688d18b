"""``unet2d``: the report's 2D U-Net on whole axial slices (~0.97 M params at base 32).

Simplified block (one Conv2d-BN-LeakyReLU per level), MaxPool2d down, bilinear
up-sampling, skip concatenation, 1x1 head. Default depth 3 (channels 32..256), which
matches the report's ~1 M parameters.
"""

from __future__ import annotations

from study.models.skeleton import SingleConvUNet


class UNet2D(SingleConvUNet):
    dims = 2
    up_mode = "bilinear"
