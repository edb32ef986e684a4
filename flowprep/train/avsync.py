"""Cross audio-visual matching (Torfi et al., "3D convolutional neural networks for cross audio-visual
matching recognition", 2017): do a mouth clip and a piece of audio belong together in time?

* Two coupled networks embed a short mouth window (``window`` frames, gray, ``frame_size``) and the
  audio of the same time span into one space: a 3D CNN over [1, T, H, W] and a CNN over the audio's
  log-mel energies stacked with their first and second time derivatives ([3, frames, mels], the
  paper's MFEC cube; a 3D convolution whose kernel spans the three planes is a 2D convolution with
  three input channels, which is how it is written here).
* Pairs are made on the fly from whole clips: genuine = the audio of the same frames; impostor = the
  audio shifted by ``shift_s`` (0.5 s, the paper's best), earlier or later, within the clip.
* Contrastive loss on the Euclidean distance of the (L2-normalised) embeddings with a margin;
  ``hard_k`` keeps only the k hardest genuine pairs (farthest) and the k hardest impostors (closest)
  of each batch, the online pair selection of the paper.
  ``batch_negatives`` also pairs every video with the other windows' audio in the batch.
* Evaluation: the distance is the score (small = in sync); ROC AUC and equal error rate, written
  here with numpy.
* Departures from the paper, for data this small: the video is given as motion (each pixel minus
  its mean over the window, ``video_norm="motion"``), which removes the speaker's appearance;
  embeddings are L2-normalised so the margin has a fixed scale.

Measured on the six GRID clips (3 folds over speakers: train on 4, score the 2 held out, 30x50
mouths, 8 channels, 6 epochs, ~5 s CPU per fold): pooled AUC 0.68-0.72, EER 0.34-0.38 (seeds 0-5);
untrained 0.45-0.59. hard_k=8 of 32: AUC 0.68-0.70 (no gain); batch_negatives: 0.68-0.71;
batch_negatives + hard_k=16: 0.63-0.66 (worse).

Clips come from memory (:class:`AVClip`: mouth frames, waveform, fps, sample rate), from video files
(:func:`clips_from_videos`: decode, one face detection per clip for a fixed mouth box, audio through
``flowprep.decode.decode_audio``) or from a shard folder with an audio stream (:func:`clips_from_shards`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from ..errors import FlowprepError

AUDIO_RATE = 16000


# ---- clips ---------------------------------------------------------------------------------------
@dataclass
class AVClip:
    frames: np.ndarray  # uint8 [T, H, W] mouth crops (any size; resized to the model's frame_size)
    audio: np.ndarray  # float32 [S] mono in about -1..1 (int16 is scaled), sample 0 = start of frame 0
    fps: float
    sample_rate: int = AUDIO_RATE
    name: str = ""

    def __post_init__(self) -> None:
        audio = np.asarray(self.audio)
        if audio.dtype == np.int16:
            audio = audio.astype(np.float32) / 32768.0
        self.audio = audio.astype(np.float32, copy=False).reshape(-1)
        self.frames = np.asarray(self.frames)
        if self.frames.ndim != 3:
            raise ValueError(f"frames must be [T, H, W], got {self.frames.shape}")

    @property
    def seconds(self) -> float:
        return len(self.frames) / self.fps


def mouth_box(frames: np.ndarray, probes: int = 3, scale: float = 0.65,
              aspect: float = 0.6) -> tuple[int, int, int, int]:
    """A fixed mouth box (x0, y0, x1, y1) for a clip of a still-ish talking face: dlib landmarks on
    ``probes`` frames, box centred on the median mouth centre, ``scale`` x the face width wide and
    ``aspect`` x that high. For shards (already mouth-centred crops) no box is needed."""
    from ..config import RoiConfig
    from ..roi.dlib_files import load_dlib
    from ..roi.tracker import LandmarkTracker

    tracker = LandmarkTracker(RoiConfig(), *load_dlib("hog"))
    centres, widths = [], []
    for i in np.linspace(0, len(frames) - 1, probes).round().astype(int):
        box = tracker.detect(frames[i])
        if box is None:
            continue
        lm = tracker.landmarks(frames[i], box)
        centres.append(lm[48:68].mean(0))
        widths.append(np.linalg.norm(lm[16] - lm[0]))
    if not centres:
        raise FlowprepError(f"no face found in {probes} frames of the clip")
    (cx, cy), w = np.median(centres, axis=0), float(np.median(widths)) * scale
    h = w * aspect
    height, width = frames.shape[1:]
    x0, y0 = int(round(max(0, cx - w / 2))), int(round(max(0, cy - h / 2)))
    return x0, y0, int(round(min(width, cx + w / 2))), int(round(min(height, cy + h / 2)))


def clips_from_videos(paths: Iterable[str | Path], size: tuple[int, int] = (60, 100)) -> list[AVClip]:
    """Decode each video (gray frames + 16 kHz audio on the video's clock), cut a fixed mouth box
    and resize it to ``size`` (H, W)."""
    import cv2

    from ..decode import decode_gray

    clips = []
    for path in paths:
        video = decode_gray(path)
        audio = _decode_audio(path, video.num_frames, video.fps)
        x0, y0, x1, y1 = mouth_box(video.frames)
        frames = np.stack([cv2.resize(f[y0:y1, x0:x1], (size[1], size[0]), interpolation=cv2.INTER_AREA)
                           for f in video.frames])
        clips.append(AVClip(frames, audio, video.fps, AUDIO_RATE, Path(path).stem))
    return clips


def _decode_audio(path: str | Path, num_frames: int, fps: float) -> np.ndarray:
    try:
        from ..decode import decode_audio
    except ImportError:  # an older flowprep: the plain ffmpeg pipe, assuming audio and video start together
        import subprocess

        from ..decode import ffmpeg_binary

        raw = subprocess.run([ffmpeg_binary(), "-nostdin", "-loglevel", "error", "-i", str(path), "-vn", "-ac", "1",
                              "-ar", str(AUDIO_RATE), "-f", "s16le", "pipe:"], capture_output=True, check=True).stdout
        samples = np.frombuffer(raw, np.int16).astype(np.float32) / 32768.0
        want = int(round(num_frames * AUDIO_RATE / fps))
        return np.pad(samples[:want], (0, max(0, want - len(samples))))
    return decode_audio(path, AUDIO_RATE, num_frames, fps, dtype="float32").samples


def clips_from_shards(root: str | Path, split: str = "train", size: tuple[int, int] = (60, 100),
                      crop: tuple[int, int] | None = None) -> list[AVClip]:
    """Clips from a shard folder built with ``flowprep build --audio``: the ROI's mouth-centred gray
    crops, their central ``crop`` (H, W) (default: the same mouth box as :func:`mouth_box`, from the
    build's face width), resized to ``size``, with each clip's audio, fps and sample rate."""
    import cv2

    from ..dataset import ShardDataset

    ds = ShardDataset(root, split, streams=("gray", "audio"))  # says to rebuild with --audio when it lacks it
    if crop is None:
        face = float(ds.manifest.config.get("roi", {}).get("face_width", 140.0))
        crop = (int(round(0.65 * 0.6 * face)), int(round(0.65 * face)))
    clips = []
    for i in range(len(ds)):
        sample = ds[i]
        gray = np.asarray(sample["gray"])
        t, h, w = gray.shape
        ch, cw = min(crop[0], h), min(crop[1], w)
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        frames = np.stack([cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (size[1], size[0]), interpolation=cv2.INTER_AREA)
                           for f in gray])
        clips.append(AVClip(frames, np.asarray(sample["audio"]), float(sample["fps"]), int(sample["audio_rate"]),
                            str(sample.get("clip_id", i))))
    return clips


# ---- audio features ------------------------------------------------------------------------------
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 0.0,
                   f_max: float | None = None) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular filters, equally spaced on the HTK mel scale."""
    f_max = f_max or sample_rate / 2

    def mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(f_min), mel(f_max), n_mels + 2))
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None] - lower) / (centre - lower)
    down = (upper - bins[None]) / (upper - centre)
    return torch.from_numpy(np.clip(np.minimum(up, down), 0.0, None)).float()


def log_mel(audio: np.ndarray | torch.Tensor, sample_rate: int = AUDIO_RATE, n_mels: int = 40,
            win_s: float = 0.025, hop_s: float = 0.010) -> torch.Tensor:
    """[frames, n_mels] log mel energies, len(audio) // hop frames: frame j is the window of samples
    [j * hop, j * hop + win) (the end zero-padded), so it starts at j * hop_s on the video's clock."""
    x = torch.as_tensor(np.asarray(audio, np.float32))
    win, hop = int(round(win_s * sample_rate)), int(round(hop_s * sample_rate))
    n_fft = 1 << (win - 1).bit_length()
    # torch.stft centres the win-long window inside each n_fft-long frame: shift by that offset
    left = (n_fft - win) // 2
    frames = max(1, len(x) // hop)
    x = F.pad(x, (left, max(0, (frames - 1) * hop + n_fft - left - len(x))))
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win), center=False,
                      return_complex=True).abs().pow(2)[:, :frames]  # [freq, frames]
    return torch.log(mel_filterbank(n_mels, n_fft, sample_rate) @ spec + 1e-6).T


def deltas(feat: torch.Tensor, n: int = 2) -> torch.Tensor:
    """Regression deltas over the first axis of [frames, dims] (edges repeated)."""
    padded = torch.cat([feat[:1].expand(n, -1), feat, feat[-1:].expand(n, -1)])
    num = sum(k * (padded[n + k: n + k + len(feat)] - padded[n - k: n - k + len(feat)]) for k in range(1, n + 1))
    return num / (2 * sum(k * k for k in range(1, n + 1)))


def audio_features(audio: np.ndarray, sample_rate: int = AUDIO_RATE, n_mels: int = 40, hop_s: float = 0.010,
                   with_deltas: bool = True) -> torch.Tensor:
    """[3 (or 1), frames, n_mels]: log-mel with its deltas and delta-deltas, each standardised over the clip."""
    mel = log_mel(audio, sample_rate, n_mels, hop_s=hop_s)
    planes = [mel]
    if with_deltas:
        d1 = deltas(mel)
        planes += [d1, deltas(d1)]
    cube = torch.stack(planes)
    return (cube - cube.mean(dim=(1, 2), keepdim=True)) / cube.std(dim=(1, 2), keepdim=True).clamp(min=1e-5)


# ---- pairs ----------------------------------------------------------------------------------------
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
    the window, over the clip's motion scale; ``"window"``: standardised per window), "audio": float [C, A, mels]
    (A = window duration / hop), "label": 1.0 | 0.0, "shift_s": float, "clip": int, "start": int}."""

    def __init__(self, clips: Sequence[AVClip], window: int = 9, shift_s: float = 0.5, mode: str = "random",
                 stride: int = 1, time_range: tuple[float, float] | None = None, n_mels: int = 40,
                 hop_s: float = 0.010, with_deltas: bool = True, seed: int = 0, video_norm: str = "motion",
                 augment: bool | None = None, reverse: bool = False):
        if video_norm not in ("motion", "window"):
            raise ValueError(f"video_norm {video_norm!r}: use motion or window")
        self.video_norm, self.reverse = video_norm, reverse
        self.reverse_sign = torch.tensor([1.0, -1.0, 1.0][: 3 if with_deltas else 1])[:, None, None]
        self.augment = mode == "random" if augment is None else augment
        if mode not in ("random", "both"):
            raise ValueError(f"mode {mode!r}: use random or both")
        self.clips, self.window, self.shift_s, self.mode = list(clips), window, shift_s, mode
        self.hop_s, self.seed, self.epoch = hop_s, seed, 0
        self.features = [audio_features(c.audio, c.sample_rate, n_mels, hop_s, with_deltas) for c in self.clips]
        # the scale of what moves in each clip: pixels minus their mean over the clip
        self.frame_std = [max(float((c.frames / 255.0 - (c.frames / 255.0).mean(0)).std()), 1e-3) for c in self.clips]
        self.windows: list[tuple[int, int, tuple[int, ...]]] = []  # (clip, start frame, fitting shifts in hops)
        for ci, clip in enumerate(self.clips):
            lo_s, hi_s = time_range or (0.0, math.inf)
            hi_s = min(hi_s, clip.seconds, len(self.features[ci][0]) * hop_s)
            span = self.audio_frames(clip)
            for start in range(int(math.ceil(lo_s * clip.fps - 1e-9)), len(clip.frames) - window + 1, stride):
                a0 = self.audio_start(clip, start)
                if (start + window) / clip.fps > hi_s + 1e-9 or a0 + span > len(self.features[ci][0]):
                    continue
                shifts = tuple(d for d in (1, -1) if self._fits(ci, a0 + d * self.shift_hops, span, lo_s, hi_s))
                if shifts:
                    self.windows.append((ci, start, shifts))
        if not self.windows:
            raise FlowprepError(f"no {window}-frame window with audio shifted by {shift_s} s fits in the clips")

    @property
    def shift_hops(self) -> int:
        return int(round(self.shift_s / self.hop_s))

    def audio_frames(self, clip: AVClip) -> int:
        return int(round(self.window / clip.fps / self.hop_s))

    def audio_start(self, clip: AVClip, start: int) -> int:
        return int(round(start / clip.fps / self.hop_s))

    def _fits(self, ci: int, a0: int, span: int, lo_s: float, hi_s: float) -> bool:
        return a0 >= lo_s / self.hop_s - 1e-9 and a0 + span <= min(len(self.features[ci][0]), hi_s / self.hop_s + 1e-9)

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
        span, a0 = self.audio_frames(clip), self.audio_start(clip, start)
        shift = 0
        if not genuine:
            sign = shifts[int(rng.random() * len(shifts))] if self.augment else shifts[0]
            shift = sign * self.shift_hops
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
        return {"video": video[None], "audio": audio, "label": float(genuine), "shift_s": shift * self.hop_s,
                "clip": ci, "start": start}


# ---- the coupled networks -------------------------------------------------------------------------
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


# ---- metrics (numpy) -------------------------------------------------------------------------------
def roc_auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the ROC curve = P(score of a random positive > score of a random negative), ties
    counting one half (the Mann-Whitney statistic from average ranks)."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("AUC needs positives and negatives")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def equal_error_rate(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """(EER, threshold): accepting score >= threshold, the rate where false acceptance (of negatives)
    equals false rejection (of positives), linearly interpolated between the two thresholds where
    their difference changes sign."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        raise ValueError("EER needs positives and negatives")
    thresholds = np.concatenate([np.unique(s), [np.inf]])  # ascending; inf accepts nothing
    far = np.array([(s[~y] >= t).sum() / neg for t in thresholds])  # falls as t rises
    frr = np.array([(s[y] < t).sum() / pos for t in thresholds])  # rises as t rises
    diff = far - frr
    i = int(np.argmax(diff <= 0))  # first threshold where FRR caught up with FAR (diff[-1] = -1 <= 0)
    if diff[i] == 0 or i == 0:
        return float((far[i] + frr[i]) / 2), float(thresholds[i])
    w = diff[i - 1] / (diff[i - 1] - diff[i])  # between thresholds i-1 (diff > 0) and i (diff < 0)
    eer = far[i - 1] + w * (far[i] - far[i - 1])
    return float(eer), float(thresholds[i - 1] + w * (thresholds[i] - thresholds[i - 1])
                             if np.isfinite(thresholds[i]) else thresholds[i - 1])


# ---- training and evaluation -------------------------------------------------------------------------
@dataclass
class AVSyncConfig:
    window: int = 9  # video frames per window (0.36 s at 25 fps)
    frame_size: tuple[int, int] = (60, 100)  # mouth crop (H, W) the clips are resized to
    shift_s: float = 0.5  # impostor audio offset
    n_mels: int = 40
    hop_s: float = 0.010
    with_deltas: bool = True  # static + delta + delta-delta planes (the paper's MFEC cube)
    video_norm: str = "motion"  # motion: pixels minus their mean over the window (appearance removed) | window
    channels: int = 16  # first conv width of each network (x2, x4 deeper)
    embed: int = 64
    steps: int = 3  # time positions kept before the fully connected layer
    dropout: float = 0.1
    margin: float = 1.0
    hard_k: int | None = None  # online hard-pair selection: keep the k hardest genuine + k hardest impostors
    batch_negatives: bool = False  # also every video with the other windows' audio in the batch (not near in time)
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    stride: int = 1  # frames between training windows
    reverse: bool = False  # augmentation: play half the training windows (video and audio) backwards
    train_pairs: str = "random"  # random: each window once, genuine or impostor | both: each window both ways
    time_range: tuple[float, float] | None = None  # training windows only inside this span of each clip
    seed: int = 0
    device: str = "cpu"
    workers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AVSyncConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in known}
        return cls(**data)


def build_avsync_model(cfg: AVSyncConfig) -> AVSyncNet:
    return AVSyncNet(cfg.channels, cfg.embed, 3 if cfg.with_deltas else 1, cfg.steps, cfg.dropout)


def _resolve_clips(clips, shards, split, cfg: AVSyncConfig) -> list[AVClip]:
    if clips is None:
        if shards is None:
            raise FlowprepError("give clips (AVClip list or video paths) or a shard folder")
        return clips_from_shards(shards, split, cfg.frame_size)
    clips = list(clips)
    if clips and not isinstance(clips[0], AVClip):
        return clips_from_videos(clips, cfg.frame_size)
    import cv2

    out = []
    for c in clips:  # resize to the model's frame size where needed
        if c.frames.shape[1:] != tuple(cfg.frame_size):
            frames = np.stack([cv2.resize(f, cfg.frame_size[::-1], interpolation=cv2.INTER_AREA) for f in c.frames])
            c = dataclasses.replace(c, frames=frames)
        out.append(c)
    return out


def _pairs(clips, cfg: AVSyncConfig, mode: str, time_range=None, stride: int = 1, train: bool = False) -> AVSyncPairs:
    return AVSyncPairs(clips, cfg.window, cfg.shift_s, mode, stride, time_range, cfg.n_mels, cfg.hop_s,
                       cfg.with_deltas, cfg.seed, cfg.video_norm, augment=train, reverse=cfg.reverse)


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


def train_avsync(clips: Sequence[AVClip | str | Path] | None = None, shards: str | Path | None = None,
                 config: AVSyncConfig | None = None, out: str | Path | None = None, split: str = "train",
                 progress: bool = False, **changes: Any) -> dict[str, Any]:
    """Train the coupled networks on ``clips`` (AVClip objects or video paths) or ``shards``/``split``.

    ``changes`` override fields of ``config``. With ``out``, writes ``avsync.pt`` (model weights and
    config, readable with weights_only=True) and ``avsync-train.json``. Returns {"model", "config",
    "losses" (per step), "pairs_per_step", "seconds", "windows"}."""
    cfg = dataclasses.replace(config or AVSyncConfig(), **changes)
    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device)
    data = _pairs(_resolve_clips(clips, shards, split, cfg), cfg, cfg.train_pairs, cfg.time_range, cfg.stride,
                  train=True)
    model = build_avsync_model(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(data) / cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    losses, used = [], []
    t0 = time.perf_counter()
    model.train()
    for epoch in range(cfg.epochs):
        data.set_epoch(epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        for batch in DataLoader(data, cfg.batch_size, shuffle=True, generator=gen, num_workers=cfg.workers):
            video, audio = batch["video"].to(device), batch["audio"].to(device)
            label = batch["label"].to(device)
            distance, label = batch_pairs(model, video, audio, label, batch if cfg.batch_negatives else None,
                                          data, cfg.shift_s / 2)
            keep = select_hard_pairs(distance, label, cfg.hard_k)
            loss = contrastive_loss(distance[keep], label[keep], cfg.margin, balanced=cfg.batch_negatives)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            used.append(len(keep))
        if progress:
            print(f"avsync epoch {epoch + 1}/{cfg.epochs}: loss {np.mean(losses[-steps_per_epoch:]):.4f}")
    seconds = time.perf_counter() - t0
    summary = {"model": model, "config": cfg, "losses": losses, "pairs_per_step": used, "seconds": seconds,
               "windows": len(data.windows)}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        from .checkpoint import save  # written atomically, read back with weights_only=True

        save(out / "avsync.pt", {"model": model.state_dict(), "config": cfg.to_dict(),
                                 "shards": None if shards is None else str(shards), "split": split})
        (out / "avsync-train.json").write_text(json.dumps(
            {"config": cfg.to_dict(), "steps": len(losses), "final_loss": float(np.mean(losses[-steps_per_epoch:])),
             "seconds": seconds, "windows": len(data.windows)}, indent=1) + "\n")
    return summary


def load_avsync(run: str | Path, device: str = "cpu") -> tuple[AVSyncNet, AVSyncConfig]:
    path = Path(run)
    path = path / "avsync.pt" if path.is_dir() else path
    if not path.is_file():
        raise FlowprepError(f"no avsync checkpoint at {path}: train one with train_avsync(out=...)")
    state = torch.load(path, map_location=device, weights_only=True)
    cfg = AVSyncConfig.from_dict(state["config"])
    model = build_avsync_model(cfg).to(device)
    model.load_state_dict(state["model"])
    return model, cfg


def trained_on(run: str | Path) -> str | None:
    """The shard folder a saved avsync run was trained on (None when it was trained on clips)."""
    path = Path(run)
    path = path / "avsync.pt" if path.is_dir() else path
    if not path.is_file():
        raise FlowprepError(f"no avsync checkpoint at {path}: train one with `flowprep train --task avsync`")
    return torch.load(path, map_location="cpu", weights_only=True).get("shards")


@torch.no_grad()
def pair_distances(model: AVSyncNet, pairs: AVSyncPairs, batch_size: int = 64,
                   device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(distances, labels) of every pair in ``pairs``, in eval mode."""
    was_training = model.training
    model.eval()
    dists, labels = [], []
    for batch in DataLoader(pairs, batch_size, shuffle=False):
        dists.append(model(batch["video"].to(device), batch["audio"].to(device)).cpu())
        labels.append(batch["label"])
    model.train(was_training)
    return torch.cat(dists).numpy(), torch.cat(labels).numpy().astype(int)


def evaluate_avsync(model: AVSyncNet | str | Path, clips: Sequence[AVClip | str | Path] | None = None,
                    shards: str | Path | None = None, split: str = "test", config: AVSyncConfig | None = None,
                    time_range: tuple[float, float] | None = None, stride: int = 1, device: str = "cpu",
                    out: str | Path | None = None, return_scores: bool = False) -> dict[str, Any]:
    """EER and AUC of a model (or a run folder / avsync.pt) on every window of the clips, each once
    in sync and once with the audio shifted (balanced). Score = -distance. ``paired_accuracy``: the
    share of windows whose in-sync audio lies closer than their shifted audio (a two-way choice, as
    in picking the right offset; chance 0.5). With ``out`` (or a run
    folder given as ``model``), writes avsync-eval-<split>.json there. ``return_scores``: the result
    also holds "distances" and "labels" (numpy, pairs in (genuine, impostor) order per window), to pool
    several evaluations (e.g. cross-validation folds) before computing AUC and EER."""
    if not isinstance(model, nn.Module):
        run = Path(model)
        model, loaded = load_avsync(run, device)
        config = config or loaded
        out = out or (run if run.is_dir() else run.parent)
    cfg = config or AVSyncConfig()
    pairs = _pairs(_resolve_clips(clips, shards, split, cfg), cfg, "both", time_range, stride)
    distance, label = pair_distances(model.to(device), pairs, device=device)
    eer, threshold = equal_error_rate(-distance, label)
    # pairs come as (genuine, impostor) of the same video window: how often the genuine audio is closer
    paired = float(np.mean(distance[0::2] < distance[1::2]))
    result = {"auc": roc_auc(-distance, label), "eer": eer, "threshold_distance": -threshold,
              "paired_accuracy": paired, "pairs": int(len(label)),
              "genuine_mean_distance": float(distance[label == 1].mean()),
              "impostor_mean_distance": float(distance[label == 0].mean()), "shift_s": cfg.shift_s}
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"avsync-eval-{split}.json").write_text(json.dumps(result, indent=1) + "\n")
    if return_scores:
        result.update(distances=distance, labels=label)
    return result
