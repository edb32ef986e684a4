"""From per-frame landmarks to per-frame crop transforms: fill gaps, smooth, align, centre the mouth."""

from __future__ import annotations

import numpy as np

# The stable part of the face (nose 27-35, eyes 36-47), in a frame where the jaw (0 to 16) is
# 1 wide, the eyes are level and the mouth centre is the origin. It is the mean shape of dlib's
# landmarks over six frontal GRID speakers and one portrait, similarity-aligned (Procrustes) to
# each other before averaging. Scale and rotation come from these points, which barely move
# while speaking; the lips and jaw, which do, only decide where the crop is centred.
STABLE = slice(27, 48)
MOUTH = slice(48, 68)
TEMPLATE = np.array([
    [-0.0017, -0.5662], [-0.0016, -0.4785], [-0.0035, -0.3923], [-0.0031, -0.3025],  # nose bridge
    [-0.1008, -0.2185], [-0.0544, -0.1999], [-0.0025, -0.1880], [0.0496, -0.1996], [0.0993, -0.2149],  # nostrils
    [-0.3107, -0.5381], [-0.2549, -0.5703], [-0.1874, -0.5715], [-0.1271, -0.5301], [-0.1888, -0.5149],
    [-0.2576, -0.5122],  # right eye (image left)
    [0.1324, -0.5305], [0.1944, -0.5709], [0.2627, -0.5709], [0.3179, -0.5403], [0.2669, -0.5115],
    [0.1971, -0.5130],  # left eye
], np.float32)


def fill_gaps(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate frames without landmarks (NaN) from their neighbours; edges take the
    nearest found frame. Returns (filled, mask of filled frames)."""
    missing = np.isnan(landmarks).any(axis=(1, 2))
    if not missing.any():
        return landmarks, missing
    t = np.arange(len(landmarks))
    found = ~missing
    flat = landmarks.reshape(len(landmarks), -1)
    filled = np.empty_like(flat)
    for k in range(flat.shape[1]):  # 136 coordinates, each a 1-D interpolation over time
        filled[:, k] = np.interp(t, t[found], flat[found, k])
    return filled.reshape(landmarks.shape), missing


def smooth(series: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along time; the window shrinks at the clip's ends (no edge bias)."""
    if window <= 1 or len(series) < 2:
        return series
    half = window // 2
    csum = np.concatenate([np.zeros((1,) + series.shape[1:], np.float64), np.cumsum(series, axis=0, dtype=np.float64)])
    t = np.arange(len(series))
    lo, hi = np.maximum(t - half, 0), np.minimum(t + half + 1, len(series))
    shape = (-1,) + (1,) * (series.ndim - 1)
    return ((csum[hi] - csum[lo]) / (hi - lo).reshape(shape)).astype(series.dtype)


def crop_transforms(landmarks: np.ndarray, size: int, face_width: float) -> np.ndarray:
    """[T,2,3] similarity transforms (source -> crop) for already smoothed landmarks.

    Rotation and scale: least-squares fit of the stable points to the template scaled so the jaw is
    ``face_width`` crop pixels wide. Translation: the mouth centre lands on the crop centre.
    """
    src = landmarks[:, STABLE].astype(np.float64)  # [T,K,2]
    dst = TEMPLATE.astype(np.float64) * face_width
    src_c = src - src.mean(axis=1, keepdims=True)
    dst_c = dst - dst.mean(axis=0)
    norm = (src_c ** 2).sum(axis=(1, 2))
    # closed-form similarity [a -b; b a] for every frame at once
    a = (src_c * dst_c).sum(axis=(1, 2)) / norm
    b = (src_c[..., 0] * dst_c[:, 1] - src_c[..., 1] * dst_c[:, 0]).sum(axis=1) / norm
    linear = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], axis=1)  # [T,2,2]
    mouth = landmarks[:, MOUTH].mean(axis=1).astype(np.float64)  # [T,2]
    centre = np.full(2, (size - 1) / 2.0)
    shift = centre - np.einsum("tij,tj->ti", linear, mouth)
    return np.concatenate([linear, shift[..., None]], axis=2).astype(np.float32)


def apply_transforms(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map [T,K,2] points through [T,2,3] transforms."""
    return np.einsum("tij,tkj->tki", affine[:, :, :2], points) + affine[:, None, :, 2]
