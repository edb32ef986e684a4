"""The `flowprep` command: a thin layer over the library (each subcommand calls one function).

One module per command group registers its subcommands through ``register(commands)``; COMMANDS lists
them in help order, and build_parser() assembles them. Command modules import the library and
``forms.py``, never this module, so the command line has no loop.

main() is the boundary that turns whatever a command raises into the documented exit statuses: a
FlowprepError (a mistake the message explains) and an OSError (a path, a permission, a full disk) are
one line on stderr and exit 2; anything else is a bug, told in one line that names a log file holding
the traceback (``--debug`` prints it instead).
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path

from ..version import __version__
from ..errors import EXIT_FATAL, EXIT_OK, FlowprepError
from . import bench, build, reflow, shards, train
from .build import EXIT_HELP, config_from_args
from .forms import Parser, resolve_folder, walk

__all__ = ["COMMANDS", "build_parser", "config_from_args", "main", "os_error_message", "walk"]

DESCRIPTION = """\
Prepare two-stream lipreading data: 112x112 grayscale mouth crops and the optical flow between
consecutive crops, stored in HDF5 shards with a manifest.

  flowprep build --src lipread_mp4/ --out shards/      # LRW, PWC-Net flow (needs its weights)
  flowprep build --src grid/ --out shards/ --flow dis  # any layout, CPU flow
  flowprep bench build --src lipread_mp4/ --limit 20   # throughput and per-stage cost
  flowprep verify --shards shards/                     # then: stats, preview, train
"""

# The command modules, in the order `flowprep --help` lists them: each registers its subcommands
# through register(commands), commands being what add_subparsers returned. A new command is a module
# here with that function.
COMMANDS = (build, reflow, shards, bench, train)

# Where the traceback of an unexpected error goes (the one-line message names the file).
LOG_DIR_ENV = "XDG_STATE_HOME"


def main(argv: list[str] | None = None) -> int:
    """Run one `flowprep` command line (``sys.argv[1:]`` when None); returns the exit status."""
    parser = build_parser()
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


def build_parser() -> argparse.ArgumentParser:
    """The whole `flowprep` command line; ``build_parser().parse_args(argv)`` is what main reads."""
    parser = Parser(
        prog="flowprep", description=DESCRIPTION, epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"flowprep {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error, print the traceback instead of writing it to a log "
                             "file (give it before the command)")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMANDS:
        module.register(commands)
    return parser
