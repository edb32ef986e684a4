"""manifest.json and failures.jsonl: what a build committed, and what it could not use.

The manifest is the commit record: a shard exists for readers and reruns only once its entry is
here, and the entry is written only after the shard's file was renamed into place. Both files
are rewritten whole through a temporary file and a rename, so a crash leaves the previous
version, never half of one.

The failures live in the manifest (each shard entry carries its own); failures.jsonl is a copy
derived from it for people and tools, written after the manifest. A crash between the two writes
leaves an older failures.jsonl: `verify` reports it and a rerun rewrites it before anything else,
so the two can never disagree silently, and the manifest never lacks a failure it should hold.

Names in a manifest come from a file, so they are checked on load: a shard name must be a plain
file name in the folder, never a path.
"""

from __future__ import annotations

import errno
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FlowprepError
from ..files import atomic_write_text
from .layout import FAILURES_NAME, FORMAT_VERSION, MANIFEST_NAME, is_shard_name


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
    # `flowprep reflow`: the shard folder the crops came from, its fingerprint and shards; {} for a build
    parent: dict[str, Any] = field(default_factory=dict)
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
    def missing_clips(self) -> int:
        """Planned clips that are neither stored nor recorded as failed (0 for a finished build)."""
        totals = self.totals()
        return max(0, self.planned_clips - totals["clips"] - totals["failed"])

    @property
    def complete(self) -> bool:
        totals = self.totals()
        return self.planned_clips > 0 and totals["clips"] + totals["failed"] == self.planned_clips

    def require_complete(self, root: str | Path, allow_flag: str) -> None:
        """Refuse a half-built folder: readers would see fewer clips than planned without knowing."""
        if self.complete:
            return
        totals = self.totals()
        raise FlowprepError(
            f"{root} is an incomplete build: {self.missing_clips} of {self.planned_clips} planned clips are missing "
            f"(an interrupted or still running `flowprep build`). Rerun the same build command to finish it, "
            f"or pass {allow_flag} to use the {totals['clips']} clips committed so far."
        )

    def failures_jsonl(self) -> str:
        """The text failures.jsonl must hold: one JSON line per failure, in the manifest's order."""
        return "".join(json.dumps(f) + "\n" for f in self.failures)

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
        """Write manifest.json, then failures.jsonl derived from it (see the module's note)."""
        out_dir = Path(out_dir)
        self.updated = time.time()
        for name, text in ((MANIFEST_NAME, json.dumps(self.to_json(), indent=1) + "\n"),
                           (FAILURES_NAME, self.failures_jsonl())):
            try:
                atomic_write_text(out_dir / name, text)
            except OSError as exc:
                fix = "free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that"
                raise FlowprepError(
                    f"cannot write {out_dir / name}: {exc.strerror or exc}. Nothing half-written was left; "
                    f"{fix} and rerun the same command: committed shards are kept and the build resumes."
                ) from None

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
        try:
            data["shards"] = [ShardEntry(**s) for s in data.get("shards", [])]
            manifest = cls(**data)
        except TypeError as exc:
            raise FlowprepError(f"{path} does not have the fields of a flowprep manifest ({exc}); "
                                "rebuild with `flowprep build --overwrite`") from None
        for entry in manifest.shards:
            if not is_shard_name(entry.name):
                raise FlowprepError(
                    f"{path} lists a shard {entry.name!r} that is not a plain shard file name in its folder: the "
                    "manifest was altered or damaged; flowprep reads only files inside the folder. Rebuild with "
                    "`flowprep build --overwrite`."
                )
        return manifest

