"""A task only motion can solve, written as real shards: the same kind of texture in every clip,
drifting up or down. The stored crops are the clip's first frame repeated (appearance alone
says nothing about the label); the stored flow is DIS's flow between the real moving frames.

Vertical motion, because a horizontal flip (a training augmentation) turns left into right but
leaves up and down alone.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from flowprep.flow import get_backend, quantize_flow
from flowprep.shards import ClipResult, Manifest, write_shard
from flowprep.sources import ClipRecord

CLASSES = ["down", "up"]  # label 0: content moves down (+dy), 1: up
ATTRS = {"flow_dtype": "int8", "flow_scale": 0.1, "config_fingerprint": "motion-task", "flow_backend": "dis"}


def texture_clip(direction: int, size: int, frames: int, speed: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 [frames, size, size]: a smooth random texture translating by ``direction * speed`` px/frame in y."""
    big = cv2.GaussianBlur(rng.uniform(0, 255, (3 * size, 3 * size)).astype(np.float32), (0, 0), 2.0)
    big = (big - big.min()) / (big.max() - big.min()) * 255
    x0, y0 = rng.uniform(0.5 * size, 1.5 * size, 2)
    out = [cv2.warpAffine(big, np.float32([[1, 0, -x0], [0, 1, -y0 + direction * speed * t]]), (size, size),
                          flags=cv2.INTER_LINEAR) for t in range(frames)]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def write_motion_shards(root: str | Path, per_class: dict[str, int], size: int = 32, frames: int = 8,
                        speed: float = 1.5, seed: int = 0, frozen_gray: bool = True) -> Path:
    """Shards + manifest for splits {split: clips per class}; flow from the dis backend. With
    ``frozen_gray=False`` the crops are the moving frames themselves (a control)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dis = get_backend("dis", preset="medium")
    manifest = Manifest(config={}, config_fingerprint=ATTRS["config_fingerprint"], src="synthetic", layout="folder",
                        classes=list(CLASSES))
    planned = 0
    for split, count in per_class.items():
        results = []
        for i in range(count * len(CLASSES)):
            label = i % len(CLASSES)
            moving = texture_clip(1 if label == 0 else -1, size, frames, speed, rng)
            flow = dis(moving[:-1], moving[1:])
            record = ClipRecord(f"{CLASSES[label]}/{split}/{i:04d}", f"/synthetic/{i}", split, label,
                                CLASSES[label], "folder")
            results.append(ClipResult(
                record=record,
                gray=np.repeat(moving[:1], frames, axis=0) if frozen_gray else moving,
                landmarks=np.zeros((frames, 68, 2), np.float32),
                affine=np.tile(np.eye(2, 3, dtype=np.float32), (frames, 1, 1)),
                qc={}, fps=25.0, flow=quantize_flow(flow, "int8", ATTRS["flow_scale"]),
            ))
        summary = write_shard(root, f"{split}-00000.h5", split, split, results, {**ATTRS, "roi_size": size})
        manifest.commit(summary.entry, root)
        planned += len(results)
    manifest.planned_clips = planned
    manifest.save(root)
    return root
