"""`flowprep verify`: is every shard the manifest lists present, intact and well-formed?

Each problem is one line naming the file and what is wrong with it, with what to do; no problem
means the folder is exactly what the build committed, and the build ran to its end: a folder
whose build was interrupted is a problem too, however sound each of its shards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import TMP_SUFFIX, file_sha256
from .layout import FAILURES_NAME, MANIFEST_NAME, SHARD_SUFFIX
from .lock import LOCK_NAME
from .manifest import Manifest
from .schema import FRAME, PAIR, SAMPLE, offsets_name, rows


RERUN = "rerun the same `flowprep build` command"

def verify(root: str | Path, checksums: bool = True) -> list[str]:
    """Problems found in the shard folder ``root`` (empty list: all good)."""
    root = Path(root)
    manifest = Manifest.load(root)  # a missing or unreadable manifest is itself a FlowprepError
    problems: list[str] = []
    if not manifest.complete:
        totals = manifest.totals()
        problems.append(
            f"incomplete build: {manifest.missing_clips} of {manifest.planned_clips} planned clips are neither "
            f"stored ({totals['clips']}) nor recorded as failed ({totals['failed']}); {RERUN} to resume it"
        )
    listed = {s.name for s in manifest.shards}
    for path in sorted(root.iterdir()):
        if path.name in listed or path.name in (MANIFEST_NAME, FAILURES_NAME, LOCK_NAME):
            continue
        if path.suffix == SHARD_SUFFIX:
            problems.append(f"{path.name}: a shard the manifest does not list (left by an interrupted or an earlier "
                            f"build); {RERUN}: it removes shards the current plan does not contain")
        elif path.name.endswith(TMP_SUFFIX):
            problems.append(f"{path.name}: a temporary file from an interrupted build; {RERUN}: it removes it")
        else:
            problems.append(f"{path.name}: unknown file in a shard folder")
    failures = root / FAILURES_NAME
    try:
        if failures.read_text() != manifest.failures_jsonl():
            problems.append(f"{FAILURES_NAME}: disagrees with the failures in {MANIFEST_NAME} (a crash between "
                            f"their writes); {RERUN}: it rewrites {FAILURES_NAME} from the manifest")
    except OSError as exc:
        problems.append(f"{FAILURES_NAME}: unreadable ({exc.strerror}); {RERUN}: it rewrites it from the manifest")
    for entry in manifest.shards:
        path = root / entry.name
        if not path.is_file():
            problems.append(f"{entry.name}: missing (listed in the manifest)")
            continue
        size = path.stat().st_size
        if size != entry.bytes:
            problems.append(f"{entry.name}: {size} bytes, the manifest says {entry.bytes} (truncated or replaced)")
            continue
        if checksums and file_sha256(path) != entry.sha256:
            problems.append(f"{entry.name}: sha256 differs from the manifest (the file was modified or corrupted)")
            continue
        problems += [f"{entry.name}: {p}" for p in _check_contents(path, entry, manifest)]
    return problems


def _check_contents(path: Path, entry, manifest: Manifest) -> list[str]:
    """Every row of the schema: present unless optional, one entry per clip, offsets that agree with
    the clip lengths, time-major streams of the shape and dtype the schema gives, floats finite."""
    import h5py
    import hdf5plugin  # noqa: F401

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return [f"not a readable HDF5 file ({exc})"]
    out: list[str] = []
    try:
        n = entry.clips
        size = int(f.attrs.get("roi_size", -1))
        if f.attrs.get("config_fingerprint") != manifest.config_fingerprint:
            out.append("written with another config fingerprint than the manifest's")
        out += [f"dataset {r.name!r} missing" for r in rows() if not r.optional and r.name not in f]
        if out:
            return out
        if len(f["clip_id"]) != n or len(f["label"]) != n:
            out.append(f"{len(f['clip_id'])} clips, the manifest says {n}")
        length = f["length"][()]
        offset, flow_offset = f[offsets_name(FRAME)][()], f[offsets_name(PAIR)][()]
        if len(offset) != n + 1 or offset[0] != 0 or np.any(np.diff(offset) != length):
            out.append("offsets do not match clip lengths")
        if len(flow_offset) != n + 1 or np.any(np.diff(flow_offset) != np.maximum(length - 1, 0)):
            out.append("flow offsets do not match clip lengths")
        frames = int(offset[-1]) if len(offset) else 0
        if frames != entry.frames:
            out.append(f"{frames} frames, the manifest says {entry.frames}")
        # shapes follow the manifest's count, so damaged offsets cannot hide damaged data
        leading = {FRAME: entry.frames, PAIR: entry.frames - n}
        for r in rows((FRAME, PAIR)):
            if r.optional and r.name not in f:
                continue
            ds = f[r.name]
            shape = (leading[r.per],) + r.shape_for(size)
            if ds.shape != shape:
                out.append(f"{r.name} has shape {ds.shape}, expected {shape}")
            if str(ds.dtype) not in r.dtypes:
                out.append(f"{r.name} has dtype {ds.dtype}, expected {' or '.join(sorted(r.dtypes))}")
            elif ds.dtype.kind == "f" and not _all_finite(ds):
                out.append(f"{r.name} holds NaN or inf")
        out += _check_audio(f, entry, manifest, length)
    except (OSError, KeyError, ValueError) as exc:
        out.append(f"unreadable: {exc}")
    finally:
        f.close()
    return out


def _check_audio(f, entry, manifest: Manifest, length: np.ndarray) -> list[str]:
    """The audio datasets of a build with --audio: present, consistent offsets, one rate, the samples
    of every clip's frames (round(T * rate / fps) from frame 0)."""
    audio_datasets = _audio_datasets()
    present = [k for k in audio_datasets if k in f]
    wanted = bool(manifest.config.get("audio"))
    if not present:
        return ["dataset 'audio' missing (the build asked for --audio)"] if wanted and entry.clips else []
    out = [f"dataset {k!r} missing" for k in audio_datasets if k not in f]
    if out:
        return out
    if not wanted:
        out.append("holds audio, but the manifest's config has audio off")
    n = entry.clips
    rate = int(f.attrs.get("audio_rate", 0))
    if rate <= 0:
        return out + ["attribute 'audio_rate' missing or not positive"]
    if manifest.config.get("audio_rate") not in (None, rate):
        out.append(f"audio at {rate} Hz, the manifest's config says {manifest.config.get('audio_rate')}")
    ds, offset, start = f["audio"], f["audio_offset"][()], f["audio_start"][()]
    if str(ds.dtype) != "int16" or ds.ndim != 1:
        out.append(f"audio has dtype {ds.dtype} and shape {ds.shape}, expected int16 (samples,)")
    if len(offset) != n + 1 or offset[0] != 0 or np.any(np.diff(offset) < 0) or offset[-1] != ds.shape[0]:
        return out + [f"audio offsets do not match the {ds.shape[0]} stored samples of {n} clips"]
    if len(start) != n or np.any(start < 0) or np.any(start > np.diff(offset)):
        return out + ["audio_start outside the clips' audio"]
    fps = f["fps"][()].astype(np.float64)
    expected = np.round(length * rate / np.where(fps > 0, fps, np.nan))
    bad = np.flatnonzero(~(np.abs(np.diff(offset) - start - expected) <= 1))  # 1 sample: fps stored as float32
    if len(bad):
        clip_ids = f["clip_id"].asstr()[()]
        out.append(f"audio of {len(bad)} clip(s) does not span their frames at {rate} Hz "
                   f"(first: {clip_ids[bad[0]]}, {int(offset[bad[0] + 1] - offset[bad[0]] - start[bad[0]])} samples "
                   f"for {int(length[bad[0]])} frames)")
    return out


def _audio_datasets() -> tuple[str, ...]:
    """The rows a build with --audio adds: its samples, their offsets, where each clip's frame 0 starts."""
    return (offsets_name(SAMPLE), "audio_start") + tuple(r.name for r in rows(SAMPLE))


def _all_finite(ds, step: int = 4096) -> bool:
    return all(np.isfinite(ds[i:i + step]).all() for i in range(0, ds.shape[0], step))
