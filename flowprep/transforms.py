"""Two-stream augmentation: every spatial change touches the crops and the flow the same way.

Samples are the dicts ShardDataset returns (torch tensors): ``gray`` (T,H,W), ``flow`` (T-1,2,H,W)
in pixels, optionally ``landmarks`` (T,68,2). Random transforms draw from their own generator,
seeded at construction, so a seed fixes the whole augmentation sequence.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

# Mirror image of each of dlib's 68 points: a flipped face's left eye is its right eye.
_MIRROR_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]  # eyes
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)


class Compose:
    def __init__(self, transforms: Sequence[Callable[[dict], dict]]):
        self.transforms = list(transforms)

    def __call__(self, sample: dict) -> dict:
        for t in self.transforms:
            sample = t(sample)
        return sample


class _Random:
    def __init__(self, seed: int | None):
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int) -> None:
        """Give each DataLoader worker its own stream (call from worker_init_fn)."""
        self.rng = np.random.default_rng(seed)


def _spatial_size(sample: dict) -> tuple[int, int]:
    ref = sample["gray"] if "gray" in sample else sample["flow"]
    return int(ref.shape[-2]), int(ref.shape[-1])


def crop(sample: dict, top: int, left: int, size: int) -> dict:
    out = dict(sample)
    for key in ("gray", "flow"):
        if key in out:
            out[key] = out[key][..., top:top + size, left:left + size]
    if "landmarks" in out:
        out["landmarks"] = out["landmarks"] - torch.tensor([left, top], dtype=out["landmarks"].dtype)
    return out


class RandomCrop(_Random):
    """A ``size`` x ``size`` window at one random offset for the whole clip and both streams."""

    def __init__(self, size: int, seed: int | None = None):
        super().__init__(seed)
        self.size = size

    def __call__(self, sample: dict) -> dict:
        h, w = _spatial_size(sample)
        top = int(self.rng.integers(0, h - self.size + 1))
        left = int(self.rng.integers(0, w - self.size + 1))
        return crop(sample, top, left, self.size)


class CenterCrop:
    def __init__(self, size: int):
        self.size = size

    def __call__(self, sample: dict) -> dict:
        h, w = _spatial_size(sample)
        return crop(sample, (h - self.size) // 2, (w - self.size) // 2, self.size)


def hflip(sample: dict) -> dict:
    """Mirror left-right: crops and flow are flipped, flow dx changes sign, landmarks swap sides."""
    out = dict(sample)
    if "gray" in out:
        out["gray"] = torch.flip(out["gray"], dims=[-1])
    if "flow" in out:
        flow = torch.flip(out["flow"], dims=[-1]).clone()
        flow[:, 0] = -flow[:, 0]
        out["flow"] = flow
    if "landmarks" in out:
        w = _spatial_size(sample)[1]
        lm = out["landmarks"][:, torch.from_numpy(_MIRROR_68)].clone()
        lm[..., 0] = (w - 1) - lm[..., 0]
        out["landmarks"] = lm
    return out


class RandomHorizontalFlip(_Random):
    def __init__(self, p: float = 0.5, seed: int | None = None):
        super().__init__(seed)
        self.p = p

    def __call__(self, sample: dict) -> dict:
        return hflip(sample) if self.rng.random() < self.p else sample


class Normalize:
    """gray -> (gray/255 - mean) / std as float32; flow -> flow / flow_std. Statistics from the manifest."""

    def __init__(self, gray_mean: float, gray_std: float, flow_std: float = 1.0):
        self.gray_mean, self.gray_std, self.flow_std = gray_mean, gray_std, flow_std

    @classmethod
    def from_manifest(cls, stats: dict) -> "Normalize":
        return cls(stats["gray_mean"], stats["gray_std"], stats.get("flow_std", 1.0))

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        if "gray" in out:
            out["gray"] = (out["gray"].float() / 255.0 - self.gray_mean) / self.gray_std
        if "flow" in out:  # stored integers (flow_dtype="stored") carry their scale
            out["flow"] = out["flow"].float() * (float(out.get("flow_scale", 1.0)) / self.flow_std)
            out["flow_scale"] = 1.0
        return out


class TimeMask(_Random):
    """Zero up to ``max_frames`` consecutive frames (and the flow into and out of them)."""

    def __init__(self, max_frames: int = 5, p: float = 0.5, seed: int | None = None):
        super().__init__(seed)
        self.max_frames, self.p = max_frames, p

    def __call__(self, sample: dict) -> dict:
        if self.rng.random() >= self.p:
            return sample
        t = int((sample["gray"] if "gray" in sample else sample["flow"]).shape[0])
        width = int(self.rng.integers(1, self.max_frames + 1))
        start = int(self.rng.integers(0, max(1, t - width + 1)))
        out = dict(sample)
        if "gray" in out:
            out["gray"] = out["gray"].clone()
            out["gray"][start:start + width] = 0
        if "flow" in out:
            out["flow"] = out["flow"].clone()
            out["flow"][max(0, start - 1):start + width] = 0
        return out
