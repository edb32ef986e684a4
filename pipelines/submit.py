"""Submit a `flowprep build` as a Ray job from a TOML file (see lrw.toml, grid.toml).

    python pipelines/submit.py pipelines/lrw.toml [--dry-run]

The job runs `flowprep build ... --ray-address auto` on the cluster, so every node's CPUs and GPUs
take part. Rerunning the same job resumes: committed shards are skipped.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path


def build_command(config: dict) -> list[str]:
    args = ["flowprep", "build"]
    for key, value in config["build"].items():
        if value is True:
            args.append(f"--{key}")
        elif value not in (False, None):
            args += [f"--{key}", str(value)]
    return args + ["--ray-address", "auto"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path)
    parser.add_argument("--dry-run", action="store_true", help="print the command instead of submitting it")
    args = parser.parse_args()
    config = tomllib.loads(args.config.read_text())
    entrypoint = shlex.join(build_command(config))
    submit = ["ray", "job", "submit", "--address", config["cluster"]["address"], "--", *shlex.split(entrypoint)]
    if args.dry_run:
        print(shlex.join(submit))
        return 0
    return subprocess.call(submit)


if __name__ == "__main__":
    sys.exit(main())
