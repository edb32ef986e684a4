"""Temporal back-ends (per-frame features ``[B, T, F]`` and ``lengths`` in, logits ``[B, K]`` out) and
:class:`Classifier`, what every whole network is.

Back-ends ignore padded steps exactly: the BiLSTM packs the sequences, the convolutions zero the padding
after every layer, and the clip's score is the mean over its own frames.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .registry import BACKEND


class Classifier(nn.Module):
    """A whole lipreading network: ``forward({stream: [B, C, T, H, W]}, lengths) -> logits [B, K]`` and
    ``loss``, what the trainer minimises. One head: the loss of its logits; networks with several heads
    (fusion.FusedTwoStream) override ``loss`` so that each head learns."""

    def loss(self, inputs: dict[str, torch.Tensor], lengths: torch.Tensor, labels: torch.Tensor,
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss, the prediction [B, K])."""
        logits = self(inputs, lengths)
        return loss_fn(logits.float(), labels), logits


# ---- back-ends -------------------------------------------------------------------------------
def time_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, T] float: 1 on a clip's frames, 0 on padding."""
    return (torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]).float()


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over the valid time steps of [B, T, F]."""
    mask = time_mask(lengths, x.shape[1]).to(x.dtype)
    return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)


@BACKEND.register("bilstm")
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


@BACKEND.register("tcn")
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


@BACKEND.register("conv1d")
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
