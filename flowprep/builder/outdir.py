"""The output folder of a build: its manifest opened or refused, its leftovers cleared, its committed
shards reconciled with the plan. All of it runs under the folder's build lock (shards/lock.py), in
the driver, before any task is submitted or after every task has returned.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

from ..config import BuildConfig
from ..errors import FlowprepError
from ..files import TMP_SUFFIX, fsync_dir
from ..shards.layout import FAILURES_NAME, MANIFEST_NAME, is_shard_name
from ..shards.manifest import Manifest
from ..version import __version__
from .plan import PlannedShard

log = logging.getLogger(__name__)
VERSIONED = ("flowprep", "torch", "ptlflow", "dlib-bin", "opencv-python", "h5py", "hdf5plugin", "ray", "numpy", "av")


def open_manifest(out: Path, src: Path, layout: str, cfg: BuildConfig, overwrite: bool) -> Manifest:
    """The build's manifest: the folder's own to resume, or a fresh one; another build's is refused."""
    fresh = Manifest(
        config=cfg.output_dict(),
        config_fingerprint=cfg.fingerprint(),
        src=str(src),
        layout=layout,
        versions=versions(),
    )

    def changes(old: Manifest) -> list[str]:
        if old.config_fingerprint == fresh.config_fingerprint and old.src == fresh.src:
            return []
        found = differences(old.config, fresh.config)
        if old.src != fresh.src:
            found.append(f"src: {old.src} -> {fresh.src}")
        return found or ["fingerprint differs"]

    return resume_or_refuse(out, fresh, overwrite, changes, "a build made with other settings", "settings")


def resume_or_refuse(out: Path, fresh: Manifest, overwrite: bool, changes, holds: str, same: str) -> Manifest:
    """The manifest in ``out`` when ``changes(old)`` finds nothing against ``fresh`` (a resume), ``fresh`` when
    the folder has none (or ``overwrite`` cleared it); else one line saying what differs and what to do."""
    if not (out / MANIFEST_NAME).exists():
        return fresh
    if overwrite:
        clear(out)
        return fresh
    old = Manifest.load(out)
    found = changes(old)
    if found:
        raise FlowprepError(
            f"{out} holds {holds} ({'; '.join(found)}). "
            f"Rerun with the same {same} to resume, pick another --out, or pass --overwrite to start over."
        )
    old.versions = fresh.versions
    return old


def clear(out: Path) -> None:
    """Remove what flowprep wrote in ``out`` (and nothing else). Runs under the build lock."""
    for path in out.iterdir():
        if is_shard_name(path.name) or path.name in (MANIFEST_NAME, FAILURES_NAME) or is_temporary(path.name):
            path.unlink()
    fsync_dir(out)


def is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


def remove_stale_temporaries(out: Path) -> None:
    """Remove every temporary in ``out``. Only under the build lock: no other build can own one then, and
    this build's own writers start later (at start-up) or have all returned (at the end), so any
    temporary belongs to an attempt that died. Writers are this build's tasks on any node of the
    cluster, so the lock, not the temporary's name, tells who may be writing."""
    for path in out.iterdir():
        if is_temporary(path.name):
            path.unlink(missing_ok=True)


def reconcile(manifest: Manifest, plan: list[PlannedShard], out: Path) -> list[PlannedShard]:
    """Keep committed shards that match the plan and exist; return the shards still to build.

    Every other shard file goes: a shard of an earlier plan (its source has fewer clips now, or other
    ones), a committed shard whose planned clips changed, or one placed by a build killed before it
    committed. The manifest is saved without them first, so a crash in between leaves no entry
    without its file. A writer never replaces a file in place, so this is what lets it write."""
    planned = {p.name: p for p in plan}
    keep = []
    for entry in manifest.shards:
        p = planned.get(entry.name)
        path = out / entry.name
        if p is not None and p.plan_hash == entry.plan_hash and path.is_file() and path.stat().st_size == entry.bytes:
            keep.append(entry)
    manifest.shards = keep
    manifest.save(out)  # also rewrites failures.jsonl from the manifest, should a crash have left it behind
    done = {e.name for e in keep}
    removed = []
    for path in sorted(out.iterdir()):
        if is_shard_name(path.name) and path.name not in done:
            path.unlink()
            if path.name not in planned:
                removed.append(path.name)
    if removed:
        log.warning("flowprep: removed %d shard(s) that the current plan does not contain (their source has fewer "
                    "clips now): %s", len(removed), ", ".join(removed))
    fsync_dir(out)
    return [p for p in plan if p.name not in done]


def differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def versions() -> dict[str, str]:
    found = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    found["flowprep"] = __version__
    return found
