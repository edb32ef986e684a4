"""The coupled networks of cross audio-visual matching (Torfi et al. 2017) and what they learn from.

A 3D CNN embeds a mouth window ``[1, T, H, W]``, a 2D CNN the audio's MFEC cube ``[3, A, mels]`` (a 3D
convolution whose kernel spans the three planes is a 2D convolution with three input channels), both
into one L2-normalised space. The contrastive loss pulls genuine pairs together and pushes impostors at
least a margin apart; :func:`select_hard_pairs` is the paper's online pair selection, and
:func:`batch_pairs` optionally adds every video against the other windows' audio as impostors.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .pairs import AVSyncPairs


def _block3d(cin, cout, kernel, stride):
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride=stride, padding=tuple(k // 2 for k in kernel),
                                   bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


def _block2d(cin, cout, kernel, stride):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=tuple(k // 2 for k in kernel),
                                   bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AVSyncNet(nn.Module):
    """Visual 3D CNN ([B, 1, T, H, W]) and audio CNN ([B, C, A, mels]) into one ``embed``-dim space.

    Both keep time (``steps`` positions after pooling) until a fully connected layer, so the
    embedding says *when* the mouth moves or the sound changes inside the window, not only whether."""

    def __init__(self, channels: int = 16, embed: int = 64, audio_planes: int = 3, steps: int = 3,
                 dropout: float = 0.1):
        super().__init__()
        c = channels
        self.visual = nn.Sequential(
            _block3d(1, c, (3, 5, 5), (1, 2, 2)),
            _block3d(c, 2 * c, (3, 3, 3), (2, 2, 2)),
            _block3d(2 * c, 4 * c, (3, 3, 3), (1, 2, 2)),
            nn.AdaptiveAvgPool3d((steps, 1, 1)),
        )
        self.audio = nn.Sequential(
            _block2d(audio_planes, c, (3, 3), (1, 2)),
            _block2d(c, 2 * c, (3, 3), (2, 2)),
            _block2d(2 * c, 4 * c, (3, 3), (2, 2)),
            nn.AdaptiveAvgPool2d((steps, 1)),
        )
        self.visual_fc = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * c * steps, embed))
        self.audio_fc = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * c * steps, embed))

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual_fc(self.visual(video)), dim=-1)

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_fc(self.audio(audio)), dim=-1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Euclidean distance [B] of each pair's embeddings (0..2: they are L2-normalised)."""
        return (self.embed_video(video) - self.embed_audio(audio)).pow(2).sum(-1).clamp(min=1e-12).sqrt()


def contrastive_loss(distance: torch.Tensor, label: torch.Tensor, margin: float = 1.0,
                     balanced: bool = False) -> torch.Tensor:
    """mean(y d^2 + (1 - y) max(0, margin - d)^2): genuine pairs (y = 1) pulled together, impostors
    pushed at least ``margin`` apart. ``balanced``: the genuine and the impostor terms are averaged
    separately and weigh one half each (for batches with many more impostors than genuine pairs)."""
    label = label.to(distance.dtype)
    pull, push = label * distance.pow(2), (1 - label) * F.relu(margin - distance).pow(2)
    if not balanced:
        return (pull + push).mean()
    return 0.5 * pull.sum() / label.sum().clamp(min=1) + 0.5 * push.sum() / (1 - label).sum().clamp(min=1)


def select_hard_pairs(distance: torch.Tensor, label: torch.Tensor, k: int | None) -> torch.Tensor:
    """Indices (ascending) of the pairs a batch trains on: with ``k``, the k genuine pairs with the
    largest distance and the k impostor pairs with the smallest (fewer where the batch has fewer);
    without, all of them."""
    if k is None or k <= 0:
        return torch.arange(len(distance), device=distance.device)
    d = distance.detach()
    picked = []
    for value, hardest_first in ((1, True), (0, False)):
        idx = torch.nonzero(label == value).flatten()
        order = torch.argsort(d[idx], descending=hardest_first, stable=True)
        picked.append(idx[order[:k]])
    return torch.sort(torch.cat(picked)).values


def batch_pairs(model: AVSyncNet, video: torch.Tensor, audio: torch.Tensor, label: torch.Tensor,
                batch: dict[str, Any] | None = None, pairs: AVSyncPairs | None = None,
                min_offset_s: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """(distances, labels) of the batch's pairs; with ``batch`` (its "clip", "start", "shift_s") also of
    every video with every other item's audio, as impostors, except where that audio comes from the
    same clip less than ``min_offset_s`` away from the video's own time."""
    ev, ea = model.embed_video(video), model.embed_audio(audio)
    distance = (ev - ea).pow(2).sum(-1).clamp(min=1e-12).sqrt()
    if batch is None:
        return distance, label
    all_d = torch.cdist(ev, ea).clamp(min=1e-6)
    fps = torch.tensor([pairs.clips[int(c)].fps for c in batch["clip"]], device=video.device)
    t_video = batch["start"].to(video.device) / fps
    t_audio = t_video + batch["shift_s"].to(video.device).to(t_video.dtype)
    clip = batch["clip"].to(video.device)
    near = (clip[:, None] == clip[None, :]) & ((t_audio[None, :] - t_video[:, None]).abs() < min_offset_s)
    off = ~near & ~torch.eye(len(ev), dtype=torch.bool, device=video.device)
    return torch.cat([distance, all_d[off]]), torch.cat([label, label.new_zeros(int(off.sum()))])
