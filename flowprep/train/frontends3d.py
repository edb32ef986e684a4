"""The 3D-convolution front-ends: ``r3d18`` (ResNet-18 with 3D kernels, flowprep's) and ``i3d`` (the seed
paper's inflated Inception-v1). The 2D ResNet-34 ones are in frontends2d.py.

Every front-end takes a clip ``[B, C, T, H, W]`` (C = 1 for grayscale, 2 for flow, 20 for mouth heatmaps)
and returns one feature vector per frame, ``[B, T, F]``: time is never strided, so a back-end sees every
frame and the padded frames of short clips stay where ``lengths`` says they are. Front-ends see padding
as zero frames, so in a padded batch (GRID, not LRW) the features of a clip's last few frames depend a
little on how much padding follows. Module names follow torchvision's 2D networks, so ImageNet weights
inflate onto them key by key (inflate.py).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .registry import FRONTEND


def pool_space(x: torch.Tensor) -> torch.Tensor:
    """[B, F, T, H, W] -> [B, T, F]: average over the image, keep time (every front-end ends with it)."""
    return x.mean(dim=(3, 4)).transpose(1, 2)


# ---- 3D ResNet-18 ---------------------------------------------------------------------------
# Module names follow torchvision's resnet18 (conv1, bn1, layerN.M.conv1, .downsample.0 ...) so
# that 2D ImageNet weights map onto it key by key (see inflate.py).
class BasicBlock3D(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=(1, stride, stride), padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + skip)


@FRONTEND.register("r3d18")
class ResNet3D18(nn.Module):
    """ResNet-18 with every convolution 3D (3x3x3; a 5x7x7 stem), spatial strides only."""

    def __init__(self, in_channels: int, width: float = 1.0):
        super().__init__()
        base = max(1, round(64 * width))
        self.conv1 = nn.Conv3d(in_channels, base, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        widths = [base, 2 * base, 4 * base, 8 * base]
        cin = base
        for i, cout in enumerate(widths):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock3D(cin, cout, stride), BasicBlock3D(cout, cout, 1)))
            cin = cout
        self.out_features = cin
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return pool_space(x)


# ---- I3D: inflated Inception-v1 ----------------------------------------------------------------
# Layer for layer torchvision's googlenet (batch-norm eps 1e-3, ceil-mode pooling, 3x3 kernels in
# both middle branches), so its ImageNet weights inflate exactly (see inflate.py).
class Unit3D(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__(
            nn.Conv3d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm3d(cout, eps=1e-3),
            nn.ReLU(inplace=True),
        )


class Inception3D(nn.Module):
    """Four parallel branches: 1x1x1; 1x1x1 -> 3x3x3; 1x1x1 -> 3x3x3; 3x3x3 max-pool -> 1x1x1."""

    def __init__(self, cin: int, b0: int, b1a: int, b1b: int, b2a: int, b2b: int, b3: int):
        super().__init__()
        self.branch0 = Unit3D(cin, b0, 1)
        self.branch1 = nn.Sequential(Unit3D(cin, b1a, 1), Unit3D(b1a, b1b, 3, padding=1))
        self.branch2 = nn.Sequential(Unit3D(cin, b2a, 1), Unit3D(b2a, b2b, 3, padding=1))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1, ceil_mode=True), Unit3D(cin, b3, 1))
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], dim=1)


# Inception-v1 branch widths per mixed block: (b0, b1a, b1b, b2a, b2b, b3); an int marks a pooling
# step (its kernel: it halves the image and keeps every frame).
_INCEPTION_V1 = (
    ("mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("pool_3", 3),
    ("mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("pool_4", 2),
    ("mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("mixed_5c", (384, 192, 384, 48, 128, 128)),
)


@FRONTEND.register("i3d")
class I3D(nn.Module):
    """Inception-v1 with 3D kernels (7x7x7 stem, 3x3x3 inside the blocks). Unlike the video-
    classification original, pooling never strides over time, so it returns one feature per frame
    (1024 at width 1)."""

    def __init__(self, in_channels: int, width: float = 1.0):
        super().__init__()

        def c(n: int) -> int:
            return max(1, round(n * width))

        self.stem = nn.Sequential(
            Unit3D(in_channels, c(64), 7, stride=(1, 2, 2), padding=3),
            _halve(3),
            Unit3D(c(64), c(64), 1),
            Unit3D(c(64), c(192), 3, padding=1),
            _halve(3),
        )
        blocks: list[tuple[str, nn.Module]] = []
        cin = c(192)
        for name, widths in _INCEPTION_V1:
            if isinstance(widths, int):
                blocks.append((name, _halve(widths)))
                continue
            block = Inception3D(cin, *(c(w) for w in widths))
            blocks.append((name, block))
            cin = block.out_channels
        self.blocks = nn.Sequential(OrderedDict(blocks))
        self.out_features = cin
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_space(self.blocks(self.stem(x)))


def _halve(kernel: int) -> nn.MaxPool3d:
    """Max-pool that halves the image (rounding up) and keeps every frame."""
    return nn.MaxPool3d((1, kernel, kernel), stride=(1, 2, 2), ceil_mode=True)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
