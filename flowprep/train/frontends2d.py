"""The seed paper's two front-ends built on a 2D ResNet-34: ``resnet2d`` (the 2D network on every frame)
and ``c3d-resnet`` (three 3D convolutions, then the 2D network on every frame).

They exist because the paper compares them with the 3D networks: a 2D front-end sees no motion, so
the back-end alone models time; the shallow 3D part gives it a few frames of context first. The 2D
network is torchvision's ``resnet34`` (a well-kept implementation whose ImageNet state_dict loads
key for key, see pretrained.py), wrapped so that it takes a clip ``[B, C, T, H, W]`` and returns
``[B, T, 512]`` like every other front-end. Time is never strided.

Each front-end is a sequence of named stages (``stage_names()``), each a 5D-in, 5D-out module, so the
map fusions and lateral connections of fusion.py run them stage by stage like the 3D networks.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from .frontends3d import pool_space
from .registry import FRONTEND


class PerFrame(nn.Module):
    """Runs a 2D module on every frame: [B, C, T, H, W] -> [B, C', T, H', W']."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        y = self.net(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2)


class _NarrowResNet(torchvision.models.ResNet):
    """torchvision's ResNet with every width times ``width`` (tests and quick trials; width 1 is
    never built this way: it is ``torchvision.models.resnet34()`` itself)."""

    def __init__(self, layers: list[int], width: float):
        object.__setattr__(self, "_scale", lambda n: max(1, round(n * width)))  # before Module.__init__
        super().__init__(BasicBlock, layers)
        stem = self._scale(64)
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # layer1: the stem that feeds it is narrowed too (see __init__)
            self.inplanes = self._scale(64)
        return super()._make_layer(block, self._scale(planes), blocks, stride, dilate)


def resnet34(width: float = 1.0) -> torchvision.models.ResNet:
    """torchvision's ResNet-34 (random init); narrower at width < 1 with the same module names."""
    return torchvision.models.resnet34() if width == 1.0 else _NarrowResNet([3, 4, 6, 3], width)


def _stem_conv(old: nn.Conv2d, in_channels: int, stride: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, stride=stride, padding=old.padding, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ResNet2DStages(nn.Module):
    """A 2D ResNet-34 as per-frame stages: ``stem`` (conv1, bn1, relu, maxpool), ``layer1``..``layer4``.
    Its parameters are named ``stem.net.conv1.weight``, ``layer1.net.0.conv1.weight`` ...:
    torchvision's key with ``stem.net.`` / ``.net`` taken out (pretrained.resnet34_key)."""

    def __init__(self, in_channels: int, width: float = 1.0, stem_stride: int = 2, stem_pool: bool = True):
        super().__init__()
        net = resnet34(width)
        net.conv1 = _stem_conv(net.conv1, in_channels, stem_stride)
        self.stem = PerFrame(nn.Sequential(OrderedDict(
            conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool if stem_pool else nn.Identity())))
        for i in range(1, 5):
            setattr(self, f"layer{i}", PerFrame(getattr(net, f"layer{i}")))
        self.out_features = net.layer4[-1].bn2.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


@FRONTEND.register("resnet2d")
class FrameResNet34(nn.Module):
    """``resnet2d``: ResNet-34 on every frame independently (no temporal context in the front-end);
    512 features per frame at width 1."""

    def __init__(self, in_channels: int, width: float = 1.0):
        super().__init__()
        self.in_channels = in_channels
        self.resnet = ResNet2DStages(in_channels, width)
        self.out_features = self.resnet.out_features

    def stage_names(self) -> list[list[str]]:
        return [["resnet.stem"]] + [[f"resnet.layer{i}"] for i in range(1, 5)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_space(self.resnet(x))


# three 3D convolutions with 64, 64 and 96 kernels (the "3D + 2D" front-end of the lipreading models
# before the seed paper)
C3D_WIDTHS = (64, 64, 96)


@FRONTEND.register("c3d-resnet")
class C3DResNet(nn.Module):
    """``c3d-resnet``: three 3x3x3 convolutions (64, 64, 96 kernels), each followed by batch norm, ReLU and a
    3x3x3 max-pool (the first two halve the image, the third keeps it; none strides in time), then a 2D
    ResNet-34 on every frame whose stem convolution takes the 96 maps at stride 1 without its max-pool.
    From 112 px the ResNet's layer1 works at 28x28 and layer4 gives 4x4, the grid of ``resnet2d``."""

    def __init__(self, in_channels: int, width: float = 1.0):
        super().__init__()
        self.in_channels = in_channels
        layers: list[tuple[str, nn.Module]] = []
        cin = in_channels
        for i, n in enumerate(C3D_WIDTHS):
            cout = max(1, round(n * width))
            layers += [(f"conv{i + 1}", nn.Conv3d(cin, cout, 3, padding=1, bias=False)),
                       (f"bn{i + 1}", nn.BatchNorm3d(cout)), (f"relu{i + 1}", nn.ReLU(inplace=True)),
                       (f"pool{i + 1}", nn.MaxPool3d(3, stride=(1, 2, 2) if i < 2 else 1, padding=1))]
            cin = cout
        self.c3d = nn.Sequential(OrderedDict(layers))
        for m in self.c3d.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self.resnet = ResNet2DStages(cin, width, stem_stride=1, stem_pool=False)
        self.out_features = self.resnet.out_features

    def stage_names(self) -> list[list[str]]:
        return [["c3d"], ["resnet.stem"]] + [[f"resnet.layer{i}"] for i in range(1, 5)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pool_space(self.resnet(self.c3d(x)))
