"""Which way to run ffmpeg's decoder: a process per clip, one process for many clips, or in-process?

    python benchmarks/decode_paths.py --clips 40 --repeats 3

Decodes the same 256x256 H.264 LRW-shaped clips (29 frames, cut from ../shared/data/grid, or the
synthetic photo clips without it) to gray frames three ways and prints ms/frame, best of --repeats,
as wall time and as CPU time (this process and its children), and each clip's best time summed (on
a shared machine the least disturbed figures):

  program per clip   flowprep.decode.ffmpeg.decode_gray: the ffmpeg program, one run per clip
  program for all    one ffmpeg run decoding every clip (N inputs, N outputs): what a long-lived
                     ffmpeg per worker could reach at best, with the spawn paid once
  in-process         flowprep.decode.decode_gray: ffmpeg's libraries through PyAV
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flowprep.decode import decode_gray, ffmpeg as program  # noqa: E402
from tests import media  # noqa: E402


def make_clips(folder: Path, count: int) -> list[Path]:
    if media.grid_clips():
        sources = [program.decode_gray(p).frames for p in media.grid_clips()]
        frames = [media.grid_to_lrw_frames(sources[k % len(sources)], (7 * k) % 40) for k in range(count)]
    else:
        frames = [media.face_clip_frames(media.LRW_FRAMES, media.LRW_SIZE, (k % 5, k % 3))[0] for k in range(count)]
    return [media.write_video(folder / f"WORD_{k:05d}.mp4", f) for k, f in enumerate(frames)]


def _all_in_one_program(clips: list[Path]) -> None:
    args = [program.ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error"]
    for p in clips:
        args += ["-i", str(p)]
    for i in range(len(clips)):
        args += ["-map", f"{i}:v:0", "-f", "image2pipe", "-vcodec", "pgm", "-pix_fmt", "gray", "-"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def measure_per_clip(decode, clips: list[Path], frames: int, repeats: int) -> dict:
    """Each clip's best of ``repeats`` (wall), summed: on a shared machine the least disturbed run of
    each clip is the closest to its own cost."""
    best = [min(_timed(decode, p) for _ in range(repeats)) for p in clips]
    return {"best_per_clip_ms_per_frame": round(1000 * sum(best) / frames, 3)}


def _timed(decode, path: Path) -> float:
    t0 = time.perf_counter()
    decode(path)
    return time.perf_counter() - t0


def measure(fn, frames: int, repeats: int) -> dict:
    walls, cpus = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), os.times()
        fn()
        c1 = os.times()
        walls.append(time.perf_counter() - t0)
        cpus.append(sum(c1[:4]) - sum(c0[:4]))
    return {"wall_ms_per_frame": round(1000 * min(walls) / frames, 3), "cpu_ms_per_frame": round(1000 * min(cpus) / frames, 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fpdecode") as tmp:
        clips = make_clips(Path(tmp), args.clips)
        frames = args.clips * media.LRW_FRAMES
        figures = {
            "clips": args.clips,
            "program_per_clip": measure(lambda: [program.decode_gray(p) for p in clips], frames, args.repeats),
            "program_for_all": measure(lambda: _all_in_one_program(clips), frames, args.repeats),
            "in_process": measure(lambda: [decode_gray(p) for p in clips], frames, args.repeats),
        }
        figures["program_per_clip"].update(measure_per_clip(program.decode_gray, clips, frames, args.repeats))
        figures["in_process"].update(measure_per_clip(decode_gray, clips, frames, args.repeats))
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    print(f"{args.clips} clips x {media.LRW_FRAMES} frames, 256x256 H.264, best of {args.repeats}:")
    for name in ("program_per_clip", "program_for_all", "in_process"):
        f = figures[name]
        per_clip = f"  {f['best_per_clip_ms_per_frame']:6.3f} best per clip" if "best_per_clip_ms_per_frame" in f else ""
        print(f"  {name:<17} {f['wall_ms_per_frame']:6.3f} ms/frame wall  {f['cpu_ms_per_frame']:6.3f} ms/frame CPU"
              + per_clip)


if __name__ == "__main__":
    main()
