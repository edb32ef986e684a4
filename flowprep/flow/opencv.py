"""CPU flow with OpenCV: DIS (fast, good on small crops) and Farneback. One pair per call, in C++."""

from __future__ import annotations

import cv2
import numpy as np

from ..config import FlowConfig
from ..errors import FlowprepError
from .base import FlowBackend, register_backend

DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class _OpenCVBackend(FlowBackend):
    """Cheap per pair and CPU-only: runs in the worker that made the crops, no batching to gain."""

    runs_in = "crop"
    devices = ("cpu",)

    def __init__(self, threads: int | None, device: str):
        if device not in ("auto", "cpu"):
            raise FlowprepError(f"the {self.name} flow runs on the CPU only, got device={device!r}")
        # The build runs one worker per core: OpenCV's own threads would only fight over them.
        # None leaves OpenCV's setting alone. The setting is per process.
        if threads is not None:
            cv2.setNumThreads(int(threads))
        self.options = {"threads": threads}

    def compute(self, prev: np.ndarray, next: np.ndarray) -> np.ndarray:
        out = np.empty((len(prev), 2) + prev.shape[1:], np.float32)
        try:
            for i in range(len(prev)):
                out[i] = self.pair(prev[i], next[i]).transpose(2, 0, 1)  # [H,W,2] -> [2,H,W]
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1][:200]
            raise FlowprepError(f"{self.name} flow failed on {prev.shape[1]}x{prev.shape[2]} frames: {reason}") from None
        return out

    def pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@register_backend("dis")
class DISBackend(_OpenCVBackend):
    """Dense Inverse Search; needs frames of at least 16x16 pixels."""

    def __init__(self, preset: str = "medium", threads: int | None = 1, device: str = "cpu"):
        if preset not in DIS_PRESETS:
            raise FlowprepError(f"unknown DIS preset {preset!r}; use {', '.join(DIS_PRESETS)}")
        super().__init__(threads, device)
        self.options = {"preset": preset, **self.options}
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    @classmethod
    def options_from(cls, cfg: FlowConfig) -> dict:
        return {"preset": cfg.preset}

    def pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.dis.calc(a, b, None)


@register_backend("farneback")
class FarnebackBackend(_OpenCVBackend):
    # Three pyramid levels suit 112 px crops (a fourth would be 14 px wide, too coarse to help);
    # a 15 px window smooths over the low-texture skin around the lips; poly_n 5 with sigma 1.1
    # is the pairing that polynomial expansion is tuned for.
    PARAMS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.1, flags=0)

    def __init__(self, threads: int | None = 1, device: str = "cpu"):
        super().__init__(threads, device)

    def pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(a, b, None, **self.PARAMS)

    def describe(self) -> dict:
        return {**super().describe(), "params": dict(self.PARAMS)}
