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
from .schema import CLIP, FRAME, GROUP, INDEX, PAIR, SAMPLE, TIME_UNITS, Row, row, rows


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
    """Every row of the schema the clips have. Streams come first: they decide which units (frame,
    pair, sample) the shard holds, hence its offsets; then the per-clip rows and the qc group."""
    size = int(attrs["roi_size"])
    streams: dict[str, list[np.ndarray]] = {}
    units: dict[str, np.ndarray] = {}  # unit -> rows per clip
    for stream in rows(TIME_UNITS):
        arrays = _present(stream, [getattr(r, stream.name, None) for r in results], results)
        if arrays is None:
            continue
        counts = np.array([len(a) for a in arrays], np.int64)
        expected = units.get(stream.per, _unit_rows(stream.per, results))
        bad = np.flatnonzero(counts != expected) if expected is not None else []
        if len(bad):
            raise ValueError(f"{stream.name} of clip {results[bad[0]].record.clip_id} has {counts[bad[0]]} rows, "
                             f"expected {expected[bad[0]]} (one per {stream.per})")
        streams[stream.name], units[stream.per] = arrays, counts
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update({"format_version": FORMAT_VERSION, "flowprep_version": __version__, "split": split, **attrs})
        if SAMPLE in units:
            f.attrs.update(_audio_attrs(results))
        for field_ in rows((CLIP, INDEX, GROUP)):
            if field_.per == INDEX:
                if field_.indexes in units:
                    offsets = np.concatenate([[0], np.cumsum(units[field_.indexes])]).astype(np.int64)
                    f.create_dataset(field_.name, data=offsets)
            elif field_.per == GROUP:
                group = f.create_group(field_.name)
                for key in sorted({k for r in results for k, v in r.qc.items() if _is_number(v)}):
                    values = np.array([float(r.qc.get(key, np.nan)) for r in results], field_.dtype)
                    group.create_dataset(key, data=values)
            else:
                data = _per_clip(field_, results)
                if data is not None:
                    str_dtype = h5py.string_dtype() if field_.dtype == "str" else None
                    f.create_dataset(field_.name, data=data, dtype=str_dtype)
        for name, arrays in streams.items():
            stream = row(name)
            _stack(f, name, arrays, _stored_dtype(stream, attrs), stream.shape_for(size), comp)


def _unit_rows(unit: str, results: list[ClipResult]) -> np.ndarray | None:
    """Rows per clip that a unit must have: T frames, T-1 pairs; None where the stream sets it."""
    frames = np.array([r.num_frames for r in results], np.int64)
    return {FRAME: frames, PAIR: np.maximum(frames - 1, 0)}.get(unit)


def _present(row: Row, values: list, results: list[ClipResult]) -> list | None:
    """The row's values, with its fill where a clip has none; None when the shard leaves the row
    out (an optional row that no clip has). A row some clips have and others not is refused."""
    if row.fill is not None:
        fill = np.full(row.shape_for(0), row.fill) if row.shape else row.fill
        return [fill if v is None else v for v in values]
    missing = [i for i, v in enumerate(values) if v is None]
    if row.optional and len(missing) == len(values):
        return None
    if missing:
        others = " while others have it" if len(missing) < len(values) else ""
        raise ValueError(f"clip {results[missing[0]].record.clip_id} reached the writer without {row.name}{others}")
    return values


def _per_clip(row: Row, results: list[ClipResult]) -> np.ndarray | None:
    """A per-clip row's (N, ...) array: from the result's field of its name, else its record's."""
    values = _present(row, [getattr(r, row.name) if hasattr(r, row.name) else getattr(r.record, row.name, None)
                            for r in results], results)
    if values is None:
        return None
    if row.dtype == "str":  # structured values (word timings) are stored as JSON
        return np.array([v if isinstance(v, str) else json.dumps([list(w) for w in v]) if v else "" for v in values],
                        dtype=object)
    return np.array(values, row.dtype).reshape((len(values),) + row.shape_for(0))


def _stored_dtype(row: Row, attrs: dict) -> np.dtype:
    """The row's dtype, or the one the build chose among several (attribute ``<name>_dtype``)."""
    dtype = str(attrs.get(f"{row.name}_dtype", row.dtype))
    if dtype not in row.dtypes:
        raise ValueError(f"{row.name} cannot be stored as {dtype}: use {', '.join(row.dtypes)}")
    return np.dtype(dtype)


def _audio_attrs(results: list[ClipResult]) -> dict:
    """The audio attributes: one rate for every clip of the shard."""
    rates = {int(r.audio_rate) for r in results}
    if len(rates) != 1 or rates == {0}:
        raise ValueError(f"clips of one shard carry audio at different or unknown rates: {sorted(rates)}")
    return {"audio_rate": rates.pop(), "audio_dtype": row("audio").dtype}


def _stack(f: h5py.File, name: str, arrays: list[np.ndarray], dtype: np.dtype, trailing: tuple, comp: dict) -> None:
    """One dataset of all clips along time, chunked about one clip per chunk. Floats may narrow
    (float32 landmarks to float16); integers arrive as stored: their producer quantises them."""
    for a in arrays:
        a = np.asarray(a)
        if a.size and not np.can_cast(a.dtype, dtype, "same_kind" if dtype.kind == "f" else "safe"):
            raise ValueError(f"{name} reaches the writer as {a.dtype}; shards store it as {dtype}, "
                             f"which its producer makes")
    data = np.concatenate([np.asarray(a, dtype=dtype) for a in arrays], axis=0) if arrays else None
    if data is None or data.shape[0] == 0:
        f.create_dataset(name, shape=(0,) + trailing, dtype=dtype)
        return
    per_chunk = max(1, int(np.median([len(a) for a in arrays])))
    chunks = (min(per_chunk, data.shape[0]),) + data.shape[1:]
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

