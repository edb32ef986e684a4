"""Talking-face clips with their audio, for audio-visual sync: from memory, from videos, or from shards.

Videos and shards give the same thing: the ROI stage's aligned mouth-centred gray crops (``roi``, as
``flowprep build`` makes them), their central mouth window (:func:`mouth_window`, sized from the crops'
face width) resized to the model's frame size, and the clip's audio on the video's clock
(``flowprep.decode.decode_audio``, or the shards' audio stream built with ``--audio``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

AUDIO_RATE = 16000
# The mouth window inside a crop, as fractions of the face width: 0.65 wide, 0.6 of that high.
MOUTH_WIDTH, MOUTH_ASPECT = 0.65, 0.6


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


def mouth_window(gray: np.ndarray, face_width: float, size: tuple[int, int]) -> np.ndarray:
    """The central mouth window of mouth-centred crops ``[T, S, S]`` (``MOUTH_WIDTH`` x the face width
    wide, ``MOUTH_ASPECT`` x that high, at most the crop), each frame resized to ``size`` (H, W)."""
    import cv2

    t, h, w = gray.shape
    cw = min(w, int(round(MOUTH_WIDTH * face_width)))
    ch = min(h, int(round(MOUTH_ASPECT * MOUTH_WIDTH * face_width)))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return np.stack([cv2.resize(f[y0:y0 + ch, x0:x0 + cw], (size[1], size[0]), interpolation=cv2.INTER_AREA)
                     for f in gray])


def clips_from_videos(paths: Iterable[str | Path], size: tuple[int, int] = (60, 100)) -> list[AVClip]:
    """Decode each video (gray frames, 16 kHz audio on the video's clock), crop the mouth as the build's
    ROI stage does (dlib landmarks, smoothed track, aligned crops) and keep its mouth window at ``size``."""
    from ...config import RoiConfig
    from ...decode import decode_audio, decode_gray
    from ...roi.extract import MouthRoiExtractor

    roi = RoiConfig()
    extract = MouthRoiExtractor(roi)
    clips = []
    for path in paths:
        video = decode_gray(path)
        audio = decode_audio(path, AUDIO_RATE, video.num_frames, video.fps, dtype="float32").samples
        crops = extract(video.frames).gray
        clips.append(AVClip(mouth_window(crops, roi.face_width, size), audio, video.fps, AUDIO_RATE, Path(path).stem))
    return clips


def clips_from_shards(root: str | Path, split: str = "train", size: tuple[int, int] = (60, 100)) -> list[AVClip]:
    """Clips from a shard folder built with ``flowprep build --audio``: its mouth crops' mouth window at
    ``size``, with each clip's audio, fps and sample rate."""
    from ...dataset import ShardDataset

    ds = ShardDataset(root, split, streams=("gray", "audio"))  # says to rebuild with --audio when it lacks it
    face = float(ds.manifest.config.get("roi", {}).get("face_width", 140.0))
    clips = []
    for i in range(len(ds)):
        sample = ds[i]
        frames = mouth_window(np.asarray(sample["gray"]), face, size)
        clips.append(AVClip(frames, np.asarray(sample["audio"]), float(sample["fps"]), int(sample["audio_rate"]),
                            str(sample.get("clip_id", i))))
    return clips
