"""Which clips go in which shard: a pure function of the clip list, so every rerun agrees.

Shards hold at most ``shard_size`` clips and, with ``shard_bytes``, at most about that many stored
bytes. Bytes are decided here, before any decoding, from each clip's frame count: the layout's
fixed length (LRW, GRID) or what the container's index says (an MP4's sample count, an AVI's
header), times the bytes a frame takes in the shard before compression (gray + flow + landmarks +
affine). Deciding at write time would size files exactly, but the plan must be known before the
work starts, so that a rerun finds the same shards to resume; the estimate is an upper bound of
the file's size (compression only shrinks it), so files stay under the cap. A clip whose length
no header tells counts as the layout's median clip (or shard_bytes / shard_size when none is known).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from itertools import groupby
from typing import Callable

import numpy as np

from ..config import BuildConfig
from ..shards.layout import shard_name
from ..sources import ClipRecord, expected_frames

LANDMARK_BYTES = 68 * 2 * 2  # float16 points per frame
AFFINE_BYTES = 2 * 3 * 4  # float32 transform per frame
FLOW_ITEM_BYTES = {"int8": 1, "int16": 2, "float16": 2}


@dataclass(frozen=True)
class PlannedShard:
    name: str
    split: str
    records: tuple[ClipRecord, ...]

    @property
    def plan_hash(self) -> str:
        """Identity of the shard's planned contents: the clip ids and their files."""
        h = hashlib.sha256()
        for r in self.records:
            h.update(f"{r.clip_id}\0{r.path}\0{r.label}\n".encode())
        return h.hexdigest()[:16]


def plan_shards(records: list[ClipRecord], shard_size: int, shard_bytes: int | None = None,
                clip_bytes: Callable[[ClipRecord], int] | None = None) -> list[PlannedShard]:
    """Split clips into shards within each split, in (split, clip_id) order: a shard closes at
    ``shard_size`` clips or before its clips' ``clip_bytes`` would pass ``shard_bytes`` (a clip larger
    than that alone gets a shard of its own)."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    if shard_bytes is not None and clip_bytes is None:
        raise ValueError("shard_bytes needs clip_bytes, the estimate of each clip's stored bytes")
    ordered = sorted(records, key=lambda r: (r.split, r.clip_id))
    plan: list[PlannedShard] = []
    for split, group in groupby(ordered, key=lambda r: r.split):
        cuts: list[list[ClipRecord]] = []
        held = 0
        for r in group:
            size = clip_bytes(r) if clip_bytes is not None and shard_bytes is not None else 0
            if not cuts or len(cuts[-1]) >= shard_size or (shard_bytes is not None and held + size > shard_bytes):
                cuts.append([])
                held = 0
            cuts[-1].append(r)
            held += size
        plan += [PlannedShard(shard_name(split, i), split, tuple(clips)) for i, clips in enumerate(cuts)]
    return plan


def frame_bytes(roi_size: int, flow_dtype: str) -> int:
    """Stored bytes of one frame before compression: gray, flow (one pair per frame, at most), landmarks, affine."""
    return roi_size * roi_size * (1 + 2 * FLOW_ITEM_BYTES[flow_dtype]) + LANDMARK_BYTES + AFFINE_BYTES


def header_frames(record: ClipRecord) -> int | None:
    """The clip's frame count known before decoding: the layout's fixed length, else the container's index."""
    from ..decode.container import avi_video_frames, mp4_video_frames

    fixed = expected_frames(record.source)
    if fixed is not None:
        return fixed
    suffix = os.path.splitext(record.path)[1].lower()
    if suffix in (".mp4", ".mov", ".m4v"):
        return mp4_video_frames(record.path)
    if suffix == ".avi":
        return avi_video_frames(record.path)
    return None


def clip_bytes_estimator(records: list[ClipRecord], roi_size: int, flow_dtype: str, shard_size: int,
                         shard_bytes: int) -> Callable[[ClipRecord], int]:
    """``record -> estimated stored bytes``, reading each clip's header once (0.1 ms for an MP4)."""
    per_frame = frame_bytes(roi_size, flow_dtype)
    frames = {r.clip_id: header_frames(r) for r in records}
    known = [n for n in frames.values() if n]
    fallback = int(np.median(known)) * per_frame if known else shard_bytes // shard_size
    return lambda r: frames[r.clip_id] * per_frame if frames.get(r.clip_id) else fallback


def plan_build(records: list[ClipRecord], cfg: BuildConfig) -> list[PlannedShard]:
    """The shards of a build: by count, and by estimated bytes when ``cfg.shard_bytes`` is set."""
    if cfg.shard_bytes is None:
        return plan_shards(records, cfg.shard_size)
    estimate = clip_bytes_estimator(records, cfg.roi.size, cfg.flow.dtype, cfg.shard_size, cfg.shard_bytes)
    return plan_shards(records, cfg.shard_size, cfg.shard_bytes, estimate)
