"""The `flowprep` command: a thin layer over the library (each subcommand calls one function).

Its boundary turns whatever a command raises into the documented exit statuses: a FlowprepError (a
mistake the message explains) and an OSError (a path, a permission, a full disk) are one line on
stderr and exit 2; anything else is a bug, told in one line that names a log file holding the
traceback (``--debug`` prints it instead).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from . import __version__
from .config import BuildConfig, FlowConfig, RoiConfig
from .cliforms import Help as _Help
from .cliforms import Parser, add_folder_argument, resolve_folder
from .errors import EXIT_FATAL, EXIT_OK, FlowprepError

DESCRIPTION = """\
Prepare two-stream lipreading data: 112x112 grayscale mouth crops and the optical flow between
consecutive crops, stored in HDF5 shards with a manifest.

  flowprep build --src lipread_mp4/ --out shards/      # LRW, PWC-Net flow (needs its weights)
  flowprep build --src grid/ --out shards/ --flow dis  # any layout, CPU flow
  flowprep bench build --src lipread_mp4/ --limit 20   # throughput and per-stage cost
  flowprep verify --shards shards/                     # then: stats, preview, train
"""

EXIT_HELP = """\
exit status: 0 every clip built; 3 the build completed but some clips failed (see failures.jsonl);
1 verify found problems; 2 a fatal error (bad arguments, a path that cannot be used, a full disk,
incomplete build: rerun to resume; a bug names the log file holding its traceback)."""

# Where the traceback of an unexpected error goes (the one-line message names the file).
LOG_DIR_ENV = "XDG_STATE_HOME"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_FATAL
    resolve_folder(args)
    try:
        status = args.func(args)
        sys.stdout.flush()  # inside the guard: a reader that left shows up here, not at exit
        return status
    except FlowprepError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"flowprep: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("flowprep: interrupted; committed shards are kept, rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _reader_left()
    except OSError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"flowprep: error: {os_error_message(exc)}", file=sys.stderr)
        return EXIT_FATAL
    except Exception as exc:  # a bug: one line here, the traceback in a file
        if args.debug:
            traceback.print_exc()
            return EXIT_FATAL
        log = _write_traceback(argv)
        where = f"the traceback is in {log}" if log else "no log could be written; rerun with --debug"
        print(f"flowprep: internal error ({type(exc).__name__}: {_first_line(exc)}); this is a bug: {where} "
              "(rerun with --debug to see it here; please report it)", file=sys.stderr)
        return EXIT_FATAL


def os_error_message(exc: OSError) -> str:
    """One line for an OSError: what happened, to which path, and what to do about it."""
    path = exc.filename if exc.filename is not None else ""
    if exc.filename2 is not None:
        path = f"{path} -> {exc.filename2}"
    what = exc.strerror or str(exc)
    named = re.search(r"name = '([^']+)'", str(exc))  # HDF5's errors carry the path in their text only
    if not path and named and exc.errno:
        path, what = named.group(1), os.strerror(exc.errno)
    todo = {
        errno.EEXIST: "a file is in the way: give a folder path, or move the file",
        errno.ENOTDIR: "part of the path is a file, not a folder: give a folder path",
        errno.EISDIR: "a folder is in the way where a file is needed: give a file path",
        errno.ENOENT: "it does not exist: check the path" + (
            "; `flowprep verify --shards DIR` lists every missing shard" if path.endswith(".h5") else ""),
        errno.EACCES: "pick a location you may write/read, or fix its permissions",
        errno.EPERM: "pick a location you may write/read, or fix its permissions",
        errno.EROFS: "the filesystem is read-only: pick another location",
        errno.ENOSPC: "free some space or pick another location, then rerun the same command (a build resumes)",
        errno.EDQUOT: "free some space or pick another location, then rerun the same command (a build resumes)",
        errno.ENAMETOOLONG: "use a shorter path",
    }.get(exc.errno, "check the path and rerun")
    return f"{path}: {what}: {todo}" if path else f"{what}: {todo}"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else "no message"


def _write_traceback(argv: list[str] | None) -> Path | None:
    """The current exception's traceback in ``$XDG_STATE_HOME/flowprep/`` (else ~/.local/state/flowprep/,
    else the temp folder); None when no folder takes it."""
    text = f"flowprep {__version__}\nargv: {sys.argv[:1] + list(sys.argv[1:] if argv is None else argv)}\n\n"
    text += traceback.format_exc()
    state = os.environ.get(LOG_DIR_ENV) or str(Path.home() / ".local" / "state")
    name = f"error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (Path(state) / "flowprep", Path(tempfile.gettempdir()) / "flowprep"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text(text)
            return folder / name
        except OSError:
            continue
    return None


def _reader_left() -> int:
    """The reader of stdout went away (`flowprep stats --json | head`): what it wanted it got. Point
    stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="flowprep", description=DESCRIPTION, epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"flowprep {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error, print the traceback instead of writing it to a log "
                             "file (give it before the command)")
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
                       description="Recompute checksums and check every shard; exit 1 naming each problem.",
                       formatter_class=_Help)
    add_folder_argument(v)
    v.add_argument("--no-checksums", action="store_true",
                   help="skip sha256 (faster on large folders; a shard modified in place then passes)")
    v.set_defaults(func=_cmd_verify)

    st = sub.add_parser("stats", help="clips per split and label, QC distributions, bytes per clip",
                        description="Summarise a shard folder.", formatter_class=_Help)
    add_folder_argument(st)
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--allow-incomplete", action="store_true",
                    help="summarise a folder whose build did not finish (refused otherwise: its figures would "
                         "describe part of the data as if it were all)")
    st.set_defaults(func=_cmd_stats)

    pv = sub.add_parser("preview", help="contact sheet PNG: crops, colour-coded flow and QC per clip",
                        description="Draw clips' crops over time with their flow; pick clips by id or worst QC.",
                        formatter_class=_Help)
    add_folder_argument(pv)
    pv.add_argument("--out", default="preview.png",
                    help="image to write (.png, .jpg, .webp, ...); a missing folder is created")
    pv.add_argument("--clip", action="append", help="a clip id to show (repeatable)")
    pv.add_argument("--worst", type=int, default=None, help="show the N clips with the worst QC (default 4)")
    pv.add_argument("--columns", type=int, default=10, help="frames shown per clip")
    pv.set_defaults(func=_cmd_preview)

    from .bench import add_bench_parser

    add_bench_parser(sub, _add_build_options, config_from_args)
    from .reflow_cli import add_reflow_parser

    add_reflow_parser(sub, _add_build_options, config_from_args)
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
    p.add_argument("--min-frames", type=int, default=d.min_frames, metavar="N",
                   help="a clip with fewer frames is a failure, not a shard entry; 2 is the least that gives a flow pair")
    p.add_argument("--words", default=None, metavar="WORD,WORD|FILE",
                   help="build only these classes (LRW words), comma-separated or one per line in FILE; labels "
                        "keep the indices of the whole tree's word list, so a partial build matches a full one")
    p.add_argument("--splits", default=None, metavar="SPLIT,SPLIT",
                   help="build only these splits (train, val, test), comma-separated")
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
        min_frames=getattr(args, "min_frames", BuildConfig.min_frames),
        words=_names(getattr(args, "words", None), "--words"),
        splits=_names(getattr(args, "splits", None), "--splits"),
    )


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
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if not names:
        raise FlowprepError(f"{option}: no names given; pass NAME,NAME or a file with one name per line")
    return names


def _cmd_build(args: argparse.Namespace) -> int:
    from .builder import build

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


def _cmd_verify(args: argparse.Namespace) -> int:
    from .shards.verify import verify

    problems = verify(args.root, checksums=not args.no_checksums)
    for problem in problems:
        print(f"BAD {problem}")
    skipped = (", sha256 NOT checked (--no-checksums): shards were checked for size and structure only, a byte "
               "changed in place would pass") if args.no_checksums else ""
    print(f"{args.root}: {'OK' if not problems else f'{len(problems)} problem(s)'}{skipped}", file=sys.stderr)
    return 1 if problems else 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from .shards.stats import format_stats, shard_stats

    stats = shard_stats(args.root, allow_incomplete=args.allow_incomplete)
    print(json.dumps(stats, indent=1) if args.json else format_stats(stats))
    return 0


def _cmd_preview(args: argparse.Namespace) -> int:
    from .preview import preview

    path = preview(args.root, args.out, clip_ids=args.clip, worst=args.worst, columns=args.columns)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
