"""Frames in, aligned 112x112 mouth crops out, with landmarks, transforms and QC numbers."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..config import RoiConfig
from ..errors import NoFaceError
from .align import MOUTH, apply_transforms, crop_transforms, fill_gaps, smooth
from .dlib_files import load_dlib
from .tracker import DETECTED, IMPORTED, MISSED, TRACKED, LandmarkTracker, Track


@dataclass
class RoiResult:
    gray: np.ndarray  # uint8 [T, S, S]
    landmarks: np.ndarray  # float32 [T, 68, 2] in crop coordinates (interpolated where missed, not smoothed)
    affine: np.ndarray  # float32 [T, 2, 3] source -> crop
    qc: dict[str, float]


class MouthRoiExtractor:
    """Callable ``frames uint8[T,H,W] -> RoiResult``; dlib's models load on first use, once per process."""

    def __init__(self, cfg: RoiConfig | None = None):
        self.cfg = cfg or RoiConfig()

    def __call__(self, frames: np.ndarray, landmarks: np.ndarray | None = None) -> RoiResult:
        """Crops of ``frames``, from landmarks found here or, when given, ``landmarks`` (float [T,68,2] in
        frame pixels, NaN rows for frames without a face: see imported.py), which skips dlib altogether."""
        cfg = self.cfg
        if landmarks is not None:
            missing = np.isnan(landmarks).any(axis=(1, 2))
            track = Track(landmarks.astype(np.float32), np.where(missing, MISSED, IMPORTED).astype(np.int8), 0)
            return self._crop(frames, track, "imported")
        track = self.track(frames)
        detector = cfg.detector
        if (track.how == MISSED).all() and cfg.detector == "hog" and cfg.cnn_fallback:
            track, detector = self._cnn_retry(frames) or track, "cnn"
        if (track.how == MISSED).all():
            tried = "hog, cnn" if detector == "cnn" or cfg.cnn_fallback else cfg.detector
            raise NoFaceError(f"no face found in any of the {len(frames)} frames ({tried})")
        return self._crop(frames, track, detector)

    def track(self, frames: np.ndarray) -> Track:
        """dlib's landmarks on every frame (NaN where no face was found), before any gap filling."""
        return LandmarkTracker(self.cfg, *load_dlib(self.cfg.detector))(frames)

    def _crop(self, frames: np.ndarray, track: Track, detector: str) -> RoiResult:
        cfg = self.cfg
        raw, filled = fill_gaps(track.landmarks)
        smoothed = smooth(raw, cfg.smooth_window)
        affine = crop_transforms(smoothed, cfg.size, cfg.face_width)
        gray = np.empty((len(frames), cfg.size, cfg.size), np.uint8)
        for t, frame in enumerate(frames):
            cv2.warpAffine(frame, affine[t], (cfg.size, cfg.size), dst=gray[t], flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        raw_mouth = raw[:, MOUTH].mean(axis=1)
        smooth_mouth = smoothed[:, MOUTH].mean(axis=1)
        face_width = np.linalg.norm(raw[:, 16] - raw[:, 0], axis=1)
        qc = {
            "frames": float(len(frames)),
            "frames_detected": float((track.how == DETECTED).sum()),
            "frames_tracked": float((track.how == TRACKED).sum()),
            "frames_interpolated": float(filled.sum()),
            "detections_run": float(track.detections_run),
            "detection_rate": float(1.0 - filled.mean()),
            # how far the raw per-frame mouth wobbles around the smoothed track (landmark noise)
            "jitter_px": float(np.linalg.norm(raw_mouth - smooth_mouth, axis=1).mean()),
            # how far the crop centre travels per frame (head motion)
            "centre_motion_px": float(np.linalg.norm(np.diff(smooth_mouth, axis=0), axis=1).mean())
            if len(frames) > 1 else 0.0,
            "face_width_px": float(np.median(face_width)),
            "cnn_detector": float(detector == "cnn"),
            "landmarks_imported": float(detector == "imported"),  # from --landmarks files, no detection
        }
        return RoiResult(gray, apply_transforms(raw, affine).astype(np.float32), affine, qc)

    def _cnn_retry(self, frames: np.ndarray):
        """HOG found nothing: look for a face with the CNN detector on a few frames, and track with it if found."""
        cnn_cfg = _replace(self.cfg, detector="cnn")
        tracker = LandmarkTracker(cnn_cfg, *load_dlib("cnn"))
        probes = np.linspace(0, len(frames) - 1, num=min(3, len(frames))).round().astype(int)
        if all(tracker.detect(frames[i]) is None for i in probes):
            return None
        return tracker(frames)


def _replace(cfg: RoiConfig, **changes) -> RoiConfig:
    import dataclasses

    return dataclasses.replace(cfg, **changes)
