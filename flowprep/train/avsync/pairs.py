"""Genuine and impostor pairs: a mouth window with the audio of the same frames, or of frames ``shift_s``
earlier or later, as the coupled networks train and are scored on.

Audio features are the paper's MFEC cube: log-mel energies from ``flowprep.dataset.audio.log_mel`` (the
one implementation; ``per_frame`` mel frames per video frame, so the mel frames of video frames
``[i, i + window)`` are exactly ``[i * per_frame, (i + window) * per_frame)``) with their first and second
time derivatives, each plane standardised over the clip.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ...dataset.audio import log_mel
from ...errors import FlowprepError
from .clips import AVClip


def deltas(feat: torch.Tensor, n: int = 2) -> torch.Tensor:
    """Regression deltas over the first axis of [frames, dims] (edges repeated)."""
    padded = torch.cat([feat[:1].expand(n, -1), feat, feat[-1:].expand(n, -1)])
    num = sum(k * (padded[n + k: n + k + len(feat)] - padded[n - k: n - k + len(feat)]) for k in range(1, n + 1))
    return num / (2 * sum(k * k for k in range(1, n + 1)))


def audio_features(audio: np.ndarray, sample_rate: int, fps: float, n_mels: int = 40, per_frame: int = 4,
                   with_deltas: bool = True) -> torch.Tensor:
    """[3 (or 1), frames * per_frame, n_mels]: log-mel with its deltas and delta-deltas, each standardised
    over the clip (``frames``: the video frames the audio covers)."""
    mel = log_mel(audio, sample_rate, fps, n_mels=n_mels, per_frame=per_frame)
    planes = [mel]
    if with_deltas:
        d1 = deltas(mel)
        planes += [d1, deltas(d1)]
    cube = torch.stack(planes)
    return (cube - cube.mean(dim=(1, 2), keepdim=True)) / cube.std(dim=(1, 2), keepdim=True).clamp(min=1e-5)


class AVSyncPairs(Dataset):
    """Windows of ``window`` frames from each clip, each with the audio of the same span (genuine,
    label 1) or shifted by ``shift_s`` (impostor, label 0).

    ``mode="random"``: one pair per window, genuine or impostor by a fair coin, redrawn each epoch
    (``set_epoch``). ``mode="both"``: every window twice, once genuine and once impostor, balanced.
    ``augment`` (default: on in random mode, off in both): the impostor's shift direction at random
    where both fit (else forward where it fits, else back) and half the windows mirrored
    left-right, redrawn each epoch. ``time_range=(start_s, end_s)`` keeps windows and impostor audio
    inside that span of every clip, for held-out time ranges. ``stride``: frames between windows.

    Items: {"video": float [1, window, H, W] (``video_norm="motion"``: each pixel minus its mean over
    the window, over the clip's motion scale; ``"window"``: standardised per window), "audio": float
    [C, window * per_frame, mels], "label": 1.0 | 0.0, "shift_s": float, "clip": int, "start": int}."""

    def __init__(self, clips: Sequence[AVClip], window: int = 9, shift_s: float = 0.5, mode: str = "random",
                 stride: int = 1, time_range: tuple[float, float] | None = None, n_mels: int = 40,
                 per_frame: int = 4, with_deltas: bool = True, seed: int = 0, video_norm: str = "motion",
                 augment: bool | None = None, reverse: bool = False):
        if video_norm not in ("motion", "window"):
            raise ValueError(f"video_norm {video_norm!r}: use motion or window")
        if mode not in ("random", "both"):
            raise ValueError(f"mode {mode!r}: use random or both")
        self.video_norm, self.reverse = video_norm, reverse
        self.reverse_sign = torch.tensor([1.0, -1.0, 1.0][: 3 if with_deltas else 1])[:, None, None]
        self.augment = mode == "random" if augment is None else augment
        self.clips, self.window, self.shift_s, self.mode = list(clips), window, shift_s, mode
        self.per_frame, self.seed, self.epoch = per_frame, seed, 0
        self.features = [audio_features(c.audio, c.sample_rate, c.fps, n_mels, per_frame, with_deltas)
                         for c in self.clips]
        # the scale of what moves in each clip: pixels minus their mean over the clip
        self.frame_std = [max(float((c.frames / 255.0 - (c.frames / 255.0).mean(0)).std()), 1e-3) for c in self.clips]
        self.windows: list[tuple[int, int, tuple[int, ...]]] = []  # (clip, start frame, fitting shift signs)
        span = window * per_frame
        for ci, clip in enumerate(self.clips):
            lo_s, hi_s = time_range or (0.0, math.inf)
            rate = clip.fps * per_frame  # mel frames per second
            lo, hi = lo_s * rate - 1e-6, min(len(self.features[ci][0]), hi_s * rate + 1e-6)
            for start in range(int(math.ceil(lo_s * clip.fps - 1e-9)), len(clip.frames) - window + 1, stride):
                a0 = start * per_frame
                if a0 + span > hi:
                    continue
                shifts = tuple(d for d in (1, -1) if lo <= a0 + d * self.shift_hops(clip) and
                               a0 + d * self.shift_hops(clip) + span <= hi)
                if shifts:
                    self.windows.append((ci, start, shifts))
        if not self.windows:
            raise FlowprepError(f"no {window}-frame window with audio shifted by {shift_s} s fits in the clips")

    def shift_hops(self, clip: AVClip) -> int:
        """The impostor shift in mel frames of ``clip``."""
        return int(round(self.shift_s * clip.fps * self.per_frame))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.windows) * (2 if self.mode == "both" else 1)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        if self.mode == "both":
            index, second = divmod(index, 2)
            genuine = second == 0
        else:
            genuine = bool(rng.random() < 0.5)
        ci, start, shifts = self.windows[index]
        clip = self.clips[ci]
        span, a0 = self.window * self.per_frame, start * self.per_frame
        shift = 0
        if not genuine:
            sign = shifts[int(rng.random() * len(shifts))] if self.augment else shifts[0]
            shift = sign * self.shift_hops(clip)
        flip = self.augment and bool(rng.random() < 0.5)
        reverse = self.augment and self.reverse and bool(rng.random() < 0.5)
        video = torch.from_numpy(clip.frames[start:start + self.window].astype(np.float32) / 255.0)
        if flip:
            video = video.flip(-1)  # a mirrored mouth says the same thing
        if self.video_norm == "motion":  # what changes inside the window: each pixel minus its mean over time
            video = (video - video.mean(0, keepdim=True)) / self.frame_std[ci]
        else:
            video = (video - video.mean()) / video.std().clamp(min=1e-3)
        audio = self.features[ci][:, a0 + shift: a0 + shift + span]
        if reverse:  # both played backwards stay in sync (deltas change sign, as they would)
            video, audio = video.flip(0), audio.flip(1) * self.reverse_sign.to(audio.dtype)
        return {"video": video[None], "audio": audio, "label": float(genuine),
                "shift_s": shift / (clip.fps * self.per_frame), "clip": ci, "start": start}
