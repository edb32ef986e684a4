"""What the processing stages hand to the shard writer: one result or one failure per clip."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..sources import ClipRecord


@dataclass
class ClipResult:
    record: ClipRecord
    gray: np.ndarray  # uint8 [T, S, S]
    landmarks: np.ndarray  # float32 [T, 68, 2], crop coordinates
    affine: np.ndarray  # float32 [T, 2, 3]
    qc: dict[str, float]
    fps: float
    flow: np.ndarray | None = None  # quantised [T-1, 2, S, S]; None until the flow stage ran
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    node: str = ""  # the machine that decoded and cropped it
    # int16 [S] mono samples on the video's clock (sample 0 = start of frame 0), None without --audio
    audio: np.ndarray | None = None
    audio_rate: int = 0  # samples per second of ``audio``

    @property
    def num_frames(self) -> int:
        return int(self.gray.shape[0])

    @property
    def length(self) -> int:  # the schema's name for it
        return self.num_frames

    @property
    def audio_start(self) -> int | None:
        """Where frame 0 starts in ``audio``: sample 0, as decode_audio aligns it; None without audio."""
        return None if self.audio is None else 0


@dataclass
class ClipFailure:
    record: ClipRecord
    stage: str  # decode | audio | roi | flow | internal
    reason: str
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "clip_id": self.record.clip_id,
            "path": self.record.path,
            "split": self.record.split,
            "stage": self.stage,
            "reason": self.reason,
        }
