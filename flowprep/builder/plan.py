"""Which clips go in which shard: a pure function of the clip list, so every rerun agrees."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from itertools import groupby

from ..shards.layout import shard_name
from ..sources import ClipRecord


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


def plan_shards(records: list[ClipRecord], shard_size: int) -> list[PlannedShard]:
    """Split clips into shards of ``shard_size`` within each split, in (split, clip_id) order."""
    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    ordered = sorted(records, key=lambda r: (r.split, r.clip_id))
    plan: list[PlannedShard] = []
    for split, group in groupby(ordered, key=lambda r: r.split):
        clips = list(group)
        for index, start in enumerate(range(0, len(clips), shard_size)):
            plan.append(PlannedShard(shard_name(split, index), split, tuple(clips[start:start + shard_size])))
    return plan
