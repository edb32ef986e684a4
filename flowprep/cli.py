"""The `flowprep` command: a thin layer over the library (each subcommand calls one function)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict

from . import __version__
from .config import BuildConfig, FlowConfig, RoiConfig
from .errors import EXIT_FATAL, FlowprepError

DESCRIPTION = """\
Prepare two-stream lipreading data: 112x112 grayscale mouth crops and the optical flow between
consecutive crops, stored in HDF5 shards with a manifest.

  flowprep build --src lipread_mp4/ --out shards/      # LRW, PWC-Net flow (needs its weights)
  flowprep build --src grid/ --out shards/ --flow dis  # any layout, CPU flow
  flowprep bench --src lipread_mp4/ --limit 20         # throughput and per-stage cost
"""

EXIT_HELP = """\
exit status: 0 every clip built; 3 the build completed but some clips failed (see failures.jsonl);
2 a fatal error (bad arguments, unreadable input, incomplete build: rerun to resume)."""


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Show a default only where there is one worth reading (not None, not an off switch)."""

    def _get_help_string(self, action):
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_FATAL
    try:
        return args.func(args)
    except FlowprepError as exc:
        print(f"flowprep: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("flowprep: interrupted; committed shards are kept, rerun to resume", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowprep", description=DESCRIPTION, epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"flowprep {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    b = sub.add_parser("build", help="videos -> mouth ROIs -> optical flow -> HDF5 shards",
                       description="Build shards from a folder of videos. Rerunning the same command resumes.",
                       epilog=EXIT_HELP, formatter_class=_Help)
    b.add_argument("--src", required=True, help="folder of videos (LRW's lipread_mp4/, GRID, or any folder)")
    b.add_argument("--out", required=True, help="output folder for shards, manifest.json and failures.jsonl")
    _add_build_options(b)
    b.add_argument("--overwrite", action="store_true", help="discard an earlier build in --out and start over")
    b.add_argument("--no-progress", action="store_true", help="no progress bar (logs, batch jobs)")
    b.add_argument("--json", action="store_true", help="print the final report as JSON on stdout")
    b.set_defaults(func=_cmd_build)

    v = sub.add_parser("verify", help="check every shard against the manifest (checksums, shapes, offsets)",
                       description="Recompute checksums and check every shard; exit 1 naming each problem.")
    v.add_argument("root", help="a shard folder written by `flowprep build`")
    v.add_argument("--no-checksums", action="store_true", help="skip sha256 (faster on large folders)")
    v.set_defaults(func=_cmd_verify)

    st = sub.add_parser("stats", help="clips per split and label, QC distributions, bytes per clip",
                        description="Summarise a shard folder.")
    st.add_argument("root", help="a shard folder written by `flowprep build`")
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(func=_cmd_stats)

    pv = sub.add_parser("preview", help="contact sheet PNG: crops, colour-coded flow and QC per clip",
                        description="Draw clips' crops over time with their flow; pick clips by id or worst QC.")
    pv.add_argument("root", help="a shard folder written by `flowprep build`")
    pv.add_argument("--out", default="preview.png",
                    help="image to write (.png, .jpg, .webp, ...); a missing folder is created")
    pv.add_argument("--clip", action="append", help="a clip id to show (repeatable)")
    pv.add_argument("--worst", type=int, default=None, help="show the N clips with the worst QC (default 4)")
    pv.add_argument("--columns", type=int, default=10, help="frames shown per clip")
    pv.set_defaults(func=_cmd_preview)

    from .bench import add_bench_parser

    add_bench_parser(sub, _add_build_options)
    from .train.cli import add_train_parsers  # train, eval
    add_train_parsers(sub)
    return parser


def _add_build_options(p: argparse.ArgumentParser) -> None:
    d, f, r = BuildConfig(), FlowConfig(), RoiConfig()
    p.add_argument("--layout", default=d.layout, choices=["auto", "lrw", "grid", "folder"],
                   help="source layout; auto detects it")
    p.add_argument("--flow", default=f.backend, choices=["pwcnet", "dis", "farneback"],
                   help="optical-flow backend; dis and farneback are CPU-only")
    p.add_argument("--flow-ckpt", default=f.ckpt,
                   help="PWC-Net weights: 'things', 'sintel' (ptlflow's cache) or a local .ckpt path")
    p.add_argument("--dis-preset", default=f.preset, choices=["ultrafast", "fast", "medium"], help="DIS preset")
    p.add_argument("--flow-dtype", default=f.dtype, choices=["int8", "int16", "float16"], help="stored flow type")
    p.add_argument("--flow-scale", type=float, default=f.scale, help="pixels per stored flow unit (int types)")
    p.add_argument("--flow-precision", default=f.precision, choices=["fp32", "bf16", "fp16"],
                   help="PWC-Net arithmetic: bf16/fp16 autocast is several times faster on GPUs and on CPUs with "
                        "AMX (fp16: CUDA only) and moves the flow slightly (see README: Flow backends)")
    p.add_argument("--device", default=f.device, choices=["auto", "cpu", "cuda"], help="where PWC-Net runs")
    p.add_argument("--batch-pairs", type=int, default=f.batch_pairs, help="frame pairs per PWC-Net forward pass")
    p.add_argument("--detector", default=r.detector, choices=["hog", "cnn"], help="dlib face detector")
    p.add_argument("--workers", type=int, default=None, help="CPU workers of the local cluster (default: all cores)")
    p.add_argument("--shard-size", type=int, default=d.shard_size, help="clips per shard file")
    p.add_argument("--compression", default=d.compression, choices=["lz4hc", "zstd", "gzip", "none"],
                   help="HDF5 compression: lz4hc reads fastest, zstd is ~15%% smaller")
    p.add_argument("--audio", action="store_true",
                   help="also store each clip's audio (16 kHz mono, aligned to the frames); "
                        "a clip without audio becomes a failure")
    p.add_argument("--limit", type=int, default=None, help="only the first N clips (a quick trial)")
    p.add_argument("--ray-address", default=None,
                   help="an existing Ray cluster, e.g. HEAD_IP:6379 (default: start a local one); --out must then "
                        "be on a filesystem every node mounts at the same path")
    p.add_argument("--stall-timeout", type=float, default=BuildConfig.stall_timeout, metavar="S",
                   help="fail when no clip finishes for S seconds (a cluster that lost its workers)")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    roi = RoiConfig(detector=args.detector)
    flow = FlowConfig(
        backend=args.flow,
        ckpt=args.flow_ckpt,
        preset=args.dis_preset,
        device=args.device,
        batch_pairs=args.batch_pairs,
        dtype=args.flow_dtype,
        scale=args.flow_scale,
        precision=args.flow_precision,
    )
    if flow.precision != "fp32" and flow.backend != "pwcnet":
        raise FlowprepError(f"--flow-precision {flow.precision} applies to --flow pwcnet only")
    if args.shard_size < 1:
        raise FlowprepError("--shard-size must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise FlowprepError("--workers must be at least 1")
    return BuildConfig(
        layout=args.layout,
        roi=roi,
        flow=flow,
        shard_size=args.shard_size,
        compression=args.compression,
        audio=bool(getattr(args, "audio", False)),
        workers=args.workers,
        ray_address=args.ray_address,
        limit=args.limit,
        stall_timeout=args.stall_timeout,
    )


def _cmd_build(args: argparse.Namespace) -> int:
    from .build import build

    cfg = config_from_args(args)
    with _stdout_for_json_only(args.json):
        report = build(args.src, args.out, cfg, overwrite=args.overwrite, progress=not args.no_progress)
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


def _cmd_verify(args: argparse.Namespace) -> int:
    from .shards.verify import verify

    problems = verify(args.root, checksums=not args.no_checksums)
    for problem in problems:
        print(f"BAD {problem}")
    print(f"{args.root}: {'OK' if not problems else f'{len(problems)} problem(s)'}", file=sys.stderr)
    return 1 if problems else 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from .shards.stats import format_stats, shard_stats

    stats = shard_stats(args.root)
    print(json.dumps(stats, indent=1) if args.json else format_stats(stats))
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from .preview import preview

    path = preview(args.root, args.out, clip_ids=args.clip, worst=args.worst, columns=args.columns)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
