"""Does going multi-node cost anything? The same build on one Ray node with N CPUs and on N nodes
with one CPU each, all on this machine over loopback, alternating, through the CLI as a user runs it.

    python benchmarks/multinode.py --src /data/lrw_subset/lipread_mp4 --cpus 2 --repeats 3

Without --src it cuts an LRW-shaped tree of --clips clips from ../shared/data/grid (needs that
folder). Prints each run's whole-build and steady rates and the multi/single ratio of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import media  # noqa: E402
from tests.raycluster import LOOPBACK_ENV, LoopbackCluster  # noqa: E402


def build_once(src: Path, cpus: tuple[int, ...], shard_size: int, flow: str) -> dict:
    with LoopbackCluster(cpus) as cluster, tempfile.TemporaryDirectory(prefix="fpbench") as out:
        cmd = [sys.executable, "-m", "flowprep.cli", "build", "--src", str(src), "--out", out, "--flow", flow,
               "--shard-size", str(shard_size), "--ray-address", cluster.address, "--no-progress", "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, **LOOPBACK_ENV})
        if done.returncode != 0:
            raise SystemExit(f"build failed ({done.returncode}):\n{done.stderr[-2000:]}")
        report = json.loads(done.stdout)
    return {"cpus": list(cpus), "clips": report["clips"], "seconds": report["seconds"],
            "fps": report["frames"] / report["seconds"], "steady_fps": report["steady_frames_per_s"], "nodes": report["nodes"]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, help="clips to build (default: an LRW-shaped tree cut from GRID)")
    p.add_argument("--clips", type=int, default=48, help="clips in the GRID-cut tree")
    p.add_argument("--cpus", type=int, default=2, help="total CPUs: one node with all, or this many 1-CPU nodes")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--shard-size", type=int, default=8)
    p.add_argument("--flow", default="dis", choices=["dis", "farneback"])
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="fpsrc") as tmp:
        src = args.src
        if src is None:
            src = Path(tmp) / "lipread_mp4"
            per_word = max(1, args.clips // len(media.LRW_WORDS))
            media.make_lrw_tree(src, per_split={"train": per_word})
        layouts = {"single": (args.cpus,), "multi": (1,) * args.cpus}
        runs: dict[str, list[dict]] = {"single": [], "multi": []}
        for i in range(args.repeats):
            for name in (["single", "multi"] if i % 2 == 0 else ["multi", "single"]):
                run = build_once(src, layouts[name], args.shard_size, args.flow)
                runs[name].append(run)
                print(f"{name:6s} nodes={run['cpus']} clips={run['clips']} {run['seconds']:.1f} s "
                      f"{run['fps']:.1f} fps (steady {run['steady_fps']:.1f}) per node {run['nodes']}", flush=True)
    med = {k: statistics.median(r["steady_fps"] for r in v) for k, v in runs.items()}
    whole = {k: statistics.median(r["fps"] for r in v) for k, v in runs.items()}
    print(f"median steady fps: single node {med['single']:.1f}, {args.cpus} nodes {med['multi']:.1f}, "
          f"ratio {med['multi'] / med['single']:.3f}; whole build {whole['single']:.1f} vs {whole['multi']:.1f} "
          f"(ratio {whole['multi'] / whole['single']:.3f})")


if __name__ == "__main__":
    main()
