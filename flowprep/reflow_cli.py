"""The `flowprep reflow` command: new flow for a finished shard folder (flowprep.builder.reflow).

Its flow and cluster options are the build's own: taken from the build's option set by name, so a
backend or flow option added to `build` is offered here too, with the same checks, and the options
that decide the crops (layout, detector, shard size, ...) are not offered at all: a reflow keeps the
parent's. The top-level command registers it with one call, as it does `bench`.
"""

from __future__ import annotations

import argparse
import copy
import sys
from functools import partial
from typing import Callable

from .cliforms import Help, add_folder_argument

# The build options a reflow takes (argparse dests): flow, and where and how fast it runs.
FLOW_OPTIONS = ("flow", "flow_ckpt", "dis_preset", "flow_dtype", "flow_scale", "flow_precision", "device",
                "batch_pairs", "workers", "ray_address", "stall_timeout")

DESCRIPTION = """\
New optical flow from the crops a finished build stored: no decoding, face detection or cropping.
The new folder holds the same shards, with the same clips in the same order (crops, landmarks,
audio and metadata copied), the new flow, the source's failures, and a manifest naming the source
folder and its fingerprint: what `flowprep build` with this --flow would write. The source must
be complete and pass `flowprep verify`; on a cluster every node must see it at the same path, like
--out. Rerunning the same command resumes."""


def add_reflow_parser(sub, add_build_options: Callable[[argparse.ArgumentParser], None],
                      config_from_args: Callable[[argparse.Namespace], object]) -> None:
    p = sub.add_parser("reflow", help="new optical flow from the crops of a finished build (no decode, no detection)",
                       description=DESCRIPTION, formatter_class=Help)
    add_folder_argument(p)
    p.add_argument("--out", required=True,
                   help="a new folder for the reflowed shards, manifest.json and failures.jsonl")
    build_options = argparse.ArgumentParser(add_help=False)
    add_build_options(build_options)
    for action in build_options._actions:
        if action.dest not in FLOW_OPTIONS:
            continue
        if action.dest == "flow":  # the point of a reflow: no default
            action = copy.copy(action)
            action.required, action.default = True, None
        p._add_action(action)
    p.add_argument("--overwrite", action="store_true", help="discard an earlier reflow in --out and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs, batch jobs)")
    p.set_defaults(func=partial(_cmd_reflow, build_options=build_options, config_from_args=config_from_args))


def _cmd_reflow(args: argparse.Namespace, build_options: argparse.ArgumentParser,
                config_from_args: Callable[[argparse.Namespace], object]) -> int:
    from .builder import reflow

    # the build's own parsing and checks of the flow options; the options a reflow lacks keep their defaults
    given = vars(build_options.parse_args([]))
    given.update({name: getattr(args, name) for name in FLOW_OPTIONS})
    cfg = config_from_args(argparse.Namespace(**given))
    report = reflow(args.root, args.out, cfg.flow, overwrite=args.overwrite, progress=not args.no_progress,
                    workers=cfg.workers, ray_address=cfg.ray_address, stall_timeout=cfg.stall_timeout)
    for line in report.lines():
        print(line, file=sys.stderr)
    return report.exit_code
