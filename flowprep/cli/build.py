"""`flowprep build`: the build options, their reading into a BuildConfig, and the command itself (a
thin layer over flowprep.build). `bench build` takes the same options from here.

The options offer the names flowprep.config accepts; the checks live in the config dataclasses, so
the command and the Python API refuse the same things with the same one-line messages.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict

from ..config import (COMPRESSIONS, DETECTORS, DIS_PRESETS, FLOW_BACKENDS, FLOW_DEVICES, FLOW_DTYPES,
                      FLOW_PRECISIONS, BuildConfig, FlowConfig, RoiConfig)
from ..errors import FlowprepError
from ..sources import LAYOUTS
from .forms import Help, byte_size, comma_list

EXIT_HELP = """\
exit status: 0 every clip built; 3 the build completed but some clips failed (see failures.jsonl);
1 verify found problems; 2 a fatal error (bad arguments, a path that cannot be used, a full disk,
incomplete build: rerun to resume; a bug names the log file holding its traceback)."""



class FlowChoices(tuple):
    """The --flow names, where ``ptlflow:MODEL`` stands for any model name (the flow registry checks it
    exists; a bare ``ptlflow`` gets the configuration's own message asking for the model)."""

    def __contains__(self, value) -> bool:
        return tuple.__contains__(self, value) or (isinstance(value, str) and value.startswith("ptlflow"))

def register(commands) -> None:
    """``flowprep build`` (``commands``: the subcommands of ``flowprep``)."""
    b = commands.add_parser("build", help="videos -> mouth ROIs -> optical flow -> HDF5 shards",
                            description="Build shards from a folder of videos. Rerunning the same command resumes.",
                            epilog=EXIT_HELP, formatter_class=Help)
    b.add_argument("--src", required=True, help="folder of videos (LRW's lipread_mp4/, LRS2/LRS3, GRID, or any folder)")
    b.add_argument("--out", required=True, help="output folder for shards, manifest.json and failures.jsonl")
    add_build_options(b)
    b.add_argument("--overwrite", action="store_true", help="discard an earlier build in --out and start over")
    b.add_argument("--no-progress", action="store_true", help="no progress bar (logs, batch jobs)")
    b.add_argument("--json", action="store_true", help="print the final report as JSON on stdout")
    b.set_defaults(func=run_build)


def add_build_options(p: argparse.ArgumentParser) -> None:
    """Every option that makes a BuildConfig (read back by config_from_args)."""
    d, r = BuildConfig(), RoiConfig()
    p.add_argument("--layout", default=d.layout, choices=["auto", *LAYOUTS], help="source layout; auto detects it")
    p.add_argument("--detector", default=r.detector, choices=DETECTORS, help="dlib face detector")
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="clips per shard file")
    p.add_argument("--shard-bytes", type=byte_size, default=None, metavar="SIZE",
                   help="also close a shard before its clips' stored bytes (estimated from each video's frame count, "
                        "before compression) pass SIZE, e.g. 2G: for corpora of long clips (LRS2/LRS3)")
    p.add_argument("--landmarks", default=None, metavar="DIR",
                   help="use published 68-point landmarks instead of detecting faces: DIR/<clip id>.pkl (a list over "
                        "frames of (68,2) arrays or None) or .npz (array 'landmarks', (T,68,2), NaN when missing)")
    p.add_argument("--landmarks-fallback", default=d.landmarks_fallback, choices=["fail", "detect"],
                   help="a clip whose landmark file is missing, refused or of another length: a failure record, "
                        "or detected as usual")
    p.add_argument("--compression", default=d.compression, choices=COMPRESSIONS,
                   help="HDF5 compression: lz4hc reads fastest, zstd is ~15%% smaller")
    p.add_argument("--audio", action="store_true",
                   help="also store each clip's audio (16 kHz mono, aligned to the frames); "
                        "a clip without audio becomes a failure")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips (a quick trial)")
    p.add_argument("--min-frames", type=int, default=d.min_frames, metavar="N",
                   help="a clip with fewer frames is a failure, not a shard entry; 2 is the least that gives a flow pair")
    p.add_argument("--words", default=None, metavar="WORD,WORD|FILE",
                   help="build only these classes (LRW words), comma-separated or one per line in FILE; labels "
                        "keep the indices of the whole tree's word list, so a partial build matches a full one")
    p.add_argument("--splits", default=None, metavar="SPLIT,SPLIT",
                   help="build only these splits (train, val, test; LRS: pretrain, trainval, main), comma-separated")
    add_flow_options(p)


def add_flow_options(p: argparse.ArgumentParser, flow_required: bool = False) -> None:
    """The flow options and where the work runs: what `reflow` takes too (read back by flow_from_args)."""
    f = FlowConfig()
    backend = {"required": True} if flow_required else {"default": f.backend}
    p.add_argument("--flow", **backend, choices=FlowChoices(FLOW_BACKENDS + ("ptlflow:MODEL",)),
                   help="optical-flow backend; dis and farneback are CPU-only; ptlflow:MODEL is any ptlflow model "
                        "(raft_small, neuflow2, rapidflow, ...) batched like pwcnet")
    p.add_argument("--flow-ckpt", default=f.ckpt,
                   help="weights of pwcnet or ptlflow:MODEL: a local .ckpt path, or a name of the model's published "
                        "weights ('things', 'sintel', ...) already in torch hub's cache; nothing is downloaded")
    p.add_argument("--dis-preset", default=f.preset, choices=DIS_PRESETS, help="DIS preset")
    p.add_argument("--flow-dtype", default=f.dtype, choices=FLOW_DTYPES, help="stored flow type")
    p.add_argument("--flow-scale", type=float, default=f.scale, help="pixels per stored flow unit (int types)")
    p.add_argument("--flow-precision", default=f.precision, choices=FLOW_PRECISIONS,
                   help="PWC-Net arithmetic: bf16/fp16 autocast is several times faster on GPUs and on CPUs with "
                        "AMX (fp16: CUDA only) and moves the flow slightly (see README: Flow backends); auto: "
                        "a one-second probe where flow runs keeps the faster, named in the summary")
    p.add_argument("--device", default=f.device, choices=FLOW_DEVICES, help="where PWC-Net runs")
    p.add_argument("--batch-pairs", type=int, default=f.batch_pairs, help="frame pairs per PWC-Net forward pass")
    p.add_argument("--workers", type=int, default=None, help="CPU workers of the local cluster (default: all cores)")
    p.add_argument("--ray-address", default=None,
                   help="an existing Ray cluster, e.g. HEAD_IP:6379 (default: start a local one); --out must then "
                        "be on a filesystem every node mounts at the same path")
    p.add_argument("--stall-timeout", type=float, default=BuildConfig.stall_timeout, metavar="S",
                   help="fail when no clip finishes for S seconds (a cluster that lost its workers)")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The BuildConfig of parsed build options; the config's own checks refuse what does not fit."""
    flow = flow_from_args(args)
    return BuildConfig(
        layout=args.layout,
        roi=RoiConfig(detector=args.detector),
        flow=flow,
        shard_size=args.shard_size,
        compression=args.compression,
        audio=bool(getattr(args, "audio", False)),
        workers=args.workers,
        ray_address=args.ray_address,
        limit=args.limit,
        stall_timeout=args.stall_timeout,
        min_frames=getattr(args, "min_frames", BuildConfig.min_frames),
        words=_names(getattr(args, "words", None), "--words"),
        splits=_names(getattr(args, "splits", None), "--splits"),
        shard_bytes=getattr(args, "shard_bytes", None),
        landmarks=getattr(args, "landmarks", None),
        landmarks_fallback=getattr(args, "landmarks_fallback", BuildConfig.landmarks_fallback),
    )


def flow_from_args(args: argparse.Namespace) -> FlowConfig:
    """The FlowConfig of parsed flow options (add_flow_options)."""
    return FlowConfig(backend=args.flow, ckpt=args.flow_ckpt, preset=args.dis_preset, device=args.device,
                      batch_pairs=args.batch_pairs, dtype=args.flow_dtype, scale=args.flow_scale,
                      precision=args.flow_precision)


def _names(value: str | None, option: str) -> tuple[str, ...] | None:
    """A comma-separated list, or the names in a file (one per line or comma-separated)."""
    if value is None:
        return None
    if os.path.isfile(value):
        try:
            with open(value, encoding="utf-8") as fh:
                value = fh.read().replace("\n", ",")
        except (OSError, UnicodeDecodeError) as exc:
            raise FlowprepError(f"{option} {value}: cannot read the file ({exc})") from None
    names = comma_list(value)
    if not names:
        raise FlowprepError(f"{option}: no names given; pass NAME,NAME or a file with one name per line")
    return names


def run_build(args: argparse.Namespace) -> int:
    from ..builder import build

    cfg = config_from_args(args)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise FlowprepError(f"--out {args.out} is a file: give a folder (it is made when missing)")
    try:
        with _stdout_for_json_only(args.json):
            report = build(args.src, args.out, cfg, overwrite=args.overwrite, progress=not args.no_progress)
    except OSError as exc:
        if exc.filename is None:  # a write that failed on flush or close (a full disk) names no file
            exc.filename = args.out
        raise
    for line in report.lines():
        print(line, file=sys.stderr)
    if args.json:
        rates = {"frames_per_s": report.frames_per_s, "steady_frames_per_s": report.steady_frames_per_s,
                 "stage_balance": report.stage_balance}
        print(json.dumps({**asdict(report), **rates, "exit_code": report.exit_code}, indent=1))
    return report.exit_code


@contextlib.contextmanager
def _stdout_for_json_only(active: bool):
    """With --json, stdout carries the report alone: Ray and its native code print cluster events (a
    node that died) to file descriptor 1, so while the build runs fd 1 points at stderr."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
