"""`flowprep reflow`: new flow for a finished shard folder (a thin layer over flowprep.builder.reflow).

Its flow and cluster options are the build's own (add_flow_options), so a backend or flow option
added to `build` is offered here too, with the same checks; the options that decide the crops
(layout, detector, shard size, ...) are not offered at all: a reflow keeps the source folder's.
"""

from __future__ import annotations

import argparse
import sys

from .build import add_flow_options, flow_from_args
from .forms import Help, add_folder_argument

DESCRIPTION = """\
New optical flow from the crops a finished build stored: no decoding, face detection or cropping.
The new folder holds the same shards, with the same clips in the same order (crops, landmarks,
audio and metadata copied), the new flow, the source's failures, and a manifest naming the source
folder and its fingerprint: what `flowprep build` with this --flow would write. The source must
be complete and pass `flowprep verify`; on a cluster every node must see it at the same path, like
--out. Rerunning the same command resumes."""


def register(commands) -> None:
    """``flowprep reflow`` (``commands``: the subcommands of ``flowprep``)."""
    p = commands.add_parser("reflow", help="new optical flow from the crops of a finished build (no decode, "
                            "no detection)", description=DESCRIPTION, formatter_class=Help)
    add_folder_argument(p)
    p.add_argument("--out", required=True,
                   help="a new folder for the reflowed shards, manifest.json and failures.jsonl")
    add_flow_options(p, flow_required=True)
    p.add_argument("--overwrite", action="store_true", help="discard an earlier reflow in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, batch jobs)")
    p.set_defaults(func=run_reflow)


def run_reflow(args: argparse.Namespace) -> int:
    from ..builder import reflow

    report = reflow(args.root, args.out, flow_from_args(args), overwrite=args.overwrite,
                    progress=not args.no_progress, workers=args.workers, ray_address=args.ray_address,
                    stall_timeout=args.stall_timeout)
    for line in report.lines():
        print(line, file=sys.stderr)
    return report.exit_code
