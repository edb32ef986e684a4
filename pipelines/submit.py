"""Submit a `flowprep build` to a Ray cluster as a Ray job, from a TOML file (lrw.toml, grid.toml).

    python pipelines/submit.py pipelines/lrw.toml [--dry-run]

[job] holds `ray job submit` options (address, entrypoint-num-cpus, ...) and [job.env] environment variables
for the job; [build] holds `flowprep build` options. The job runs `flowprep build ... --ray-address auto` on
the cluster, so every node's CPUs and GPUs take part. Submitting the same file again resumes the build.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path


def _options(table: dict) -> list[str]:
    """`key = value` -> `--key value`; `key = true` -> `--key`; false leaves the option out."""
    args: list[str] = []
    for key, value in table.items():
        if value is True:
            args.append(f"--{key}")
        elif value is not False:
            args += [f"--{key}", str(value)]
    return args


def build_command(config: dict) -> list[str]:
    return ["flowprep", "build", *_options(config["build"]), "--ray-address", "auto"]


def submit_command(config: dict) -> list[str]:
    job = dict(config["job"])
    env = job.pop("env", {})
    runtime_env = ["--runtime-env-json", json.dumps({"env_vars": env})] if env else []
    return ["ray", "job", "submit", *_options(job), *runtime_env, "--", *build_command(config)]


def check_build_options(command: list[str]) -> None:
    """Reject a misspelt [build] key here rather than in the job's log (where flowprep is installed)."""
    try:
        from flowprep.cli import build_parser
    except ImportError:
        return  # the job checks them when it starts
    build_parser().parse_args(command[1:])  # argparse names the bad option and exits 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="a TOML file with [job] and [build] tables")
    parser.add_argument("--dry-run", action="store_true", help="print the `ray job submit` command, run nothing")
    args = parser.parse_args()
    config = tomllib.loads(args.config.read_text())
    command = submit_command(config)
    check_build_options(build_command(config))
    if args.dry_run:
        print(shlex.join(command))
        return 0
    # Streams the job's log; exits 0 when the build succeeded, 1 otherwise (flowprep's own status is in the log).
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
