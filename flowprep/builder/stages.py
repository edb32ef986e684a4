"""The work of a build, as plain functions of plain data; the executor decides where they run.

    crop_clip   decode -> face/mouth ROI -> (flow, for backends that run in the crop worker)   one clip, one CPU
    FlowWorker  flow for every consecutive pair of many clips, in batches of pairs            one GPU (or CPU) actor
    write       one shard file, atomically                               any worker

A clip that cannot be used becomes a ClipFailure with its stage and reason: failures are data,
so one bad video never stops a build. Models are loaded once per worker process and reused.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..config import BuildConfig, FlowConfig
from ..errors import ClipError, DecodeError
from ..shards.records import ClipFailure, ClipResult
from ..shards.writer import ShardSummary, write_shard
from ..sources import ClipRecord, expected_frames


@dataclass(frozen=True)
class StageSpec:
    """How an executor runs a stage: the resources each task or actor of it takes, and its retries."""

    name: str
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3


def flow_runs_in_crop(cfg: BuildConfig) -> bool:
    """Whether the flow backend declares that it runs in the crop worker (else: its own batched actor)."""
    from ..flow import backend_class

    return backend_class(cfg.flow.backend).runs_in == "crop"


# ---- per-process state -------------------------------------------------------------------
_CACHE: dict[Any, Any] = {}


def _cached(key: Any, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _extractor(cfg: BuildConfig):
    from ..roi import MouthRoiExtractor

    return _cached(("roi", cfg.roi), lambda: MouthRoiExtractor(cfg.roi))


def _auto_precision(flow: FlowConfig):
    from ..flow.precision import resolve
    from ..runtime import resolve_device

    return resolve(flow.ckpt, str(resolve_device(flow.device)))


def _flow_backend(flow: FlowConfig):
    from ..flow import make

    return _cached(("flow", flow), lambda: make(flow))


def _quantize(flow: np.ndarray, cfg: FlowConfig) -> tuple[np.ndarray, int]:
    from ..flow import quantize_flow_stats

    return quantize_flow_stats(flow, dtype=cfg.dtype, scale=cfg.scale)


# ---- stages -----------------------------------------------------------------------------
CROP = StageSpec("crop", num_cpus=1.0)


def crop_clip(record: ClipRecord, cfg: BuildConfig) -> ClipResult | ClipFailure:
    from ..decode import decode_gray

    timings: dict[str, float] = {}
    stage = "decode"
    try:
        t0 = time.perf_counter()
        video = decode_gray(record.path, expected_frames=expected_frames(record.source))
        if video.num_frames < cfg.min_frames:  # no flow pair, or fewer frames than asked for
            raise DecodeError(f"{video.num_frames} of at least {cfg.min_frames} frames (--min-frames): "
                              "too short to store")
        t1 = time.perf_counter()
        timings["decode_s"] = t1 - t0
        audio = None
        if cfg.audio:  # before the ROI stage: a clip without audio fails cheaply
            stage = "audio"
            audio = _decode_audio(record, video, cfg)
            t1 = time.perf_counter()
            timings["audio_s"] = t1 - t0 - timings["decode_s"]
        stage = "roi"
        roi = _extractor(cfg)(video.frames, _imported_landmarks(record, video.num_frames, cfg))
        t2 = time.perf_counter()
        timings["roi_s"] = t2 - t1
        result = ClipResult(
            record=record,
            gray=roi.gray,
            landmarks=roi.landmarks,
            affine=roi.affine,
            qc=dict(roi.qc),
            fps=video.fps,
            timings=timings,
        )
        if audio is not None:
            result.audio, result.audio_rate = audio.samples, audio.rate
            result.qc["audio_coverage"] = audio.coverage  # share of the frames' samples the stream really holds
            result.qc["audio_start_s"] = audio.start_s  # first frame's time on the file's timeline
        if flow_runs_in_crop(cfg):
            stage = "flow"
            _attach_flow([result], _flow_backend(cfg.flow), cfg.flow)
            timings["flow_s"] = time.perf_counter() - t2
        return result
    except ClipError as exc:
        return ClipFailure(record, exc.stage, str(exc), timings)
    except Exception as exc:  # a bug or a library error on odd input: record it, keep building
        where = traceback.extract_tb(exc.__traceback__)[-1]
        reason = f"{type(exc).__name__}: {exc} (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
        return ClipFailure(record, stage, reason, timings)


def _imported_landmarks(record: ClipRecord, num_frames: int, cfg: BuildConfig):
    """The clip's landmarks from --landmarks (None: detect them), or a ClipError at stage "landmarks"."""
    if cfg.landmarks is None:
        return None
    from ..roi.imported import imported_landmarks

    return imported_landmarks(record.clip_id, num_frames, cfg.landmarks, cfg.landmarks_fallback)


def _decode_audio(record: ClipRecord, video, cfg: BuildConfig):
    """The clip's audio on the video's clock, exactly the samples of its frames (see decode_audio)."""
    from ..decode import decode_audio

    return decode_audio(record.path, rate=cfg.audio_rate, num_frames=video.num_frames, fps=video.fps)


FLOW_GPU = StageSpec("flow", num_cpus=1.0, num_gpus=1.0)
FLOW_CPU = StageSpec("flow", num_cpus=1.0, num_gpus=0.0)


class FlowWorker:
    """Holds one flow model and fills in flow for many clips at a time (large batches)."""

    def __init__(self, flow: FlowConfig):
        from ..flow import make

        self.precision_note = ""
        if flow.backend == "pwcnet" and flow.precision == "auto":  # probe here, on the device flow runs on
            choice = _auto_precision(flow)
            flow, self.precision_note = dataclasses.replace(flow, precision=choice.precision), choice.note()
        self.cfg = flow
        self.backend = make(flow)

    def describe(self) -> dict:
        info = self.backend.describe()
        return {**info, "precision_auto": self.precision_note} if self.precision_note else info

    def __call__(self, *items: ClipResult | ClipFailure) -> list[ClipResult | ClipFailure]:
        results = [it for it in items if isinstance(it, ClipResult)]
        t0 = time.perf_counter()
        try:
            _attach_flow(results, self.backend, self.cfg)
        except Exception as exc:  # the whole batch fails together; say so per clip
            reason = f"{type(exc).__name__}: {exc}"
            return [ClipFailure(it.record, "flow", reason, it.timings) if isinstance(it, ClipResult) else it
                    for it in items]
        per_clip = (time.perf_counter() - t0) / max(1, len(results))
        for r in results:
            r.timings["flow_s"] = per_clip
        return list(items)


def _attach_flow(results: Sequence[ClipResult], backend, cfg: FlowConfig) -> None:
    """Flow for every consecutive pair of every clip, computed in batches of at most
    ``cfg.batch_pairs`` pairs cut across clip boundaries (a long clip spans several batches, short
    ones share one), each batch quantised into its clips' stored flow as it comes. So the float
    flow and the model's activations held at once are bounded by ``batch_pairs``, not by clip length."""
    from ..flow import pair_batches

    counts = [max(0, r.num_frames - 1) for r in results]
    stored: list = [None] * len(results)
    mags: list = [None] * len(results)  # per-pixel magnitudes of each clip's float flow, for its QC
    saturated = [0] * len(results)
    for batch in pair_batches(counts, cfg.batch_pairs):
        prev = np.concatenate([results[c].gray[a:b] for c, a, b in batch])
        nxt = np.concatenate([results[c].gray[a + 1:b + 1] for c, a, b in batch])
        flow = backend(prev, nxt)
        at = 0
        for c, a, b in batch:
            part = flow[at:at + b - a]
            at += b - a
            q, sat = _quantize(part, cfg)
            if stored[c] is None:
                stored[c] = np.empty((counts[c],) + q.shape[1:], q.dtype)
                mags[c] = np.empty((counts[c],) + part.shape[2:], np.float32)
            stored[c][a:b] = q
            mags[c][a:b] = np.hypot(part[:, 0], part[:, 1])
            saturated[c] += int(sat)
    for i, r in enumerate(results):
        if stored[i] is None:  # a clip without pairs: stored as an empty flow of the stored type
            size = r.gray.shape[-1]
            stored[i], _ = _quantize(np.zeros((0, 2, size, size), np.float32), cfg)
        r.flow = stored[i]
        r.qc["flow_saturated"] = float(saturated[i])
        if counts[i]:
            r.qc["flow_mag_mean"] = float(mags[i].mean())
            r.qc["flow_mag_p99"] = float(np.percentile(mags[i], 99))


WRITE = StageSpec("write", num_cpus=0.0)


@dataclass
class ShardJob:
    """Everything the writer needs besides the clips themselves."""

    out_dir: str
    name: str
    split: str
    plan_hash: str
    attrs: dict = field(default_factory=dict)
    compression: str = "lz4hc"
    level: int = 3


def write(job: ShardJob, *parts: ClipResult | ClipFailure | list) -> ShardSummary:
    items: list = []
    for part in parts:
        items.extend(part if isinstance(part, list) else [part])
    return write_shard(job.out_dir, job.name, job.split, job.plan_hash, items, job.attrs, job.compression, job.level)
