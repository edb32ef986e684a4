"""What a build did: the figures a person wants at the end, and the exit status they imply.

Every figure covers the work of this run alone: shards an earlier run committed are counted, not
timed. The summary ends by saying where the shards are and what to run next."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from ..errors import EXIT_FATAL, EXIT_OK, EXIT_PARTIAL


@dataclass
class BuildReport:
    out_dir: str
    planned_clips: int = 0
    skipped_shards: int = 0  # already committed by an earlier run
    written_shards: int = 0
    clips: int = 0  # written by this run
    failed: int = 0  # failed in this run
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    first_clip_s: float = 0.0  # when the first clip finished (Ray workers warm by then)
    last_clip_s: float = 0.0  # when the last clip finished (before the final shard writes)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    nodes: dict[str, int] = field(default_factory=dict)
    cpus: int = 0  # the cluster's CPUs
    flow_actors: int = 0  # flow in a stage of its own (PWC-Net actors, one per GPU); 0: inside the crop tasks
    flow_precision: str = ""  # what --flow-precision auto chose, with the probe's figures ("" otherwise)
    shard_errors: list[str] = field(default_factory=list)
    total_failed: int = 0  # over the whole output folder, earlier runs included
    complete: bool = False

    # The steady rate is shown only over a span this long and this many clips: with a handful of clips
    # finishing within one poll of each other it divides by almost nothing.
    STEADY_MIN_SPAN_S = 5.0
    STEADY_MIN_CLIPS = 8

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_frames_per_s(self) -> float:
        """Rate between the first and the last finished clip: what a long build sustains, without
        the worker start-up at the beginning and the last shard's write at the end."""
        span = self.last_clip_s - self.first_clip_s
        if self.clips < 2 or span <= 0:
            return self.frames_per_s
        return self.frames * (self.clips - 1) / self.clips / span

    @property
    def stage_balance(self) -> dict[str, float] | None:
        """Which side of a build with flow actors waits for the other. Each side's capacity is the
        frames/s its busy time allows on the workers it has (the flow actors each hold a CPU, the crop
        tasks get the rest); the slower side sets the build's pace and the other idles."""
        flow_s = self.stage_seconds.get("flow_s", 0.0)
        cpu_s = sum(self.stage_seconds.get(k, 0.0) for k in ("decode_s", "audio_s", "roi_s"))
        if not self.flow_actors or not self.frames or flow_s <= 0 or cpu_s <= 0:
            return None
        crop_workers = max(1, self.cpus - self.flow_actors)
        span = self.last_clip_s or self.seconds
        return {
            "flow_frames_per_s": self.frames * self.flow_actors / flow_s,
            "cpu_frames_per_s": self.frames * crop_workers / cpu_s,
            "cpu_workers": crop_workers,
            "flow_busy": min(1.0, flow_s / (self.flow_actors * span)) if span > 0 else 0.0,
        }

    @property
    def bytes_per_clip(self) -> float:
        return self.bytes / self.clips if self.clips else 0.0

    @property
    def exit_code(self) -> int:
        if self.shard_errors or not self.complete:
            return EXIT_FATAL
        return EXIT_PARTIAL if self.total_failed else EXIT_OK

    def lines(self) -> list[str]:
        done = f", {self.skipped_shards} shard(s) already done by an earlier run" if self.skipped_shards else ""
        out = [f"clips written {self.clips}, failed {self.failed}{done}"]
        if self.written_shards or self.frames:
            steady = ""
            span = self.last_clip_s - self.first_clip_s
            if self.clips >= self.STEADY_MIN_CLIPS and span >= self.STEADY_MIN_SPAN_S:
                steady = f" ({self.steady_frames_per_s:.1f} once running)"
            out.append(f"{self.frames} frames in {self.seconds:.1f} s: {self.frames_per_s:.1f} frames/s{steady}, "
                       f"{self.bytes_per_clip / 1024:.0f} KiB per clip")
        elif self.skipped_shards and not self.shard_errors:
            out.append("nothing left to build: every planned shard was committed before")
        if self.frames and self.stage_seconds:
            per = ", ".join(f"{k.removesuffix('_s')} {1000 * v / self.frames:.2f}" for k, v in self.stage_seconds.items())
            out.append(f"worker time per frame (ms): {per}")
        balance = self.stage_balance
        if balance:
            waits = "flow waits for the CPU stages" if balance["flow_frames_per_s"] >= balance["cpu_frames_per_s"] \
                else "the CPU stages wait for flow"
            out.append(f"flow stage ({self.flow_actors} actor(s)) busy {100 * balance['flow_busy']:.0f}% of the build; "
                       f"capacity: flow {balance['flow_frames_per_s']:.0f} frames/s, CPU stages "
                       f"{balance['cpu_frames_per_s']:.0f} frames/s on {balance['cpu_workers']} CPU(s): "
                       f"{waits}")
        if self.flow_precision:
            out.append(f"flow precision: {self.flow_precision}")
        if len(self.nodes) > 1:
            out.append("clips per node: " + ", ".join(f"{n} {c}" for n, c in sorted(self.nodes.items())))
        if self.total_failed:
            out.append(f"{self.total_failed} clip(s) failed in all: see failures.jsonl in {self.out_dir}")
        for err in self.shard_errors:
            out.append(f"shard not built: {err}")
        if self.shard_errors or not self.complete:
            out.append("the build is incomplete: rerun the same command to finish it")
        else:
            out += self.next_steps()
        return out

    def next_steps(self) -> list[str]:
        """Where the shards are and the commands a person runs next."""
        folder = _quoted(self.out_dir)
        return [
            f"shards in {self.out_dir} (manifest.json, failures.jsonl); next:",
            f"  flowprep verify --shards {folder}     # checksums and shapes",
            f"  flowprep stats --shards {folder}      # clips per split and label, QC",
            f"  flowprep preview --shards {folder} --out preview.png   # crops and flow, worst QC first",
            f"  flowprep train --shards {folder} --out runs/first      # a two-stream model",
        ]


def _quoted(path: str) -> str:
    return shlex.quote(path)
