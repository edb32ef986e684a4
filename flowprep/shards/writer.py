"""Write one shard atomically: a temporary file, fsync, then a rename (flowprep.files.AtomicFile).

A reader, or a rerun, only ever sees a shard that is complete: the final name appears in one step
after every byte is on disk. The temporary name is unique per attempt, so a retried or duplicated
writer (Ray retries work) can never interleave with another.

The first writer of a shard wins: the final name is placed only if absent, never replaced. A retried
writer whose shard is already in place (its first attempt placed the file, then its worker died
before reporting) adopts the file on disk and describes it, even when its own bytes would differ
(PWC-Net on CUDA is not bit-reproducible), so the manifest always describes the file that is there.
The driver removes every shard file that is not committed before it starts writers, so a file in
place is always one of this build's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..version import __version__
from ..errors import FlowprepError
from ..files import AtomicFile, file_sha256
from .layout import FORMAT_VERSION, compression_options
from .manifest import ShardEntry
from .records import ClipFailure, ClipResult


@dataclass
class ShardSummary:
    """A written shard: its manifest entry, plus what the build report wants to know about it."""

    entry: ShardEntry
    timings: dict[str, float] = field(default_factory=dict)  # summed stage seconds over the shard's clips
    nodes: dict[str, int] = field(default_factory=dict)  # clips per node that processed them


def write_shard(
    out_dir: str | Path,
    name: str,
    split: str,
    plan_hash: str,
    items: list[ClipResult | ClipFailure],
    attrs: dict,
    compression: str = "lz4hc",
    level: int = 3,
) -> ShardSummary:
    out_dir = Path(out_dir)
    results = [it for it in items if isinstance(it, ClipResult)]
    failures = [it for it in items if isinstance(it, ClipFailure)]
    final = out_dir / name
    attrs = {**attrs, "plan_hash": plan_hash}
    commit = AtomicFile(final, replace=False)
    with commit as tmp:
        _write_h5(tmp, split, results, attrs, compression_options(compression, level))
        sha = file_sha256(tmp)
    if commit.placed:
        moments = _moments(results, float(attrs.get("flow_scale", 1.0)))
        clips, frames = len(results), sum(r.num_frames for r in results)
    else:
        sha, clips, frames, moments = _adopt(final, attrs)
    timings: dict[str, float] = {}
    nodes: dict[str, int] = {}
    for it in items:
        for key, value in it.timings.items():
            timings[key] = timings.get(key, 0.0) + value
    for it in results:
        nodes[it.node] = nodes.get(it.node, 0) + 1
    entry = ShardEntry(
        name=name,
        split=split,
        clips=clips,
        frames=frames,
        bytes=final.stat().st_size,
        sha256=sha,
        plan_hash=plan_hash,
        failures=[f.to_json() for f in failures],
        moments=moments,
    )
    return ShardSummary(entry=entry, timings=timings, nodes=nodes)


def _adopt(final: Path, attrs: dict) -> tuple[str, int, int, dict[str, float]]:
    """Describe the shard an earlier attempt of this build placed at ``final``."""
    with h5py.File(final, "r") as f:
        mine = all(f.attrs.get(k) == attrs[k] for k in ("plan_hash", "config_fingerprint"))
        if not mine:
            raise FlowprepError(f"{final} appeared while this build wrote it, from another plan or config: is "
                                "another build writing this folder? Rerun the build alone; it removes the file.")
        lengths = f["length"][()].astype(np.int64)
        scale = float(f.attrs.get("flow_scale", 1.0))
        gray = f["gray"][()]
        flow = f["flow"][()]
    flow_offset = np.concatenate([[0], np.cumsum(np.maximum(lengths - 1, 0))])
    offset = np.concatenate([[0], np.cumsum(lengths)])
    stored = [_Stored(gray[offset[i]:offset[i + 1]], flow[flow_offset[i]:flow_offset[i + 1]])
              for i in range(len(lengths))]
    return file_sha256(final), len(lengths), int(lengths.sum()), _moments(stored, scale)


@dataclass
class _Stored:
    """A clip's pixels as read back from a shard, for _moments."""

    gray: np.ndarray
    flow: np.ndarray


def _write_h5(path: Path, split: str, results: list[ClipResult], attrs: dict, comp: dict) -> None:
    lengths = np.array([r.num_frames for r in results], np.int64)
    offset = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flow_lengths = np.maximum(lengths - 1, 0)
    flow_offset = np.concatenate([[0], np.cumsum(flow_lengths)]).astype(np.int64)
    str_dt = h5py.string_dtype()
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update({"format_version": FORMAT_VERSION, "flowprep_version": __version__, "split": split, **attrs})
        recs = [r.record for r in results]
        f.create_dataset("clip_id", data=np.array([r.clip_id for r in recs], dtype=object), dtype=str_dt)
        f.create_dataset("split", data=np.array([r.split for r in recs], dtype=object), dtype=str_dt)
        f.create_dataset("word", data=np.array([r.word for r in recs], dtype=object), dtype=str_dt)
        f.create_dataset("source", data=np.array([r.source for r in recs], dtype=object), dtype=str_dt)
        f.create_dataset("path", data=np.array([r.path for r in recs], dtype=object), dtype=str_dt)
        _write_text(f, recs, str_dt)
        f.create_dataset("label", data=np.array([r.label for r in recs], np.int32))
        f.create_dataset("length", data=lengths.astype(np.int32))
        f.create_dataset("fps", data=np.array([r.fps for r in results], np.float32))
        bounds = np.array([r.boundary if r.boundary else (np.nan, np.nan) for r in recs], np.float32).reshape(-1, 2)
        f.create_dataset("boundary", data=bounds)
        f.create_dataset("offset", data=offset)
        f.create_dataset("flow_offset", data=flow_offset)
        qc = f.create_group("qc")
        for key in sorted({k for r in results for k, v in r.qc.items() if _is_number(v)}):
            qc.create_dataset(key, data=np.array([float(r.qc.get(key, np.nan)) for r in results], np.float32))
        size = int(attrs["roi_size"])
        _stack(f, "gray", [r.gray for r in results], np.uint8, (size, size), comp)
        _stack(f, "landmarks", [r.landmarks for r in results], np.float16, (68, 2), comp)
        _stack(f, "affine", [r.affine for r in results], np.float32, (2, 3), comp)
        flows = [r.flow for r in results]
        if any(fl is None for fl in flows):
            raise ValueError("a clip reached the writer without flow")
        _stack(f, "flow", flows, np.dtype(attrs["flow_dtype"]), (2, size, size), comp)
        _write_audio(f, results, comp)


def _write_text(f: h5py.File, recs: list, str_dt) -> None:
    """What is said in each clip (``text``) and, where known, each word's timing (``word_times``:
    a JSON list of [word, start_s, end_s] per clip, "" when unknown). JSON per clip rather than an
    offsets table: a handful of words per clip, read with the clip, and one string field is what
    every HDF5 reader already handles."""
    f.create_dataset("text", data=np.array([getattr(r, "text", "") for r in recs], dtype=object), dtype=str_dt)
    times = [json.dumps([list(w) for w in r.word_times]) if getattr(r, "word_times", None) else "" for r in recs]
    f.create_dataset("word_times", data=np.array(times, dtype=object), dtype=str_dt)


def _write_audio(f: h5py.File, results: list[ClipResult], comp: dict) -> None:
    """The audio datasets, when the clips carry audio (a build with --audio): every clip or none."""
    have = [r.audio is not None for r in results]
    if not any(have):
        return
    if not all(have):
        missing = next(r.record.clip_id for r in results if r.audio is None)
        raise ValueError(f"clip {missing} reached the writer without audio while others have it")
    if any(np.asarray(r.audio).dtype != np.int16 for r in results):
        raise ValueError("audio reaches the writer as int16 samples (decode_audio's default)")
    rates = {int(r.audio_rate) for r in results}
    if len(rates) != 1 or rates == {0}:
        raise ValueError(f"clips of one shard carry audio at different or unknown rates: {sorted(rates)}")
    counts = np.array([len(r.audio) for r in results], np.int64)
    f.attrs["audio_rate"] = rates.pop()
    f.attrs["audio_dtype"] = "int16"
    f.create_dataset("audio_offset", data=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
    f.create_dataset("audio_start", data=np.zeros(len(results), np.int64))
    _stack(f, "audio", [r.audio for r in results], np.int16, (), comp)


def _stack(f: h5py.File, name: str, arrays: list[np.ndarray], dtype, trailing: tuple, comp: dict) -> None:
    """One dataset of all clips along time, chunked about one clip per chunk."""
    data = np.concatenate([np.asarray(a, dtype=dtype) for a in arrays], axis=0) if arrays else None
    if data is None or data.shape[0] == 0:
        f.create_dataset(name, shape=(0,) + trailing, dtype=dtype)
        return
    rows = max(1, int(np.median([len(a) for a in arrays])))
    chunks = (min(rows, data.shape[0]),) + data.shape[1:]
    f.create_dataset(name, data=data, chunks=chunks, **comp)


def _moments(results: list[ClipResult] | list[_Stored], flow_scale: float) -> dict[str, float]:
    """Sums from which the manifest derives gray mean/std and flow std over the whole dataset."""
    m = {"gray_n": 0.0, "gray_sum": 0.0, "gray_sumsq": 0.0, "flow_n": 0.0, "flow_sumsq": 0.0}
    for r in results:
        g = r.gray.astype(np.float64) / 255.0
        m["gray_n"] += g.size
        m["gray_sum"] += float(g.sum())
        m["gray_sumsq"] += float(np.square(g).sum())
        if r.flow is not None and r.flow.size:
            m["flow_n"] += r.flow.size
            m["flow_sumsq"] += float(np.square(r.flow.astype(np.float64) * flow_scale).sum())
    return m


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

