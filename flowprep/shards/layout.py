"""Shard files and folders: names, the format version and compression. What a shard file holds is
the schema table in schema.py (one row per dataset); in short:

    attrs           format_version, flowprep_version, config_fingerprint, roi_size, flow_dtype, flow_scale, ...
    per clip (N,)   clip_id, split, word, source, path, text, word_times, label, length, fps, boundary,
                    qc/<name>; audio_start (with --audio)
    offsets (N+1,)  offset (frames), flow_offset (pairs), audio_offset (samples, with --audio)
    per frame       gray (sum T, S, S) uint8, landmarks (sum T, 68, 2) float16, affine (sum T, 2, 3) float32
    per pair        flow (sum T-1, 2, S, S) int8|int16|float16, pixels = stored * flow_scale
    per sample      audio (sum samples,) int16 at audio_rate (with --audio)

All clips are concatenated along time, one HDF5 file per shard of clips; a folder holds the shards,
manifest.json and failures.jsonl. New rows need no new FORMAT_VERSION: readers find rows by name.
"""

from __future__ import annotations

import re

FORMAT_VERSION = 1
SHARD_SUFFIX = ".h5"
MANIFEST_NAME = "manifest.json"
FAILURES_NAME = "failures.jsonl"


# what shard_name makes: a split (letters, digits, _ . -) and a five-digit index; never a path
_SHARD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*-\d{5}\.h5")


def shard_name(split: str, index: int) -> str:
    name = f"{split}-{index:05d}{SHARD_SUFFIX}"
    if not is_shard_name(name):
        raise ValueError(f"split {split!r} cannot name a shard file: use letters, digits, '_', '.' and '-'")
    return name


def is_shard_name(name: object) -> bool:
    """A plain shard file name (``train-00003.h5``): no folder part, no '..', not hidden."""
    return isinstance(name, str) and _SHARD_NAME.fullmatch(name) is not None


def compression_options(name: str, level: int) -> dict:
    """h5py create_dataset keyword arguments for a compression choice.

    lz4hc (Blosc, byte shuffle) is the default: it reads fastest, zstd stores a little less, and
    shards are written once and read every epoch (``flowprep bench build --compression NAME`` prints
    the bytes per clip, ``flowprep bench read`` the reads per second; the README keeps the figures).
    Readers need `import hdf5plugin` (flowprep's reader does it).
    """
    import hdf5plugin  # registers the filters

    if name == "lz4hc":
        return dict(hdf5plugin.Blosc(cname="lz4hc", clevel=level, shuffle=hdf5plugin.Blosc.SHUFFLE))
    if name == "zstd":
        return dict(hdf5plugin.Zstd(clevel=level))
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": level}
    if name == "none":
        return {}
    raise ValueError(f"unknown compression {name!r}: use lz4hc, zstd, gzip or none")
