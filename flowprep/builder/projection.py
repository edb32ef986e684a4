"""`flowprep bench build --project lrw`: how long a whole LRW build takes on a node of N CPUs and G GPUs.

A plan needs figures, not hopes. This measures what each clip costs on one core, in this process,
on the clips given (decode, face + ROI, CPU flow, shard write: the first clip once first, so model
loading is not counted), takes PWC-Net's pairs/s on a GPU (measured here when this machine has one,
else given with ``--gpu-pairs-per-s``, e.g. from ``flowprep bench flow --device cuda`` on the GPU
node), and projects: a build runs the CPU stages on every CPU but those the flow actors hold (one
per GPU) and flow on the GPUs, so the slower of the two sides sets the pace. Without GPUs flow is a
CPU stage too (the backend measured). Start-up and the last shard's write are left out: minutes
against hours. The figure is what the stage costs allow; a real build reaches 74-90 % of it on this
machine (`flowprep bench build` without --project measures that ratio).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import BuildConfig
from ..errors import FlowprepError

# clips, frames per clip: LRW's train + val + test, 29 frames each (1.16 s at 25 fps)
PROJECTS = {"lrw": (538_766, 29)}
CPU_STAGES = ("decode", "audio", "roi", "write")  # what a crop task and a shard writer cost per frame


@dataclass
class Projection:
    project: str
    clips: int
    frames: int
    cpus: int
    gpus: int
    stage_ms_per_frame: dict[str, float]  # one core, measured on the given clips
    measured_clips: int
    gpu_pairs_per_s: float | None  # per GPU
    gpu_pairs_source: str  # "given", "measured on <GPU>" or "" without GPUs
    cpu_workers: int
    cpu_ms_per_frame: float
    cpu_frames_per_s: float
    flow_frames_per_s: float | None  # the GPUs' side; None when flow is a CPU stage
    limited_by: str
    seconds: float

    def lines(self) -> list[str]:
        s = self.stage_ms_per_frame
        out = [f"stage costs on one core over {self.measured_clips} clips, ms/frame: "
               + ", ".join(f"{k} {v:.2f}" for k, v in s.items())]
        total = f"{self.clips:,} clips x {self.frames // self.clips} frames = {self.frames:,} frames"
        where = f"{self.cpus} CPU(s)" + (f" + {self.gpus} GPU(s)" if self.gpus else "")
        out.append(f"whole {self.project.upper()} ({total}) on {where}:")
        cpu_part = ", ".join(k for k in s if k in CPU_STAGES or not self.gpus)
        out.append(f"  CPU stages ({cpu_part}) on {self.cpu_workers} CPU(s): {self.cpu_ms_per_frame:.2f} ms/frame "
                   f"-> {self.cpu_frames_per_s:,.0f} frames/s")
        if self.flow_frames_per_s is not None:
            out.append(f"  flow (PWC-Net) on {self.gpus} GPU(s) at {self.gpu_pairs_per_s:,.0f} pairs/s each "
                       f"({self.gpu_pairs_source}) -> {self.flow_frames_per_s:,.0f} frames/s")
        out.append(f"  limited by {self.limited_by}: {_duration(self.seconds)} "
                   f"({self.frames / self.seconds:,.0f} frames/s)")
        return out


def _duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{seconds / 60:.0f} min"


def project(stage_ms: dict[str, float], cpus: int, gpus: int, gpu_pairs_per_s: float | None,
            name: str = "lrw", measured_clips: int = 0, gpu_pairs_source: str = "given") -> Projection:
    """The projected wall time of a whole build of ``name`` from one-core stage costs (ms/frame)."""
    if name not in PROJECTS:
        raise FlowprepError(f"--project {name!r}: choose one of {', '.join(PROJECTS)}")
    if cpus < 1 or gpus < 0:
        raise FlowprepError(f"--cpus {cpus} --gpus {gpus}: a node has at least one CPU and no fewer than 0 GPUs")
    if gpus and not gpu_pairs_per_s:
        raise FlowprepError("--gpus needs PWC-Net's pairs/s per GPU: pass --gpu-pairs-per-s (measure it on the "
                            "GPU node with `flowprep bench flow --device cuda`), or run this on that node")
    if gpus and cpus <= gpus:
        raise FlowprepError(f"--cpus {cpus}: each GPU's flow actor holds a CPU; give more CPUs than GPUs")
    clips, per_clip = PROJECTS[name]
    frames = clips * per_clip
    cpu_keys = [k for k in stage_ms if k in CPU_STAGES or not gpus]  # without GPUs flow is a CPU stage
    cpu_ms = round(sum(stage_ms[k] for k in cpu_keys), 3)
    workers = cpus - gpus
    cpu_fps = workers * 1000.0 / cpu_ms
    flow_fps = gpus * gpu_pairs_per_s * per_clip / (per_clip - 1) if gpus else None
    top = max(cpu_keys, key=lambda k: stage_ms[k])
    cpu_side = f"the CPU stages ({top} {stage_ms[top]:.2f} of {cpu_ms:.2f} ms/frame)"
    if flow_fps is not None and flow_fps < cpu_fps:
        limited, rate = "flow on the GPU(s)", flow_fps
    else:
        limited, rate = cpu_side, cpu_fps
    return Projection(
        project=name, clips=clips, frames=frames, cpus=cpus, gpus=gpus,
        stage_ms_per_frame={k: round(v, 3) for k, v in stage_ms.items()}, measured_clips=measured_clips,
        gpu_pairs_per_s=gpu_pairs_per_s if gpus else None, gpu_pairs_source=gpu_pairs_source if gpus else "",
        cpu_workers=workers, cpu_ms_per_frame=cpu_ms, cpu_frames_per_s=round(cpu_fps, 1),
        flow_frames_per_s=round(flow_fps, 1) if flow_fps is not None else None, limited_by=limited,
        seconds=round(frames / rate, 1),
    )


def stage_costs(src: str | Path, cfg: BuildConfig, limit: int) -> tuple[dict[str, float], int]:
    """Each stage's cost in ms per frame on one core, in this process, over the first ``limit`` clips
    of ``src`` (the first clip once more first: model loading is not a per-frame cost); and the clips."""
    import cv2

    from ..shards.records import ClipResult
    from ..shards.writer import write_shard
    from ..sources import discover
    from . import stages

    records = discover(src, cfg.layout)[:limit]
    if not records:
        raise FlowprepError(f"no clips under {src}")
    cv2.setNumThreads(1)
    stages.crop_clip(records[0], cfg)
    results = [r for r in (stages.crop_clip(rec, cfg) for rec in records) if isinstance(r, ClipResult)]
    if not results:
        raise FlowprepError(f"every clip under {src} failed; nothing to measure (see `flowprep build`'s failures)")
    if not stages.flow_runs_in_crop(cfg):
        import torch

        torch.set_num_threads(1)
        t0 = time.perf_counter()
        stages.FlowWorker(cfg.flow)(*results)
        for r in results:
            r.timings["flow_s"] = (time.perf_counter() - t0) / len(results)
    frames = sum(r.num_frames for r in results)
    keys = ("decode_s", "audio_s", "roi_s", "flow_s")
    cost = {k.removesuffix("_s"): sum(r.timings.get(k, 0.0) for r in results) * 1000 / frames
            for k in keys if any(k in r.timings for r in results)}
    with tempfile.TemporaryDirectory() as tmp:
        attrs = {"roi_size": cfg.roi.size, "flow_dtype": cfg.flow.dtype, "flow_scale": cfg.flow.scale}
        t0 = time.perf_counter()
        write_shard(tmp, "bench.h5", "train", "bench", results, attrs, cfg.compression, cfg.compression_level)
        cost["write"] = (time.perf_counter() - t0) * 1000 / frames
    return cost, len(results)


def measured_gpu_pairs_per_s() -> tuple[float, str] | None:
    """PWC-Net's pairs/s on this machine's first GPU (the fast path, fp16, batches of 256), None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    from ..flow.bench import flow_bench

    figures = flow_bench(device="cuda", batch_sizes=(256,), dtypes=("fp16",), threads=(1,), seconds=2.0,
                         rounds=1, backends=("fast",))
    rates = [c["pairs_per_s"] for c in figures["cases"] if c.get("pairs_per_s")]
    return (max(rates), f"measured on {figures['device_name']}") if rates else None


def run_projection(src, cfg: BuildConfig, project_name: str, cpus: int | None = None, gpus: int | None = None,
                   gpu_pairs_per_s: float | None = None, limit: int = 16) -> Projection:
    """`flowprep bench build --project NAME`: measure the stage costs here on ``limit`` clips of ``src``,
    project for ``cpus`` CPUs and ``gpus`` GPUs (default: this machine's)."""
    import torch

    gpus = gpus if gpus is not None else (torch.cuda.device_count() if torch.cuda.is_available() else 0)
    cpus = cpus or os.cpu_count() or 1
    pairs, source = gpu_pairs_per_s, "given"
    if gpus and pairs is None:
        measured = measured_gpu_pairs_per_s()
        if measured is not None:
            pairs, source = measured
    if gpus and not pairs:  # before measuring anything: the check fails in a second
        project({"roi": 1.0}, cpus, gpus, pairs, project_name)
    cost, clips = stage_costs(src, cfg, limit)
    return project(cost, cpus, gpus, pairs, project_name, clips, source)
