"""manifest.json and failures.jsonl: what a build committed, and what it could not use.

The manifest is the commit record: a shard exists for readers and reruns only once its entry is
here, and the entry is written only after the shard's file was renamed into place. Both files
are rewritten whole through a temporary file and a rename, so a crash leaves the previous
version, never half of one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FlowprepError
from .files import atomic_write_text
from .layout import FAILURES_NAME, FORMAT_VERSION, MANIFEST_NAME


@dataclass
class ShardEntry:
    name: str
    split: str
    clips: int
    frames: int
    bytes: int
    sha256: str
    plan_hash: str  # hash of the clip ids planned for this shard: a rerun reuses the shard only if it matches
    failures: list[dict] = field(default_factory=list)
    moments: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return len(self.failures)


@dataclass
class Manifest:
    config: dict[str, Any]
    config_fingerprint: str
    src: str
    layout: str
    versions: dict[str, str] = field(default_factory=dict)
    flow_backend: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)  # word of each label, in label order
    planned_clips: int = 0
    shards: list[ShardEntry] = field(default_factory=list)
    # entries of the source that discovery could not plan (stage "discover"), counted in planned_clips
    discovery_failures: list[dict] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    # ---- derived figures ----------------------------------------------------------------
    @property
    def failures(self) -> list[dict]:
        return list(self.discovery_failures) + [f for s in self.shards for f in s.failures]

    def totals(self) -> dict[str, int]:
        return {
            "shards": len(self.shards),
            "clips": sum(s.clips for s in self.shards),
            "frames": sum(s.frames for s in self.shards),
            "failed": sum(s.failed for s in self.shards) + len(self.discovery_failures),
            "bytes": sum(s.bytes for s in self.shards),
        }

    def splits(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for s in self.shards:
            d = out.setdefault(s.split, {"shards": 0, "clips": 0, "frames": 0, "failed": 0})
            d["shards"] += 1
            d["clips"] += s.clips
            d["frames"] += s.frames
            d["failed"] += s.failed
        return out

    def stats(self, split: str = "train") -> dict[str, float]:
        """gray mean/std (of pixels scaled to 0..1) and flow std (pixels) over one split, for Normalize."""
        sums: dict[str, float] = {}
        for s in self.shards:
            if s.split == split:
                for k, v in s.moments.items():
                    sums[k] = sums.get(k, 0.0) + v
        if not sums.get("gray_n"):
            raise FlowprepError(f"no statistics for split {split!r}: it has no clips")
        mean = sums["gray_sum"] / sums["gray_n"]
        std = max(sums["gray_sumsq"] / sums["gray_n"] - mean * mean, 0.0) ** 0.5
        flow_std = (sums["flow_sumsq"] / sums["flow_n"]) ** 0.5 if sums.get("flow_n") else 1.0
        return {"gray_mean": mean, "gray_std": std or 1.0, "flow_std": flow_std or 1.0}

    @property
    def complete(self) -> bool:
        done = sum(s.clips + s.failed for s in self.shards) + len(self.discovery_failures)
        return done == self.planned_clips

    def entry(self, name: str) -> ShardEntry | None:
        return next((s for s in self.shards if s.name == name), None)

    # ---- persistence --------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["totals"] = self.totals()
        data["splits"] = self.splits()
        data["complete"] = self.complete
        data["stats"] = {split: self.stats(split) for split in self.splits()
                         if any(s.moments.get("gray_n") for s in self.shards if s.split == split)}
        return data

    def commit(self, entry: ShardEntry, out_dir: str | Path) -> None:
        """Record a shard whose file is already in place, and save."""
        self.shards = [s for s in self.shards if s.name != entry.name] + [entry]
        self.shards.sort(key=lambda s: s.name)
        self.save(out_dir)

    def save(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        self.updated = time.time()
        atomic_write_text(out_dir / FAILURES_NAME, "".join(json.dumps(f) + "\n" for f in self.failures))
        atomic_write_text(out_dir / MANIFEST_NAME, json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, out_dir: str | Path) -> "Manifest":
        path = Path(out_dir) / MANIFEST_NAME
        if not path.is_file():
            raise FlowprepError(f"{path} not found: is {out_dir} a folder written by `flowprep build`?")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise FlowprepError(f"{path} is not valid JSON ({exc}); rebuild with `flowprep build --overwrite`") from None
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise FlowprepError(
                f"{path} has format version {version}; this flowprep reads up to {FORMAT_VERSION}: upgrade flowprep"
            )
        for derived in ("totals", "splits", "complete", "stats"):
            data.pop(derived, None)
        data["shards"] = [ShardEntry(**s) for s in data.get("shards", [])]
        return cls(**data)

