"""`flowprep build` as a library call: plan shards, skip what is committed, run the rest on Ray.

Data flows one way: clip records -> crop tasks -> (flow actors) -> shard writers -> manifest.
The driver only schedules and commits; it never touches pixels, so it is not the bottleneck of a
cluster build and it can die at any moment without leaving a shard that looks complete.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import uuid
from collections import deque
from pathlib import Path

from tqdm.auto import tqdm

from ..config import BuildConfig
from ..errors import FlowprepError
from ..shards.layout import FORMAT_VERSION
from ..shards.lock import BuildLock
from ..shards.manifest import Manifest
from ..sources import scan
from . import stages
from .executor import RayExecutor
from .outdir import open_manifest, reconcile, remove_stale_temporaries
from .feed import FlowFeed
from .plan import plan_build
from .report import BuildReport
from .startup import start_while

log = logging.getLogger(__name__)
# tqdm's default bar turns a rate under one into s/clip; a build's bar always says clips/s.
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


def build(
    src: str | Path,
    out: str | Path,
    config: BuildConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
    executor: RayExecutor | None = None,
) -> BuildReport:
    """Build shards for every clip under ``src`` into ``out``; resumes what an earlier run began."""
    cfg = config or BuildConfig()
    src, out = Path(src).resolve(), Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with BuildLock(out):  # one build per folder, from before the first look at it to the last write
        return _build_locked(src, out, cfg, overwrite, progress, executor)


def _build_locked(src: Path, out: Path, cfg: BuildConfig, overwrite: bool, progress: bool,
                  executor: RayExecutor | None) -> BuildReport:
    from ..flow import check

    if cfg.landmarks is not None:  # a wrong folder fails now, not once per clip
        from ..roi.imported import landmarks_folder

        cfg = cfg.replace(landmarks=landmarks_folder(cfg.landmarks))

    if not src.is_dir():
        scan(src, cfg.layout, cfg.words, cfg.splits)  # says what is wrong with --src, before any cluster starts
    check(cfg.flow)  # an unknown backend, missing weights: fail in a second, with the fix, not after starting a cluster
    own_executor = executor is None
    ex = executor or RayExecutor(address=cfg.ray_address, num_cpus=cfg.workers)
    # the scan, the weight check and the manifest run while the cluster starts (see startup.py)
    manifest, todo, report = start_while(ex, own_executor, lambda: _prepare(src, out, cfg, overwrite))
    try:
        _run(ex, manifest, todo, cfg, out, report, progress)
    finally:
        if own_executor:
            ex.close()
            remove_stale_temporaries(out)  # its workers are gone: whatever they left half-written goes too
    totals = manifest.totals()
    report.total_failed = totals["failed"]
    report.complete = manifest.complete
    return report


def _prepare(src: Path, out: Path, cfg: BuildConfig, overwrite: bool) -> tuple[Manifest, list, BuildReport]:
    """What the driver knows before the first task: the plan, the manifest, the shards still to build."""
    found = scan(src, cfg.layout, cfg.words, cfg.splits)  # says so when --src is missing or not a folder
    records, layout = found.records, found.layout
    if cfg.limit is not None:
        records = records[: cfg.limit]
    plan = plan_build(records, cfg)
    manifest = open_manifest(out, src, layout, cfg, overwrite)
    remove_stale_temporaries(out)
    manifest.discovery_failures = [s.to_failure() for s in found.skipped]
    manifest.planned_clips = len(records) + len(found.skipped)
    manifest.classes = found.classes
    todo = reconcile(manifest, plan, out)
    report = BuildReport(out_dir=str(out), planned_clips=manifest.planned_clips,
                         skipped_shards=len(plan) - len(todo), failed=len(found.skipped))
    return manifest, todo, report


# ---- scheduling -----------------------------------------------------------------------------
def _sees(path: str) -> str:
    """Runs on each node: what that node finds at ``path`` ("" when it is missing)."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


def check_shared_out(ex, out: Path, nodes: int) -> None:
    """Writers run on any node, so every node must see --out as the driver does: a probe file
    written here must be read back, with the same token, on each node."""
    if nodes <= 1:
        return
    token = uuid.uuid4().hex
    probe = out / f".probe-{token[:8]}.tmp"
    probe.write_text(token)
    try:
        seen = ex.on_each_node(_sees, str(probe))
    finally:
        probe.unlink(missing_ok=True)
    blind = sorted(node for node, text in seen.items() if text != token)
    if blind:
        raise FlowprepError(
            f"--out {out} is not shared with every Ray node: {', '.join(blind)} cannot see it. Shard writers run "
            "on any node, so --out must be on a filesystem mounted at the same path on all of them (NFS, Lustre, ...)."
        )


class Watchdog:
    """Turns a build that cannot move into an error instead of a wait without end: no CPU left in the
    cluster (every node gone) fails at once; no progress at all for ``stall_timeout`` seconds fails too."""

    def __init__(self, ex, stall_timeout: float, check_every: float = 10.0):
        self.ex, self.stall_timeout, self.check_every = ex, stall_timeout, check_every
        self.last_progress = self.last_check = time.monotonic()

    def progressed(self) -> None:
        self.last_progress = time.monotonic()

    def check(self) -> None:
        now = time.monotonic()
        idle = now - self.last_progress
        if idle >= self.stall_timeout:
            raise FlowprepError(
                f"no clip finished for {idle:.0f} s (--stall-timeout): the cluster cannot run the work. "
                "Check `ray status`; committed shards are kept, so a rerun resumes."
            )
        if idle >= self.check_every and now - self.last_check >= self.check_every:
            self.last_check = now
            if self.ex.resources()["CPU"] < 1:
                raise FlowprepError(
                    "the Ray cluster has no live node with a CPU left. Restart its nodes and rerun the same "
                    "command: committed shards are kept and the build resumes."
                )


def _run(ex, manifest: Manifest, todo, cfg: BuildConfig, out: Path, report: BuildReport, progress: bool,
         task: tuple = (stages.CROP, stages.crop_clip), name: str = "build") -> None:
    """Run every shard of ``todo``: ``task`` (a stage and its function, called with one of the shard's
    records and ``cfg``) per clip, then flow actors when flow has a stage of its own, then the writer."""
    resources = ex.resources()
    check_shared_out(ex, out, int(resources["nodes"]))
    flow_actors, backend_info = _flow_stage(ex, cfg, resources)
    report.cpus, report.flow_actors = int(resources["CPU"]), len(flow_actors)
    report.flow_precision = backend_info.get("precision_auto", "")
    manifest.flow_backend = backend_info
    manifest.save(out)  # the folder now says what it is, even before the first shard lands
    if not todo:
        return
    cpus = max(1, int(resources["CPU"]))
    # Enough shards in flight to keep every CPU busy across shard boundaries, few enough to bound memory.
    per_shard = max(1, sum(len(p.records) for p in todo) // len(todo))  # fewer than shard_size with --shard-bytes
    max_inflight = max(2, math.ceil(4 * cpus / per_shard) + 1)
    attrs = _shard_attrs(manifest, cfg)
    total = sum(len(p.records) for p in todo)
    nodes = int(resources["nodes"])
    desc = name if nodes <= 1 else f"{name} on {nodes} nodes"  # say so when the work spreads
    bar = tqdm(total=total, unit="clip", desc=desc, disable=not progress, dynamic_ncols=True, bar_format=BAR_FORMAT)
    queue = deque(todo)
    writers: dict = {}  # writer ref -> shard
    feeds: list[FlowFeed] = []  # shards whose clips still go to the flow actors
    counts: dict = {}  # frame-count ref of a clip bound for the flow actors -> (its feed, its index)
    watched: dict = {}  # ref -> the frame counts (or their refs) of the clips it stands for (progress)
    frames_seen = 0  # frames of the clips finished so far: the bar's rate before any shard commits
    flows_rr = 0
    watchdog = Watchdog(ex, cfg.stall_timeout)
    t0 = time.perf_counter()

    def submit_writer(shard, parts) -> None:
        job = stages.ShardJob(str(out), shard.name, shard.split, shard.plan_hash, attrs,
                              cfg.compression, cfg.compression_level)
        writers[ex.submit(stages.WRITE, stages.write, job, *parts)] = shard

    try:
        while queue or writers or feeds:
            while queue and len(writers) + len(feeds) < max_inflight:
                shard = queue.popleft()
                counted = [ex.submit_counted(*task, r, cfg) for r in shard.records]
                if flow_actors:
                    feed = FlowFeed(shard, [ref for ref, _ in counted], cfg.flow.batch_pairs)
                    feeds.append(feed)
                    counts.update({n: (feed, i) for i, (_, n) in enumerate(counted)})
                else:
                    watched.update({ref: [n] for ref, n in counted})
                    submit_writer(shard, [ref for ref, _ in counted])
            ex.wait(list(writers) + list(watched) + list(counts), timeout=1.0)
            arrived = ex.ready(list(counts))
            for ref in arrived:  # a crop finished: its clip's pairs are known, its flow can be scheduled
                feed, i = counts.pop(ref)
                feed.frames[i] = _frames_of(ex, ref)
            for feed in list(feeds):
                for group, frames in feed.groups():
                    actor = flow_actors[flows_rr % len(flow_actors)]
                    flows_rr += 1
                    ref = ex.call_actor(actor, *group)
                    feed.parts.append(ref)
                    watched[ref] = frames
                if feed.finished:
                    feeds.remove(feed)
                    submit_writer(feed.shard, feed.parts)
            finished = ex.ready(list(watched))
            if finished or arrived:
                watchdog.progressed()
            else:
                watchdog.check()
            clips_done = 0
            for ref in finished:
                frames = watched.pop(ref)
                frames_seen += sum(_frames_of(ex, n) for n in frames)
                clips_done += len(frames)
                report.last_clip_s = time.perf_counter() - t0
                report.first_clip_s = report.first_clip_s or report.last_clip_s
            if clips_done:  # the rates first, so the bar's redraw shows them with the count
                bar.set_postfix_str(_bar_figures(frames_seen, report), refresh=False)
                bar.update(clips_done)
            for ref in ex.ready(list(writers)):
                shard = writers.pop(ref)
                try:
                    summary = ex.get(ref)
                except FlowprepError as exc:
                    report.shard_errors.append(f"{shard.name}: {exc}")
                    continue
                manifest.commit(summary.entry, out)
                _account(report, summary)
                report.seconds = time.perf_counter() - t0
                bar.set_postfix_str(_bar_figures(frames_seen, report), refresh=False)  # failures are known now
        # A writer that died mid-file (its node lost) was rerun elsewhere under another temporary name.
        remove_stale_temporaries(out)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - t0


def _bar_figures(frames_seen: int, report: BuildReport) -> str:
    return f"{frames_seen / max(report.last_clip_s, 1e-9):.0f} frames/s, {report.failed} failed"


def _frames_of(ex, count_ref) -> int:
    """A finished clip's frame count (given, or from its ref); 0 when its task was lost (its writer says so)."""
    if isinstance(count_ref, int):
        return count_ref
    try:
        return int(ex.get(count_ref))
    except FlowprepError:
        return 0


def _flow_stage(ex, cfg: BuildConfig, resources: dict) -> tuple[list, dict]:
    """Start the flow actors when the backend declares its own stage; return them and its description."""
    from ..flow import backend_class, make

    cls = backend_class(cfg.flow.backend)
    if cls.runs_in == "crop":
        return [], make(cfg.flow).describe()
    want = cfg.flow.device
    if want == "cuda" and "cuda" not in cls.devices:
        raise FlowprepError(f"--device cuda, but --flow {cfg.flow.backend} runs on the CPU only: use --device auto or cpu")
    if want == "cuda" and resources["GPU"] < 1:
        raise FlowprepError("--device cuda, but the Ray cluster has no GPU: use --device auto or cpu")
    use_gpu = want != "cpu" and "cuda" in cls.devices and resources["GPU"] >= 1
    count = int(resources["GPU"]) if use_gpu else 1
    flow_cfg = dataclasses.replace(cfg.flow, device="cuda" if use_gpu else "cpu")
    spec = stages.FLOW_GPU if use_gpu else stages.FLOW_CPU
    actors = ex.start_actors(spec, stages.FlowWorker, (flow_cfg,), count)
    info = ex.get(ex.describe_actor(actors[0]))  # fails fast, with the backend's own message, on a bad checkpoint
    return actors, {**info, "actors": count}


def _shard_attrs(manifest: Manifest, cfg: BuildConfig) -> dict:
    return {
        "config_fingerprint": manifest.config_fingerprint,
        "roi_size": cfg.roi.size,
        "flow_dtype": cfg.flow.dtype,
        "flow_scale": 1.0 if cfg.flow.dtype == "float16" else cfg.flow.scale,
        "flow_backend": manifest.flow_backend.get("name", cfg.flow.backend),
        "format_version": FORMAT_VERSION,
    }


def _account(report: BuildReport, summary) -> None:
    entry = summary.entry
    report.written_shards += 1
    report.clips += entry.clips
    report.failed += entry.failed
    report.frames += entry.frames
    report.bytes += entry.bytes
    for key, value in summary.timings.items():
        report.stage_seconds[key] = report.stage_seconds.get(key, 0.0) + value
    for node, count in summary.nodes.items():
        report.nodes[node] = report.nodes.get(node, 0) + count


