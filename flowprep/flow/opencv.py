"""CPU flow with OpenCV: DIS (fast, good on small crops) and Farneback."""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import FlowprepError
from .base import FlowBackend, register_backend

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class _OpenCVBackend(FlowBackend):
    def __init__(self, threads: int = 1):
        # The build runs one worker per core: OpenCV's own threads would only fight over them.
        self.threads = threads
        cv2.setNumThreads(threads)

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        out = np.empty((len(prev), 2) + prev.shape[1:], np.float32)
        for i in range(len(prev)):
            out[i] = self.pair(prev[i], next[i]).transpose(2, 0, 1)
        return out


@register_backend("dis")
class DISBackend(_OpenCVBackend):
    name = "dis"

    def __init__(self, preset: str = "medium", threads: int = 1, **_ignored):
        super().__init__(threads)
        if preset not in DIS_PRESETS:
            raise FlowprepError(f"unknown DIS preset {preset!r}; use {', '.join(DIS_PRESETS)}")
        self.preset = preset
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.dis.calc(a, b, None)

    def describe(self) -> dict:
        return {**super().describe(), "preset": self.preset}


@register_backend("farneback")
class FarnebackBackend(_OpenCVBackend):
    name = "farneback"
    # Three levels suit 112 px crops (a fourth level would be 14 px); a 15 px window smooths
    # the low-texture skin around the lips; poly_n 5 / sigma 1.1 is the usual pairing.
    params = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)

    def __init__(self, threads: int = 1, **_ignored):
        super().__init__(threads)

    def pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(a, b, None, **self.params)

    def describe(self) -> dict:
        return {**super().describe(), **self.params}
