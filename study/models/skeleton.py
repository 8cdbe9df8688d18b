"""The U-Net skeleton every architecture in the registry is an instance of.

Layout (``depth`` = number of 2x down-samplings, channels ``c_l = base * 2**l``)::

    x -> stem (full resolution, c_0)
      -> encoder level l = 1..depth: MaxPool(2) -> block(c_{l-1} -> c_l)
             (the deepest level stacks ``deep_blocks`` blocks)
      -> decoder level l = depth-1..0: up(c_{l+1}) ; concat skip_l ; block(-> c_l)
      -> head: [pre-head activation] -> 1x1 conv -> 1 logit per voxel

Spatial sizes must be multiples of ``2**depth`` (``model.size_multiple``); anything else
raises ``ValueError`` before the first convolution.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from study.models.blocks import InterpUp, SingleConv, conv

BlockFactory = Callable[[int, int, int], nn.Module]  # (dims, cin, cout) -> module
UpFactory = Callable[[int, int, int], nn.Module]  # (dims, cin, cout) -> module with out_channels


class UNet(nn.Module):
    """Generic 2D/3D U-Net with skip concatenation and a single-logit head."""

    dims: int = 3

    def __init__(
        self,
        in_channels: int,
        base_channels: int,
        depth: int,
        *,
        block: BlockFactory,
        up: UpFactory,
        stem: nn.Module,
        deep_blocks: int = 1,
        pre_head: nn.Module | None = None,
    ):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {base_channels}")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        d = self.dims
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.depth = depth
        self.size_multiple = 2**depth
        ch = [base_channels * 2**level for level in range(depth + 1)]
        self.channels = ch
        self.stem = stem
        pool = nn.MaxPool3d if d == 3 else nn.MaxPool2d
        self.encoders = nn.ModuleList()
        for level in range(1, depth + 1):
            layers = [pool(2), block(d, ch[level - 1], ch[level])]
            if level == depth:
                layers += [block(d, ch[level], ch[level]) for _ in range(deep_blocks - 1)]
            self.encoders.append(nn.Sequential(*layers))
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(depth - 1, -1, -1):
            upsample = up(d, ch[level + 1], ch[level])
            self.ups.append(upsample)
            self.decoders.append(block(d, upsample.out_channels + ch[level], ch[level]))
        self.pre_head = pre_head if pre_head is not None else nn.Identity()
        self.head = conv(d, ch[0], 1, kernel=1, bias=True)

    def check_input(self, x: torch.Tensor) -> None:
        want = self.dims + 2
        if x.ndim != want:
            raise ValueError(
                f"{type(self).__name__} expects a {want}-D tensor (B, C, {'X, Y, Z' if self.dims == 3 else 'X, Y'}), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} was built for {self.in_channels} input channels, "
                f"got {x.shape[1]} (shape {tuple(x.shape)})"
            )
        bad = [s for s in x.shape[2:] if s % self.size_multiple]
        if bad:
            raise ValueError(
                f"{type(self).__name__} (depth {self.depth}) needs spatial sizes that are "
                f"multiples of {self.size_multiple}, got {tuple(x.shape[2:])}; pad or crop the input"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem(x)
        skips = [x]
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
        skips.pop()  # the deepest output is x itself
        for upsample, dec in zip(self.ups, self.decoders, strict=True):
            x = dec(torch.cat([upsample(x), skips.pop()], dim=1))
        return self.head(self.pre_head(x))


class SingleConvUNet(UNet):
    """The report's simplified U-Nets: one conv-BN-LeakyReLU block per level and
    interpolation up-sampling (``up_mode``) instead of transposed convolutions."""

    up_mode = "nearest"

    def __init__(self, in_channels: int, base_channels: int = 32, depth: int = 3):
        mode = self.up_mode
        super().__init__(in_channels, base_channels, depth, block=SingleConv,
                         up=lambda dims, cin, cout: InterpUp(mode, cin),
                         stem=SingleConv(self.dims, in_channels, base_channels))
