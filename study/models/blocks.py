"""Building blocks shared by the U-Net family (2D and 3D).

Every helper takes ``dims`` (2 or 3) so one definition serves both. Convolutions that
feed a BatchNorm have no bias (the BN shift replaces it). Nothing here depends on the
memory format or dtype, so ``channels_last`` / ``channels_last_3d`` and bf16 autocast
work unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


def conv(dims: int, cin: int, cout: int, kernel: int = 3, bias: bool = False) -> nn.Module:
    cls = nn.Conv3d if dims == 3 else nn.Conv2d
    return cls(cin, cout, kernel, padding=kernel // 2, bias=bias)


def batch_norm(dims: int, channels: int) -> nn.Module:
    return nn.BatchNorm3d(channels) if dims == 3 else nn.BatchNorm2d(channels)


class ConvBNAct(nn.Sequential):
    """Conv(3) - BatchNorm - LeakyReLU(0.01)."""

    def __init__(self, dims: int, cin: int, cout: int):
        super().__init__(
            conv(dims, cin, cout), batch_norm(dims, cout), nn.LeakyReLU(0.01, inplace=True)
        )


class SingleConv(nn.Sequential):
    """Simplified U-Net block: one Conv-BN-LeakyReLU."""

    def __init__(self, dims: int, cin: int, cout: int):
        super().__init__(ConvBNAct(dims, cin, cout))


class DoubleConv(nn.Sequential):
    """Original U-Net block: two Conv-BN-LeakyReLU."""

    def __init__(self, dims: int, cin: int, cout: int):
        super().__init__(ConvBNAct(dims, cin, cout), ConvBNAct(dims, cout, cout))


class PreActResBlock(nn.Module):
    """ResNet-v2 pre-activation block: (BN-ReLU-Conv) x 2 + shortcut.

    The shortcut is the identity on the raw input when ``cin == cout``; otherwise a bias-free
    1x1 projection of the shared pre-activation ``relu(bn(x))`` (He et al. 2016, "Identity
    Mappings in Deep Residual Networks": the projection follows the first BN-ReLU). The layers
    stay in ``body`` (``body[0:2]`` = the pre-activation), so parameters and checkpoint keys
    are those of the plain layout.
    """

    def __init__(self, dims: int, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            batch_norm(dims, cin),
            nn.ReLU(),
            conv(dims, cin, cout),
            batch_norm(dims, cout),
            nn.ReLU(),
            conv(dims, cout, cout),
        )
        self.shortcut = nn.Identity() if cin == cout else conv(dims, cin, cout, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.body[1](self.body[0](x))
        out = pre
        for layer in list(self.body)[2:]:
            out = layer(out)
        if isinstance(self.shortcut, nn.Identity):
            return x + out
        return self.shortcut(pre) + out


class TransposedUp(nn.Module):
    """Learned 2x up-sampling (ConvTranspose, kernel 2, stride 2) from cin to cout."""

    def __init__(self, dims: int, cin: int, cout: int):
        super().__init__()
        cls = nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
        self.up = cls(cin, cout, kernel_size=2, stride=2)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)


class InterpUp(nn.Module):
    """Parameter-free 2x up-sampling: ``nearest`` or ``bilinear``/``trilinear``."""

    def __init__(self, mode: str, channels: int):
        super().__init__()
        self.mode = mode
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        align = None if self.mode == "nearest" else False
        return nn.functional.interpolate(x, scale_factor=2, mode=self.mode, align_corners=align)
