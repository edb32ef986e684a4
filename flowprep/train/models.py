"""Lipreading networks: a front-end per stream (3D CNNs here, the 2D ResNet-34 ones in frontends2d.py), a
temporal back-end, and the ways to fuse streams.

Every front-end takes a clip ``[B, C, T, H, W]`` (C = 1 for grayscale, 2 for flow) and returns
one feature vector per frame, ``[B, T, F]``: time is never strided, so a back-end sees every frame
and the padded frames of short clips stay where ``lengths`` says they are. Back-ends ignore padded
steps exactly; front-ends see padding as zero frames, so in a padded batch (GRID, not LRW) the
features of a clip's last few frames depend a little on how much padding follows.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .config import MAP_FUSIONS, STREAM_CHANNELS
from .frontends2d import C3DResNet, FrameResNet34
from .frontends2d import pool_space as _pool_space


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
        return _pool_space(x)


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
        return _pool_space(self.blocks(self.stem(x)))


def _halve(kernel: int) -> nn.MaxPool3d:
    """Max-pool that halves the image (rounding up) and keeps every frame."""
    return nn.MaxPool3d((1, kernel, kernel), stride=(1, 2, 2), ceil_mode=True)


FRONTENDS = {"resnet2d": FrameResNet34, "c3d-resnet": C3DResNet, "i3d": I3D, "r3d18": ResNet3D18}


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---- back-ends -------------------------------------------------------------------------------
def time_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, T] float: 1 on a clip's frames, 0 on padding."""
    return (torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]).float()


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the valid time steps of [B, T, F]."""
    mask = time_mask(lengths, x.shape[1]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


class BiLSTMBackend(nn.Module):
    """Bidirectional LSTM over per-frame features; the clip's score is the mean of its outputs."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 512, layers: int = 2,
                 dropout: float = 0.2):
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden, layers, batch_first=True, bidirectional=True,
                            dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        # float32 under mixed precision too: the recurrence is a small share of the cost, and
        # reduced-precision LSTM kernels are not available everywhere
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            if bool((lengths == steps).all()):  # equal lengths (LRW): no packing needed
                out, _ = self.lstm(x)
            else:  # padded clips: pack so the backward direction starts at each clip's own last frame
                packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
                out, _ = self.lstm(packed)
                out, _ = pad_packed_sequence(out, batch_first=True, total_length=steps)
        return self.head(self.drop(masked_mean(out, lengths)))


class TemporalConvBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.bn = nn.BatchNorm1d(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x + self.drop(torch.relu(self.bn(self.conv(x))))) * mask


class TemporalConvBackend(nn.Module):
    """Residual 1D convolutions over time (kernel 5, dilations 1, 2, 4, ...), then the masked mean."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 512, layers: int = 4,
                 dropout: float = 0.2, kernel: int = 5):
        super().__init__()
        self.proj = nn.Conv1d(in_features, hidden, 1)
        self.blocks = nn.ModuleList(TemporalConvBlock(hidden, kernel, 2 ** i, dropout) for i in range(layers))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = time_mask(lengths, x.shape[1]).to(x.dtype)[:, None, :]  # padding stays zero through every block
        h = self.proj(x.transpose(1, 2)) * mask
        for block in self.blocks:
            h = block(h, mask)
        return self.head(masked_mean(h.transpose(1, 2), lengths))


class Conv1dBackend(nn.Module):
    """The seed paper's temporal convolution: two 1D convolutions over time (kernel 5, batch norm, ReLU;
    ``layers`` sets how many), the masked mean over the clip's frames, then one fully connected layer."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 512, layers: int = 2,
                 dropout: float = 0.2, kernel: int = 5):
        super().__init__()
        widths = [in_features] + [hidden] * layers
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel, padding=kernel // 2) for a, b in zip(widths, widths[1:]))
        self.bns = nn.ModuleList(nn.BatchNorm1d(hidden) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = time_mask(lengths, x.shape[1]).to(x.dtype)[:, None, :]  # a clip's padding stays zero
        h = x.transpose(1, 2) * mask
        for conv, bn in zip(self.convs, self.bns):
            h = torch.relu(bn(conv(h))) * mask
        return self.head(self.drop(masked_mean(h.transpose(1, 2), lengths)))


BACKENDS = {"conv1d": Conv1dBackend, "bilstm": BiLSTMBackend, "tcn": TemporalConvBackend}
DEFAULT_LAYERS = {"conv1d": 2, "bilstm": 2, "tcn": 4}


# ---- one or two streams ----------------------------------------------------------------------
class LipReader(nn.Module):
    """Front-end per stream, then either one back-end on the concatenated per-frame features
    (``fusion="features"``) or one back-end per stream with their logits averaged (``"scores"``).
    A single stream is the features case with one front-end."""

    def __init__(self, streams: tuple[str, ...], frontend: str, backend: str, num_classes: int,
                 fusion: str = "features", width: float = 1.0, hidden: int = 512, layers: int | None = None,
                 dropout: float = 0.2):
        super().__init__()
        self.streams, self.fusion = tuple(streams), fusion if len(streams) > 1 else "features"
        self.frontends = nn.ModuleDict({s: FRONTENDS[frontend](STREAM_CHANNELS[s], width) for s in self.streams})
        layers = layers or DEFAULT_LAYERS[backend]
        make_backend = BACKENDS[backend]
        if self.fusion == "features":
            features = sum(f.out_features for f in self.frontends.values())
            self.backends = nn.ModuleDict({"fused": make_backend(features, num_classes, hidden, layers, dropout)})
        else:
            self.backends = nn.ModuleDict({
                s: make_backend(self.frontends[s].out_features, num_classes, hidden, layers, dropout)
                for s in self.streams
            })

    def forward(self, inputs: dict[str, torch.Tensor], lengths: torch.Tensor) -> torch.Tensor:
        """``inputs[stream]``: [B, C, T, H, W] with the same T for every stream; returns logits [B, K]."""
        features = {s: self.frontends[s](inputs[s]) for s in self.streams}
        if self.fusion == "features":
            return self.backends["fused"](torch.cat([features[s] for s in self.streams], dim=-1), lengths)
        return torch.stack([self.backends[s](features[s], lengths) for s in self.streams]).mean(0)


def build_model(cfg, num_classes: int) -> nn.Module:
    """The network a TrainConfig describes (random init; see inflate.py for pretrained starts):
    LipReader for feature/score fusion, fusion.FusedTwoStream for map fusions and lateral links."""
    if cfg.fusion in MAP_FUSIONS or getattr(cfg, "lateral", False):
        from .fusion import build_fused_model

        fusion = "scores" if cfg.fusion == "features" else cfg.fusion  # lateral + features: a joint head
        return build_fused_model(cfg.streams, cfg.frontend, cfg.backend, num_classes, fusion=fusion,
                                 stage=cfg.fusion_stage, lateral=cfg.lateral, width=cfg.width, hidden=cfg.hidden,
                                 layers=cfg.layers, dropout=cfg.dropout, heatmap_channels=STREAM_CHANNELS["heatmap"],
                                 input_sizes=((cfg.crop, cfg.crop),) * 2)
    return LipReader(cfg.streams, cfg.frontend, cfg.backend, num_classes, cfg.fusion, cfg.width, cfg.hidden,
                     cfg.layers, cfg.dropout)
