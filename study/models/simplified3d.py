"""``simplified3d``: the report's SimplifiedUNet (3D, one conv per level, ~2.9 M params at base 32).

One Conv3d-BN-LeakyReLU per level, MaxPool3d down, parameter-free nearest up-sampling,
skip concatenation, 1x1x1 head. Default depth 3 (channels 32, 64, 128, 256 at base 32):
the report's ~2 M figure rules out a fifth level (which would give ~11.7 M).
"""

from __future__ import annotations

from study.models.skeleton import SingleConvUNet


class SimplifiedUNet3D(SingleConvUNet):
    dims = 3
    up_mode = "nearest"
