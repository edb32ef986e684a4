"""`flowprep bench`: the command group that prints measurements, one subcommand per thing measured.
Each subcommand is a thin layer over the benchmark that lives next to what it measures:
flowprep.builder.bench (build), flowprep.dataset.bench (read), flowprep.flow.bench (flow) and
flowprep.train.bench (train, which registers its own options).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ..train.bench import add_bench_train_parser
from .build import add_build_options, config_from_args
from .forms import Help, add_folder_argument, comma_list

BUILD_DOC = """Build throughput and per-stage cost on given videos, next to a naive recipe.

Three measurements on the same clips, in one run:
  1. stage costs on one core, in-process (decode, face+ROI, flow, shard write), and the rate
     those costs allow on every core of the machine;
  2. the naive recipe: the face detector on every frame, a fixed crop around the mouth, flow
     one pair per call;
  3. the real build (Ray, all workers) into a temporary folder.
See flowprep/builder/bench.py."""

FLOW_DOC = """Pairs/s at 112x112 of ptlflow's PWC-Net forward one pair per call (the reference), the fast
PWC-Net path per batch size, dtype and thread count, OpenCV DIS (medium) and Farneback, measured in
one process; rounds alternate the configurations and the median is reported, with peak memory
(torch.cuda.max_memory_allocated on CUDA, peak RSS on the CPU). See flowprep/flow/bench.py."""


def register(commands) -> None:
    """``flowprep bench build|read|flow|train`` (``commands``: the subcommands of ``flowprep``)."""
    bench = commands.add_parser(
        "bench", help="measure: build throughput and stage costs, shard read speed, flow or training speed",
        description="Print figures: `bench build` (decode/ROI/flow/write costs, naive recipe, Ray build), "
                    "`bench read` (random-access read speed of a shard folder), `bench flow` (pairs/s of each "
                    "flow backend) or `bench train` (training clips/s and memory per model).")
    kinds = bench.add_subparsers(title="what to measure", metavar="KIND")

    p = kinds.add_parser("build", help="build throughput and per-stage cost, next to a naive recipe",
                         description=BUILD_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="folder of videos to measure on")
    add_build_options(p)
    add_projection_arguments(p)  # --project lrw --cpus N --gpus G --gpu-pairs-per-s X
    p.set_defaults(func=run_bench_build, flow="dis", limit=64)
    p.add_argument("--json", action="store_true", help="print the figures as JSON")

    r = kinds.add_parser("read", help="random-access read speed (clips/s), one process and a DataLoader",
                         formatter_class=Help)
    add_folder_argument(r)
    r.add_argument("--split", default="train")
    r.add_argument("--clips", type=int, default=400, help="clips to read per measurement")
    r.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    r.add_argument("--json", action="store_true", help="print the figures as JSON")
    r.set_defaults(func=run_bench_read)

    f = kinds.add_parser("flow", help="flow pairs/s per backend, batch size, dtype and thread count at 112x112",
                         description=FLOW_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (PWC-Net; OpenCV flow is CPU)")
    f.add_argument("--batch-sizes", type=_ints, default=None, help="PWC-Net pairs per forward, e.g. 1,8,32,128 "
                   "(default 1,8,32 on the CPU, 64,256,1024 on CUDA)")
    f.add_argument("--dtypes", type=comma_list, default=None,
                   help="fp32,bf16,fp16 (default fp32 on the CPU, all on CUDA)")
    f.add_argument("--threads", type=_ints, default=None, help="torch/OpenCV threads, e.g. 1,2 (default 1 and all CPUs)")
    f.add_argument("--seconds", type=float, default=2.0, help="time per configuration per round")
    f.add_argument("--rounds", type=int, default=3, help="rounds over all configurations (median reported)")
    f.add_argument("--backends", type=comma_list, default=("fast", "ptlflow", "dis", "farneback"),
                   help="any of fast,ptlflow,dis,farneback and ptlflow:MODEL (e.g. ptlflow:raft_small)")
    f.add_argument("--flow-ckpt", default=None, help="PWC-Net weights (default: 'things' when cached, else a "
                   "seeded random init; speed does not depend on the values)")
    f.add_argument("--no-channels-last", dest="channels_last", action="store_false", help="NCHW activations")
    f.add_argument("--compile", action="store_true", help="also measure the fast path under torch.compile")
    f.add_argument("--json", action="store_true", help="print the figures as JSON")
    f.set_defaults(func=run_bench_flow)

    add_bench_train_parser(kinds)  # `bench train`: its options live with the training benchmark


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in comma_list(text))


def add_projection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `flowprep bench build` that ask for a projection instead of a build."""
    from ..builder.projection import PROJECTS

    group = parser.add_argument_group("projection (--project): the whole-dataset wall time from stage costs")
    group.add_argument("--project", choices=sorted(PROJECTS), default=None,
                       help="measure the stage costs on --src (no naive recipe, no build) and print the projected "
                            "wall time of a whole build of this dataset (lrw: 538,766 clips x 29 frames)")
    group.add_argument("--cpus", type=int, default=None, help="CPUs of the node to project for (default: this machine's)")
    group.add_argument("--gpus", type=int, default=None,
                       help="GPUs of that node, each running PWC-Net (default: this machine's; 0: flow on the CPUs)")
    group.add_argument("--gpu-pairs-per-s", type=float, default=None,
                       help="PWC-Net pairs/s of one GPU (default: measured when this machine has a GPU)")


def run_bench_build(args: argparse.Namespace) -> int:
    from ..builder import bench as build_bench

    cfg = config_from_args(args).replace(limit=None)
    if args.project:  # the whole-dataset projection from stage costs
        from ..builder.projection import run_projection

        result = run_projection(args.src, cfg, args.project, args.cpus, args.gpus, args.gpu_pairs_per_s,
                                args.limit or 16)
        print(json.dumps(asdict(result), indent=1) if args.json else "\n".join(result.lines()))
        return 0
    figures = build_bench.run_bench(args.src, cfg, limit=args.limit or 64)
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


def run_bench_read(args: argparse.Namespace) -> int:
    from ..dataset.bench import read_bench

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


def run_bench_flow(args: argparse.Namespace) -> int:
    from ..flow import bench as flow_bench

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
