"""`flowprep bench`: build throughput and per-stage cost on given videos, next to a naive recipe.

Three measurements on the same clips, in one run:
  1. stage costs on one core, in-process (decode, face+ROI, flow, shard write), and the rate
     those costs allow on every core of the machine;
  2. the naive recipe: the face detector on every frame, a fixed crop around the mouth, flow
     one pair per call;
  3. the real build (Ray, all workers) into a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .cliforms import Help, add_folder_argument
from .config import BuildConfig
from .errors import FlowprepError


def run_bench(src: str | Path, cfg: BuildConfig, limit: int = 24, progress: bool = False) -> dict:
    """Measure on the first ``limit`` clips under ``src``; returns the figures as a dict."""
    import cv2
    import torch

    from .builder import build, stages
    from .shards.records import ClipResult
    from .shards.writer import write_shard
    from .sources import discover

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
    from .builder.stages import make_flow_backend
    from .flow import dequantize_flow

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

    from .builder.stages import make_flow_backend
    from .decode import decode_gray
    from .roi import landmark_model_paths

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


def add_bench_parser(sub, add_build_options, config_from_args) -> None:
    """`flowprep bench`; the build options and their reading come from the top-level command (passed in,
    so this module does not import it back)."""
    bench = sub.add_parser("bench", help="measure: build throughput and stage costs, shard read speed, or flow speed",
                           description="Print figures: `bench build` (decode/ROI/flow/write costs, naive recipe, "
                                       "Ray build), `bench read` (random-access read speed of a shard folder) or "
                                       "`bench flow` (pairs/s of each flow backend).")
    kinds = bench.add_subparsers(title="what to measure", metavar="KIND")
    p = kinds.add_parser("build", help="build throughput and per-stage cost, next to a naive recipe",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="folder of videos to measure on")
    add_build_options(p)
    from .builder.projection import add_projection_arguments  # --project lrw --cpus N --gpus G ...

    add_projection_arguments(p)
    p.set_defaults(func=_cmd_bench, flow="dis", limit=64, make_config=config_from_args)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    r = kinds.add_parser("read", help="random-access read speed (clips/s), one process and a DataLoader",
                         formatter_class=Help)
    add_folder_argument(r)
    r.add_argument("--split", default="train")
    r.add_argument("--clips", type=int, default=400, help="clips to read per measurement")
    r.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    r.add_argument("--json", action="store_true", help="print the figures as JSON")
    r.set_defaults(func=_cmd_read)
    f = kinds.add_parser("flow", help="flow pairs/s per backend, batch size, dtype and thread count at 112x112",
                         description=_FLOW_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (PWC-Net; OpenCV flow is CPU)")
    f.add_argument("--batch-sizes", type=_ints, default=None, help="PWC-Net pairs per forward, e.g. 1,8,32,128 "
                   "(default 1,8,32 on the CPU, 64,256,1024 on CUDA)")
    f.add_argument("--dtypes", type=_names, default=None, help="fp32,bf16,fp16 (default fp32 on the CPU, all on CUDA)")
    f.add_argument("--threads", type=_ints, default=None, help="torch/OpenCV threads, e.g. 1,2 (default 1 and all CPUs)")
    f.add_argument("--seconds", type=float, default=2.0, help="time per configuration per round")
    f.add_argument("--rounds", type=int, default=3, help="rounds over all configurations (median reported)")
    f.add_argument("--backends", type=_names, default=("fast", "ptlflow", "dis", "farneback"),
                   help="any of fast,ptlflow,dis,farneback")
    f.add_argument("--flow-ckpt", default=None, help="PWC-Net weights (default: 'things' when cached, else a "
                   "seeded random init; speed does not depend on the values)")
    f.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="NCHW activations")
    f.add_argument("--compile", action="store_true", help="also measure the fast path under torch.compile")
    f.add_argument("--json", action="store_true", help="print the figures as JSON")
    f.set_defaults(func=_cmd_flow)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


_FLOW_DOC = """Pairs/s at 112x112 of ptlflow's PWC-Net forward one pair per call (the reference), the fast
PWC-Net path per batch size, dtype and thread count, OpenCV DIS (medium) and Farneback, measured in
one process; rounds alternate the configurations and the median is reported, with peak memory
(torch.cuda.max_memory_allocated on CUDA, peak RSS on the CPU). See flowprep/flow/bench.py."""


def _cmd_flow(args) -> int:
    from .flow import bench as flow_bench

    figures = flow_bench.flow_bench(
        device=args.device, batch_sizes=args.batch_sizes, dtypes=args.dtypes, threads=args.threads,
        seconds=args.seconds, rounds=args.rounds, backends=args.backends, ckpt=args.flow_ckpt,
        channels_last=args.channels_last, compile=args.compile,
        log=None if args.json else (lambda line: print(line, file=sys.stderr, flush=True)),
    )
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        flow_bench.print_table(figures)
    return 0


def _cmd_read(args) -> int:
    from .dataset.bench import read_bench

    figures = read_bench(args.root, args.split, args.clips, args.workers)
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"{figures['clips_read']} random clips of {figures['clips_in_split']}:")
    for mode in ("plain", "transforms"):
        print(f"  {mode:<10}  one process {figures[f'single_{mode}_clips_per_s']:>8.1f} clips/s   "
              f"DataLoader x{figures['workers']} {figures[f'loader_{mode}_clips_per_s']:>8.1f} clips/s")
    print("one read, ms per clip: " + ", ".join(f"{k} {v}" for k, v in figures["per_clip_ms"].items()))
    return 0


def _cmd_bench(args) -> int:
    cfg = args.make_config(args).replace(limit=None)
    if args.project:  # the whole-dataset projection from stage costs (flowprep/builder/projection.py)
        from .builder.projection import print_projection, run_projection

        print_projection(run_projection(args, cfg), args.json)
        return 0
    figures = run_bench(args.src, cfg, limit=args.limit or 64)
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    s = figures["stage_ms_per_frame"]
    print(f"{figures['clips']} clips, {figures['frames']} frames, {figures['cores']} cores, "
          f"flow {figures['flow_backend']}")
    print("one core, ms/frame: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items())
          + f"  = {figures['sum_ms_per_frame']:.2f} -> ideal {figures['ideal_fps']:.0f} frames/s on all cores")
    print(f"face detections per clip: {figures['detections_per_clip']:.1f}")
    print(f"naive recipe (detect every frame, flow pair by pair, one core): {figures['naive_fps']:.1f} frames/s")
    print(f"build: {figures['build_fps']:.1f} frames/s over {figures['build_seconds']} s "
          f"({figures['build_steady_fps']:.1f} once workers run) = {figures['build_vs_naive']}x naive, "
          f"{100 * figures['build_vs_ideal']:.0f}% of ideal ({100 * figures['build_steady_vs_ideal']:.0f}% once running)")
    q = figures["flow_quantisation"]
    print(f"bytes per clip: {figures['bytes_per_clip'] / 1024:.0f} KiB; stored flow error: mean {q['mean_epe_px']} px, "
          f"p99 {q['p99_epe_px']} px, saturated {100 * q['saturated_fraction']:.3f}%")
    sys.stdout.flush()
    return 0
