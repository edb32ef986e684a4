"""`flowprep verify`, `flowprep stats` and `flowprep preview`: the commands that read a shard folder
(thin layers over flowprep.shards.verify, flowprep.shards.stats and flowprep.preview)."""

from __future__ import annotations

import argparse
import json
import sys

from .forms import Help, add_folder_argument


def register(commands) -> None:
    """``flowprep verify``, ``stats`` and ``preview`` (``commands``: the subcommands of ``flowprep``)."""
    v = commands.add_parser("verify", help="check every shard against the manifest (checksums, shapes, offsets)",
                            description="Recompute checksums and check every shard; exit 1 naming each problem.",
                            formatter_class=Help)
    add_folder_argument(v)
    v.add_argument("--no-checksums", action="store_true",
                   help="skip sha256 (faster on large folders; a shard modified in place then passes)")
    v.set_defaults(func=run_verify)

    st = commands.add_parser("stats", help="clips per split and label, QC distributions, bytes per clip",
                             description="Summarise a shard folder.", formatter_class=Help)
    add_folder_argument(st)
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.add_argument("--allow-incomplete", action="store_true",
                    help="summarise a folder whose build did not finish (refused otherwise: its figures would "
                         "describe part of the data as if it were all)")
    st.set_defaults(func=run_stats)

    pv = commands.add_parser("preview", help="contact sheet PNG: crops, colour-coded flow and QC per clip",
                             description="Draw clips' crops over time with their flow; pick clips by id or worst QC.",
                             formatter_class=Help)
    add_folder_argument(pv)
    pv.add_argument("--out", default="preview.png",
                    help="image to write (.png, .jpg, .webp, ...); a missing folder is created")
    pv.add_argument("--clip", action="append", help="a clip id to show (repeatable)")
    pv.add_argument("--worst", type=int, default=None, help="show the N clips with the worst QC (default 4)")
    pv.add_argument("--columns", type=int, default=10, help="frames shown per clip")
    pv.set_defaults(func=run_preview)


def run_verify(args: argparse.Namespace) -> int:
    from ..shards.verify import verify

    problems = verify(args.root, checksums=not args.no_checksums)
    for problem in problems:
        print(f"BAD {problem}")
    skipped = (", sha256 NOT checked (--no-checksums): shards were checked for size and structure only, a byte "
               "changed in place would pass") if args.no_checksums else ""
    print(f"{args.root}: {'OK' if not problems else f'{len(problems)} problem(s)'}{skipped}", file=sys.stderr)
    return 1 if problems else 0


def run_stats(args: argparse.Namespace) -> int:
    from ..shards.stats import format_stats, shard_stats

    stats = shard_stats(args.root, allow_incomplete=args.allow_incomplete)
    print(json.dumps(stats, indent=1) if args.json else format_stats(stats))
    return 0


def run_preview(args: argparse.Namespace) -> int:
    from ..preview import preview

    path = preview(args.root, args.out, clip_ids=args.clip, worst=args.worst, columns=args.columns)
    print(f"wrote {path}", file=sys.stderr)
    return 0
