"""68 landmarks on every frame, with the face detector run only when tracking fails.

Detection costs ~4x landmark prediction, so each frame's landmarks come from a box derived
from the previous frame's landmarks. Tracking is trusted only if the face still looks like the
face of the previous frame (normalised correlation of a small face patch) and its box neither
jumped nor changed size abruptly; otherwise the detector runs again.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import RoiConfig

MISSED, DETECTED, TRACKED, IMPORTED = 0, 1, 2, 3  # IMPORTED: read from a landmark file (imported.py)
PATCH = 24  # side of the face patch compared between frames


@dataclass
class Track:
    landmarks: np.ndarray  # float32 [T, 68, 2], NaN where no face was found
    how: np.ndarray  # int8 [T]: MISSED, DETECTED, TRACKED or IMPORTED
    detections_run: int


def _rect_to_box(rect) -> np.ndarray:
    rect = getattr(rect, "rect", rect)  # the CNN detector wraps its rectangles
    return np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float32)


def _landmark_box(lm: np.ndarray) -> np.ndarray:
    return np.concatenate([lm.min(axis=0), lm.max(axis=0)])


def _face_patch(frame: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
    h, w = frame.shape
    x0, y0, x1, y1 = _landmark_box(lm).round().astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    patch = cv2.resize(frame[y0:y1, x0:x1], (PATCH, PATCH), interpolation=cv2.INTER_AREA).astype(np.float32)
    patch -= patch.mean()
    norm = float(np.linalg.norm(patch))
    return patch / norm if norm > 1e-6 else None


class LandmarkTracker:
    def __init__(self, cfg: RoiConfig, detector, predictor):
        import dlib

        self.cfg, self.detector, self.predictor = cfg, detector, predictor
        self._rectangle = dlib.rectangle

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """The largest face's box [x0, y0, x1, y1], trying one more upsampling level on a miss."""
        for upsample in (self.cfg.upsample, self.cfg.upsample + 1):
            found = self.detector(frame, upsample)
            if len(found):
                boxes = [_rect_to_box(r) for r in found]
                return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
        return None

    def landmarks(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self.predictor(frame, self._rectangle(x0, y0, x1, y1))
        return np.array([(p.x, p.y) for p in shape.parts()], np.float32)

    def __call__(self, frames: np.ndarray) -> Track:
        t_count = len(frames)
        out = np.full((t_count, 68, 2), np.nan, np.float32)
        how = np.zeros(t_count, np.int8)
        detections = 0
        prev_lm = prev_patch = None
        box_from_lm = None  # the detector's box relative to the landmark box, from the last detection
        for t, frame in enumerate(frames):
            lm = None
            if prev_lm is not None and box_from_lm is not None:
                lm = self.landmarks(frame, _apply(box_from_lm, _landmark_box(prev_lm)))
                patch = _face_patch(frame, lm)
                if not (patch is not None and self._consistent(prev_lm, lm, prev_patch, patch)):
                    lm = None
                else:
                    how[t], prev_patch = TRACKED, patch
            if lm is None:
                detections += 1
                box = self.detect(frame)
                if box is not None:
                    lm = self.landmarks(frame, box)
                    box_from_lm = _relative(box, _landmark_box(lm))
                    how[t], prev_patch = DETECTED, _face_patch(frame, lm)
            if lm is not None:
                out[t] = lm
            prev_lm = lm
        return Track(out, how, detections)

    def _consistent(self, prev_lm, lm, prev_patch, patch) -> bool:
        a, b = _landmark_box(prev_lm), _landmark_box(lm)
        size_a = max(a[2] - a[0], a[3] - a[1])
        size_b = max(b[2] - b[0], b[3] - b[1])
        shift = np.linalg.norm((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2)
        if shift > self.cfg.max_track_shift * size_a or abs(size_b / size_a - 1) > self.cfg.max_track_scale:
            return False
        return prev_patch is not None and float((prev_patch * patch).sum()) >= self.cfg.track_min_similarity


def _relative(box: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``box`` in units of the reference box (origin at its top-left, scale its width/height)."""
    size = np.maximum(ref[2:] - ref[:2], 1.0)
    return np.concatenate([(box[:2] - ref[:2]) / size, (box[2:] - ref[:2]) / size])


def _apply(rel: np.ndarray, ref: np.ndarray) -> np.ndarray:
    size = np.maximum(ref[2:] - ref[:2], 1.0)
    return np.concatenate([ref[:2] + rel[:2] * size, ref[:2] + rel[2:] * size])
