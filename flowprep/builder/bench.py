"""The build benchmark behind `flowprep bench build`: what one core spends per frame in each stage
(decode, face+ROI, flow, shard write), the rate a naive recipe reaches (the detector on every frame,
a fixed crop at the mouth, flow one pair per call), and the rate of the real Ray build, on the same
clips in one run. It lives next to the stages it measures; the command's help says how to read it.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import BuildConfig
from ..errors import FlowprepError


def run_bench(src: str | Path, cfg: BuildConfig, limit: int = 24, progress: bool = False) -> dict:
    """Measure on the first ``limit`` clips under ``src``; returns the figures as a dict."""
    import cv2
    import torch

    from . import build, stages
    from ..shards.records import ClipResult
    from ..shards.writer import write_shard
    from ..sources import discover

    records = discover(src, cfg.layout)[:limit]
    if not records:
        raise FlowprepError(f"no clips under {src}")
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    cores = cfg.workers or os.cpu_count() or 1

    # 1. stage costs, one core (the first clip once more first, so model loading is not counted)
    stages.crop_clip(records[0], cfg)
    results, failures = [], 0
    for r in records:
        item = stages.crop_clip(r, cfg)
        if isinstance(item, ClipResult):
            results.append(item)
        else:
            failures += 1
    if not results:
        raise FlowprepError("every clip failed; nothing to measure")
    if not stages.flow_runs_in_crop(cfg):
        worker = stages.FlowWorker(cfg.flow)
        t0 = time.perf_counter()
        worker(*results)
        flow_total = time.perf_counter() - t0
        for r in results:
            r.timings["flow_s"] = flow_total / len(results)
    frames = sum(r.num_frames for r in results)
    cost = {k: sum(r.timings.get(k, 0.0) for r in results) * 1000 / frames for k in ("decode_s", "roi_s", "flow_s")}
    with tempfile.TemporaryDirectory() as tmp:
        attrs = {"roi_size": cfg.roi.size, "flow_dtype": cfg.flow.dtype, "flow_scale": cfg.flow.scale}
        t0 = time.perf_counter()
        summary = write_shard(tmp, "bench.h5", "train", "bench", results, attrs, cfg.compression, cfg.compression_level)
        cost["write_s"] = (time.perf_counter() - t0) * 1000 / frames
    stage_ms = {k.removesuffix("_s"): round(v, 3) for k, v in cost.items()}
    sum_ms = sum(cost.values())
    ideal_fps = cores * 1000 / sum_ms
    quant = _quantisation_error(results[: min(4, len(results))], cfg)

    # 2. the naive recipe
    naive_fps = _naive_fps(records[: min(4, len(records))], cfg)

    # 3. the real build
    with tempfile.TemporaryDirectory() as tmp:
        report = build(src, tmp, cfg.replace(limit=limit), progress=progress)
    return {
        "clips": len(records),
        "failed_in_stage_run": failures,
        "frames": frames,
        "cores": cores,
        "flow_backend": cfg.flow.backend + (f"-{cfg.flow.preset}" if cfg.flow.backend == "dis" else ""),
        "stage_ms_per_frame": stage_ms,
        "detections_per_clip": float(np.mean([r.qc.get("detections_run", np.nan) for r in results])),
        "sum_ms_per_frame": round(sum_ms, 3),
        "ideal_fps": round(ideal_fps, 1),
        "naive_fps": round(naive_fps, 1),
        "build_fps": round(report.frames_per_s, 1),
        "build_steady_fps": round(report.steady_frames_per_s, 1),
        "build_seconds": round(report.seconds, 2),
        "build_vs_naive": round(report.frames_per_s / naive_fps, 1) if naive_fps else None,
        "build_vs_ideal": round(report.frames_per_s / ideal_fps, 3),
        "build_steady_vs_ideal": round(report.steady_frames_per_s / ideal_fps, 3),
        "bytes_per_clip": round(summary.entry.bytes / max(1, summary.entry.clips)),
        "flow_quantisation": quant,
    }


def _quantisation_error(results, cfg: BuildConfig) -> dict:
    """Mean end-point error of stored flow against the float flow it came from."""
    from .stages import make_flow_backend
    from ..flow import dequantize_flow

    backend = make_flow_backend(cfg.flow)
    errs, sat, total = [], 0, 0
    for r in results:
        exact = backend(r.gray[:-1], r.gray[1:])
        stored = dequantize_flow(r.flow, 1.0 if cfg.flow.dtype == "float16" else cfg.flow.scale)
        errs.append(np.hypot(*(exact - stored).transpose(1, 0, 2, 3)).ravel())
        sat += int(r.qc.get("flow_saturated", 0))
        total += exact.size
    err = np.concatenate(errs)
    return {"mean_epe_px": round(float(err.mean()), 4), "p99_epe_px": round(float(np.percentile(err, 99)), 4),
            "saturated_fraction": sat / max(1, total)}


def _naive_fps(records, cfg: BuildConfig) -> float:
    """Detector on every frame, a fixed crop at the mouth landmarks, flow one pair per call."""
    import cv2
    import dlib

    from .stages import make_flow_backend
    from ..decode import decode_gray
    from ..roi import landmark_model_paths

    predictor_path, _ = landmark_model_paths()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(predictor_path))
    backend = make_flow_backend(cfg.flow)
    size = cfg.roi.size
    frames_done, t0 = 0, time.perf_counter()
    for rec in records:
        try:
            frames = decode_gray(rec.path).frames
        except FlowprepError:
            continue
        crops, centre = [], None
        for frame in frames:
            faces = detector(frame, cfg.roi.upsample)
            if faces:
                face = max(faces, key=lambda d: d.width() * d.height())
                shape = predictor(frame, face)
                mouth = np.array([[shape.part(i).x, shape.part(i).y] for i in range(48, 68)], np.float32)
                centre = mouth.mean(axis=0)
            if centre is not None:
                crops.append(cv2.getRectSubPix(frame, (size, size), tuple(float(c) for c in centre)))
        for a, b in zip(crops[:-1], crops[1:]):
            backend(a[None], b[None])
        frames_done += len(frames)
    seconds = time.perf_counter() - t0
    return frames_done / seconds if seconds > 0 else 0.0
