"""`flowprep reflow`: new optical flow from the crops a build already stored.

Comparing flow methods should not cost a second decode, face detection and crop of every video: the
crops are in the shards. A reflow reads each clip's gray crops (and every other per-clip field) back
from a finished, verified shard folder, computes flow with another backend through the build's own
flow stage (in the read task for CPU backends, in flow actors for model backends), and writes a new
folder with the same shards, the same clips in the same order and the parent's failures carried over.
Its shards are what a direct build with that flow writes: same config fingerprint, same datasets.

Everything else is the build's: the driver loop, the lock, resume of committed shards, the writer,
the report. The manifest's ``parent`` records the source folder, its fingerprint and a digest of its
shards, so a rerun resumes only a reflow of the very same parent.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import BuildConfig, FlowConfig
from ..errors import FlowprepError
from ..shards.layout import MANIFEST_NAME
from ..shards.lock import BuildLock
from ..shards.manifest import Manifest
from ..shards.records import ClipFailure, ClipResult
from ..shards.verify import verify
from ..sources import ClipRecord
from . import stages
from .executor import RayExecutor
from .report import BuildReport
from .outdir import differences, reconcile, remove_stale_temporaries, resume_or_refuse, versions
from .runner import _run, _sees

READ = stages.StageSpec("read", num_cpus=1.0)


@dataclass(frozen=True)
class StoredClip:
    """Clip ``index`` of the parent shard at ``path``: a read task's input."""

    path: str
    index: int
    clip_id: str
    split: str


@dataclass
class CarriedFailure(ClipFailure):
    """A clip the parent build could not use: written to the new shard's failures as the parent recorded it."""

    recorded: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.recorded)


@dataclass(frozen=True)
class ReflowShard:
    """One shard to write: the parent's shard of the same name, clips and failures in plan order."""

    name: str
    split: str
    plan_hash: str
    records: tuple  # StoredClip | CarriedFailure


def reflow(
    src: str | Path,
    out: str | Path,
    flow: FlowConfig,
    *,
    overwrite: bool = False,
    progress: bool = True,
    workers: int | None = None,
    ray_address: str | None = None,
    stall_timeout: float = BuildConfig.stall_timeout,
    executor: RayExecutor | None = None,
) -> BuildReport:
    """Write into ``out`` the shards of the finished build ``src`` with flow from ``flow``; resumes
    what an earlier reflow into ``out`` began. Refuses a source that is incomplete or fails verify."""
    src, out = Path(src).resolve(), Path(out).resolve()
    parent = _checked_parent(src)
    if out == src:
        raise FlowprepError(f"--out {out} is the source folder: give a new folder for the reflowed shards")
    if src in out.parents:  # the source would then hold a folder verify does not expect
        raise FlowprepError(f"--out {out} is inside the source folder {src}: give a folder outside it")
    if out.exists() and not out.is_dir():
        raise FlowprepError(f"--out {out} is a file: give a folder (it is made when missing)")
    cfg = _child_config(parent, src, flow, workers, ray_address, stall_timeout)
    if cfg.flow.backend == "pwcnet":
        from ..flow.pwcnet import resolve_checkpoint

        resolve_checkpoint(cfg.flow.ckpt)  # fail in a second, with the fix, not after starting a cluster
    out.mkdir(parents=True, exist_ok=True)
    with BuildLock(out):
        return _reflow_locked(src, parent, out, cfg, overwrite, progress, executor)


def _reflow_locked(src: Path, parent: Manifest, out: Path, cfg: BuildConfig, overwrite: bool, progress: bool,
                   executor: RayExecutor | None) -> BuildReport:
    manifest = open_manifest(out, src, parent, cfg, overwrite)
    remove_stale_temporaries(out)
    plan = plan_reflow(src, parent)
    todo = reconcile(manifest, plan, out)
    report = BuildReport(out_dir=str(out), planned_clips=manifest.planned_clips,
                         skipped_shards=len(plan) - len(todo), failed=len(parent.discovery_failures))
    own_executor = executor is None
    ex = executor or RayExecutor(address=cfg.ray_address, num_cpus=cfg.workers)
    if own_executor:
        ex.start()
    try:
        _check_shared_src(ex, src)
        _run(ex, manifest, todo, cfg, out, report, progress, task=(READ, read_clip), name="reflow")
    finally:
        if own_executor:
            ex.close()
            remove_stale_temporaries(out)
    report.total_failed = manifest.totals()["failed"]
    report.complete = manifest.complete
    return report


# ---- the parent ------------------------------------------------------------------------------
def _checked_parent(src: Path) -> Manifest:
    """The source folder's manifest, once it is known to be a finished build that verify passes."""
    if not src.is_dir():
        raise FlowprepError(f"{src} is not a folder: give the shard folder of a finished `flowprep build`")
    parent = Manifest.load(src)
    if not parent.complete:
        raise FlowprepError(
            f"{src} is an incomplete build ({parent.missing_clips} of {parent.planned_clips} planned clips missing): "
            "rerun its `flowprep build` command to finish it, then reflow it"
        )
    problems = verify(src)
    if problems:
        raise FlowprepError(f"{src} fails `flowprep verify` ({len(problems)} problem(s), first: {problems[0]}); "
                            f"run `flowprep verify --shards {src}` and rebuild it before a reflow")
    return parent


def _child_config(parent: Manifest, src: Path, flow: FlowConfig, workers: int | None, ray_address: str | None,
                  stall_timeout: float) -> BuildConfig:
    """The parent's settings with the new flow: the config a direct build of these shards would have."""
    try:
        cfg = BuildConfig.from_dict(parent.config)
    except (TypeError, ValueError) as exc:
        raise FlowprepError(f"{src}/manifest.json holds settings this flowprep does not know ({exc}): "
                            "reflow it with the flowprep version that built it") from None
    if cfg.fingerprint() != parent.config_fingerprint:
        raise FlowprepError(f"{src}/manifest.json: its settings do not give its own fingerprint (the manifest was "
                            "edited, or written by another flowprep version): rebuild the source folder")
    return cfg.replace(flow=flow, workers=workers, ray_address=ray_address, stall_timeout=stall_timeout)


def _parent_record(src: Path, parent: Manifest) -> dict:
    digest = hashlib.sha256("".join(f"{s.name} {s.sha256}\n" for s in parent.shards).encode()).hexdigest()[:16]
    return {"folder": str(src), "config_fingerprint": parent.config_fingerprint,
            "flow_backend": parent.flow_backend.get("name", parent.config.get("flow", {}).get("backend")),
            "shards_digest": digest}


def plan_reflow(src: Path, parent: Manifest) -> list[ReflowShard]:
    """One shard per parent shard: its stored clips and its failures, merged in the build's plan order
    (clip id within the split), so the writer records failures where a direct build would."""
    import h5py

    plan = []
    for entry in parent.shards:
        path = src / entry.name
        with h5py.File(path, "r") as f:
            ids = f["clip_id"].asstr()[()]
        items: list = [StoredClip(str(path), i, str(cid), entry.split) for i, cid in enumerate(ids)]
        for rec in entry.failures:
            record = ClipRecord(clip_id=str(rec.get("clip_id", "")), path=str(rec.get("path", "")),
                                split=str(rec.get("split", entry.split)), label=-1, word="", source="")
            items.append(CarriedFailure(record, str(rec.get("stage", "")), str(rec.get("reason", "")), recorded=rec))
        items.sort(key=lambda it: it.clip_id if isinstance(it, StoredClip) else it.record.clip_id)
        plan.append(ReflowShard(entry.name, entry.split, entry.plan_hash, tuple(items)))
    return plan


def _check_shared_src(ex, src: Path) -> None:
    """Read tasks run on any node: each must see the source folder's manifest as the driver does."""
    if ex.resources()["nodes"] <= 1:
        return
    manifest = src / MANIFEST_NAME
    mine = manifest.read_text()
    blind = sorted(node for node, text in ex.on_each_node(_sees, str(manifest)).items() if text != mine)
    if blind:
        raise FlowprepError(f"the source folder {src} is not shared with every Ray node: {', '.join(blind)} cannot "
                            "see it. Read tasks run on any node, so it must be mounted at the same path on all.")


# ---- the output folder -------------------------------------------------------------------------
def open_manifest(out: Path, src: Path, parent: Manifest, cfg: BuildConfig, overwrite: bool) -> Manifest:
    fresh = Manifest(config=cfg.output_dict(), config_fingerprint=cfg.fingerprint(), src=parent.src,
                     layout=parent.layout, versions=versions(), classes=list(parent.classes),
                     planned_clips=parent.planned_clips, discovery_failures=list(parent.discovery_failures),
                     parent=_parent_record(src, parent))

    def changes(old: Manifest) -> list[str]:
        if old.config_fingerprint == fresh.config_fingerprint and old.parent == fresh.parent:
            return []
        found = differences(old.config, fresh.config) + [
            f"parent {k}: {(old.parent or {}).get(k)!r} -> {v!r}" for k, v in fresh.parent.items()
            if (old.parent or {}).get(k) != v]
        return found or ["fingerprint differs"]

    return resume_or_refuse(out, fresh, overwrite, changes, "shards made from another source or with other settings",
                            "source and settings")


# ---- the read stage ----------------------------------------------------------------------------
# Open shards kept per worker process: opening one reads its whole per-clip table (tens of ms), more
# than reading a clip's crops, and a worker reads many clips of one shard in a row. The key holds the
# file's identity, so a shard replaced under its name is opened afresh.
OPEN_SHARDS = 2
_open_shards: OrderedDict = OrderedDict()


def _shard(path: str, opener):
    st = os.stat(path)
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    shard = _open_shards.pop(key, None)
    if shard is None:
        shard = opener(path)
    _open_shards[key] = shard
    while len(_open_shards) > OPEN_SHARDS:
        _open_shards.popitem(last=False)[1].close()
    return shard


def read_clip(item: StoredClip | ClipFailure, cfg: BuildConfig) -> ClipResult | ClipFailure:
    """One stored clip back as a ClipResult (crops, landmarks, affine, QC, audio, metadata), with its
    new flow when the backend runs on CPU; a failure of the parent build passes through as it is.

    A clip that cannot be read is not the clip's failure but a source that changed after it passed
    verify: an error, so its shard is not written and the reflow ends incomplete, never short."""
    if isinstance(item, ClipFailure):
        return item
    from ..shards.reader import ShardFile  # the shard format's own reader: no torch

    t0 = time.perf_counter()
    try:
        result = _stored_result(_shard(item.path, ShardFile), item.index)
    except (OSError, KeyError, ValueError, IndexError, FlowprepError) as exc:
        raise FlowprepError(f"{item.path}: cannot read clip {item.clip_id} ({exc}); the source folder changed "
                            "after the reflow checked it: run `flowprep verify` on it, then rerun") from None
    t1 = time.perf_counter()
    result.timings = {"read_s": t1 - t0}
    if stages.flow_runs_in_crop(cfg):
        try:
            stages._attach_flow([result], stages._flow_backend(cfg.flow), cfg.flow)
        except Exception as exc:  # as in a build: a clip the flow backend fails on is a failure record
            where = traceback.extract_tb(exc.__traceback__)[-1]
            reason = f"{type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
            return ClipFailure(result.record, "flow", reason, result.timings)
        result.timings["flow_s"] = time.perf_counter() - t1
    return result


def _stored_result(shard, i: int) -> ClipResult:
    meta = shard.meta
    start, end = (float(v) for v in meta["boundary"][i])
    times = str(meta["word_times"][i]) if "word_times" in meta else ""
    record = ClipRecord(
        clip_id=str(meta["clip_id"][i]), path=str(meta["path"][i]), split=str(meta["split"][i]),
        label=int(meta["label"][i]), word=str(meta["word"][i]), source=str(meta["source"][i]),
        boundary=(start, end) if np.isfinite(start) and np.isfinite(end) else None,
        text=str(meta["text"][i]) if "text" in meta else "",
        word_times=tuple((str(w), float(a), float(b)) for w, a, b in json.loads(times)) if times else None,
    )
    streams = ("gray", "landmarks", "affine") + (("audio",) if shard.has_audio else ())
    clip = shard.clip(i, streams=streams)
    result = ClipResult(record=record, gray=clip["gray"], landmarks=clip["landmarks"], affine=clip["affine"],
                        qc={k: float(v) for k, v in clip["qc"].items()}, fps=float(meta["fps"][i]))
    if shard.has_audio:
        result.audio, result.audio_rate = clip["audio"], int(clip["audio_rate"])
    return result

