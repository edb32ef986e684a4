"""Real test media for every test of the project: the GRID clips, videos written with ffmpeg,
synthetic face clips from a photo, LRW-shaped trees and broken files.

Everything is written through the same ffmpeg binary the decoder uses, so a test never depends on
another video library. Nothing here is random unless seeded.
"""

from __future__ import annotations

import os
import shutil
from functools import lru_cache
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from flowprep.decode import decode_gray, ffmpeg_binary

# ---- the GRID clips ---------------------------------------------------------------------------
DATA_ENV = "FLOWPREP_TEST_DATA"
GRID_DIR = Path(os.environ.get(DATA_ENV) or Path(__file__).resolve().parents[1].parent / "shared/data/grid")
GRID_FRAMES, GRID_HEIGHT, GRID_WIDTH, GRID_FPS = 75, 288, 360, 25.0


def grid_clips() -> list[Path]:
    """The GRID test clips (six 75-frame 360x288 talking faces), sorted; [] when the folder is absent."""
    return sorted(GRID_DIR.glob("*.mpg")) if GRID_DIR.is_dir() else []


# ---- writing videos ---------------------------------------------------------------------------
# Codec per suffix when none is given, and settings that keep codec error small for pixel checks.
_CODEC_BY_SUFFIX = {".mpg": "mpeg1video", ".mpeg": "mpeg1video", ".avi": "mpeg4", ".webm": "libvpx-vp9"}
_QUALITY = {
    "libx264": {"crf": 10, "preset": "veryfast"},
    "mpeg1video": {"q:v": 2},
    "mpeg4": {"q:v": 2},
    "libvpx-vp9": {"crf": 15, "b:v": 0},
}


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = 25,
    codec: str | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write uint8 frames [T,H,W] (gray) or [T,H,W,3] (RGB) as a real video file.

    ``codec`` defaults by suffix: .mpg/.mpeg mpeg1video, .avi mpeg4, .webm vp9, else libx264.
    yuv420p needs even sizes; for odd ones pass pix_fmt="yuv444p" (libx264) or codec="ffv1".
    """
    path = Path(path)
    frames = np.ascontiguousarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or (frames.ndim == 4 and frames.shape[3] != 3):
        raise ValueError(f"frames must be uint8 [T,H,W] or [T,H,W,3], got {frames.dtype} {frames.shape}")
    _, height, width = frames.shape[:3]
    if pix_fmt == "yuv420p" and (height % 2 or width % 2):
        raise ValueError(f"yuv420p needs even sizes, got {width}x{height}; use pix_fmt='yuv444p' or codec='ffv1'")
    codec = codec or _CODEC_BY_SUFFIX.get(path.suffix.lower(), "libx264")
    path.parent.mkdir(parents=True, exist_ok=True)
    in_fmt = "gray" if frames.ndim == 3 else "rgb24"
    source = ffmpeg.input("pipe:", format="rawvideo", pix_fmt=in_fmt, s=f"{width}x{height}", framerate=fps)
    out = ffmpeg.output(source, str(path), vcodec=codec, pix_fmt=pix_fmt, r=fps, **_QUALITY.get(codec, {}))
    try:
        out.overwrite_output().global_args("-hide_banner", "-loglevel", "error").run(
            cmd=ffmpeg_binary(), input=frames.tobytes(), capture_stdout=True, capture_stderr=True
        )
    except ffmpeg.Error as exc:
        raise RuntimeError(f"ffmpeg could not write {path}: {exc.stderr.decode(errors='replace')[-500:]}") from None
    return path


# ---- a face from a photo ----------------------------------------------------------------------
# Where dlib (HOG + 68 landmarks) finds the face in matplotlib's grace_hopper.jpg (512x600):
# box (161,137)-(376,352), jaw corners 190 px apart, mouth centre (269,279), mouth 80x20 px.
PHOTO_FACE_CENTRE = (268.0, 245.0)
PHOTO_MOUTH_CENTRE = (269.0, 279.0)
# Side of the square of the photo that fills a synthetic frame: the jaw then spans about half the
# frame (130 px at 256), like a face in LRW.
PHOTO_CROP = 376.0


@lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"matplotlib sample image missing: {path}")
    return image


def grace_hopper() -> np.ndarray:
    """matplotlib's Grace Hopper portrait as uint8 gray [600, 512] (a fresh copy)."""
    return _photo().copy()


def _open_mouth(photo: np.ndarray, amount: float) -> np.ndarray:
    """The photo with the mouth stretched vertically by 1 + 0.3 * amount, fading out at the edges."""
    cx, cy = PHOTO_MOUTH_CENTRE
    x0, x1, y0, y1 = int(cx - 60), int(cx + 60), int(cy - 35), int(cy + 35)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    # weight 1 at the mouth centre, 0 at the edge of the region: no seams
    weight = np.clip(1 - np.abs(xs - cx) / 60, 0, 1) * np.clip(1 - np.abs(ys - cy) / 35, 0, 1)
    factor = 1 + 0.3 * amount
    map_y = (ys + weight * ((cy + (ys - cy) / factor) - ys)).astype(np.float32)
    out = photo.copy()
    out[y0:y1, x0:x1] = cv2.remap(photo, xs, map_y, cv2.INTER_LINEAR)
    return out


def face_clip_frames(
    frames: int = 29, size: int = 256, shift_per_frame: tuple[float, float] = (1.0, 0.5), mouth: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [T,size,size] frames, float [T,2] per-frame (dx,dy) translation in pixels).

    Frame t is the photo, face centred, translated by (t - (T-1)/2) * shift_per_frame (so the middle
    frame is centred). With ``mouth`` the mouth also opens and closes (period 8 frames), a local
    motion on top of the translation.
    """
    photo = _photo()
    scale = size / PHOTO_CROP
    offsets = (np.arange(frames, dtype=np.float64)[:, None] - (frames - 1) / 2) * np.asarray(shift_per_frame)
    out = np.empty((frames, size, size), np.uint8)
    for t in range(frames):
        src = _open_mouth(photo, 0.5 - 0.5 * np.cos(2 * np.pi * t / 8)) if mouth else photo
        tx = size / 2 - scale * PHOTO_FACE_CENTRE[0] + offsets[t, 0]
        ty = size / 2 - scale * PHOTO_FACE_CENTRE[1] + offsets[t, 1]
        matrix = np.array([[scale, 0, tx], [0, scale, ty]], np.float64)
        out[t] = cv2.warpAffine(src, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return out, offsets


def make_face_clip(
    path: str | Path,
    frames: int = 29,
    size: int = 256,
    shift_per_frame: tuple[float, float] = (1.0, 0.5),
    mouth: bool = True,
) -> np.ndarray:
    """Write a synthetic talking-face clip from the photo (see face_clip_frames); returns the
    float [T,2] per-frame (dx,dy) translation, the ground truth of the global motion."""
    pixels, offsets = face_clip_frames(frames, size, shift_per_frame, mouth)
    write_video(path, pixels)
    return offsets


# ---- LRW-shaped trees -------------------------------------------------------------------------
LRW_WORDS = ("ABOUT", "BECAUSE", "WORLD")
LRW_PER_SPLIT = {"train": 2, "val": 1, "test": 1}
LRW_FRAMES, LRW_SIZE = 29, 256


def lrw_txt(word: str, duration: float, conf: int = 5) -> str:
    """The text of an LRW .txt for a clip of ``word`` lasting ``duration`` seconds."""
    return f"Text:  {word}\nConf:  {conf}\nDuration: {duration:.2f} seconds\n"


def lrw_duration(k: int) -> float:
    """The word duration written for the k-th clip of a generated tree: 0.20 … 0.74 s."""
    return 0.20 + 0.06 * (k % 10)


def _lrw_tree(root: Path, words, per_split, clip_frames) -> list[Path]:
    written, k = [], 0
    for word in words:
        for split, count in per_split.items():
            for i in range(1, count + 1):
                stem = root / word / split / f"{word}_{i:05d}"
                written.append(write_video(stem.with_suffix(".mp4"), clip_frames(k)))
                stem.with_suffix(".txt").write_text(lrw_txt(word, lrw_duration(k)))
                k += 1
    return written


def grid_to_lrw_frames(frames: np.ndarray, start: int) -> np.ndarray:
    """29 frames from ``start`` of a GRID clip: the central square (faces are not squashed), at 256x256."""
    height, width = frames.shape[1:]
    x0 = (width - height) // 2
    window = frames[start : start + LRW_FRAMES, :, x0 : x0 + height]
    return np.stack([cv2.resize(f, (LRW_SIZE, LRW_SIZE), interpolation=cv2.INTER_AREA) for f in window])


def make_lrw_tree(
    root: str | Path,
    clips: list[Path] | None = None,
    words: tuple[str, ...] = LRW_WORDS,
    per_split: dict[str, int] = LRW_PER_SPLIT,
) -> list[Path]:
    """An LRW-shaped tree (WORD/split/WORD_NNNNN.mp4 + .txt) cut from the GRID clips: the k-th clip
    is 29 frames of GRID clip k mod n from frame 7k mod 47. Returns the videos written."""
    clips = grid_clips() if clips is None else clips
    if not clips:
        raise FileNotFoundError(f"no GRID clips at {GRID_DIR}; use make_lrw_tree_from_photo")
    decoded = [decode_gray(c).frames for c in clips]

    def frames_of(k: int) -> np.ndarray:
        source = decoded[k % len(decoded)]
        return grid_to_lrw_frames(source, (7 * k) % (len(source) - LRW_FRAMES + 1))

    return _lrw_tree(Path(root), words, per_split, frames_of)


def make_lrw_tree_from_photo(
    root: str | Path, words: tuple[str, ...] = LRW_WORDS, per_split: dict[str, int] = LRW_PER_SPLIT
) -> list[Path]:
    """The same tree as make_lrw_tree from synthetic photo clips, each drifting its own way."""

    def frames_of(k: int) -> np.ndarray:
        shift = (0.6 * np.cos(k), 0.6 * np.sin(k))
        return face_clip_frames(LRW_FRAMES, LRW_SIZE, shift)[0]

    return _lrw_tree(Path(root), words, per_split, frames_of)


# ---- broken inputs ----------------------------------------------------------------------------
def make_bad_files(folder: str | Path) -> dict[str, str]:
    """Files a build must record as failures, not crash on: {file name: stage expected to fail}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = write_video(folder / "whole.tmp.mp4", face_clip_frames(12, 128)[0])
    data = good.read_bytes()
    good.unlink()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])  # the index (moov) is at the end: lost
    (folder / "random_bytes.mp4").write_bytes(np.random.default_rng(7).integers(0, 256, 20000, np.uint8).tobytes())
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("this is not a video\n" * 20)
    # a flat gray clip with a drifting bright square: decodes fine, holds no face
    flat = np.full((12, 128, 128), 110, np.uint8)
    for t in range(len(flat)):
        flat[t, 40:70, 30 + 3 * t : 60 + 3 * t] = 200
    write_video(folder / "no_face.mp4", flat)
    return {
        "truncated.mp4": "decode",
        "random_bytes.mp4": "decode",
        "empty.mp4": "discover",  # never planned: discovery records it
        "text.mp4": "decode",
        "no_face.mp4": "roi",
    }


# ---- cut and odd videos (decode honesty) -----------------------------------------------------
def cut_file(src: str | Path, dst: str | Path, keep: int | float) -> Path:
    """A copy of ``src`` holding only its first ``keep`` bytes (an int) or that share of them (a float)."""
    data = Path(src).read_bytes()
    size = keep if isinstance(keep, int) else int(len(data) * keep)
    if not 0 < size < len(data):
        raise ValueError(f"cannot keep {size} of {len(data)} bytes")
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_bytes(data[:size])
    return Path(dst)


def write_mp4(path: str | Path, frames: np.ndarray, faststart: bool, fps: float = 25) -> Path:
    """An H.264 MP4 with its index (moov) at the front (``faststart``) or, as ffmpeg writes by
    default, at the end, where cutting the file loses it."""
    path = Path(path)
    height, width = frames.shape[1:3]
    source = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="gray", s=f"{width}x{height}", framerate=fps)
    extra = {"movflags": "+faststart"} if faststart else {}
    ffmpeg.output(source, str(path), vcodec="libx264", pix_fmt="yuv420p", r=fps, **extra).overwrite_output().run(
        cmd=ffmpeg_binary(), input=np.ascontiguousarray(frames).tobytes(), quiet=True
    )
    return path


def avi_cut_before_frame(src: str | Path, dst: str | Path, frame: int) -> Path:
    """A copy of an AVI ending cleanly just before the chunk of video frame ``frame``: no broken
    packet for the decoder to report, only the header's frame count to tell it is short."""
    data = Path(src).read_bytes()
    pos = data.index(b"movi") + 4
    seen = 0
    while pos + 8 <= len(data):
        fourcc, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if fourcc[2:] in (b"dc", b"db"):
            if seen == frame:
                return cut_file(src, dst, pos)
            seen += 1
        pos += 8 + size + (size & 1)
    raise ValueError(f"{src} has fewer than {frame + 1} video chunks")


def one_frame_mpg(src: str | Path, dst: str | Path) -> Path:
    """The first frame of an MPEG-PS clip (a GRID .mpg), stream-copied: the container and stream of
    the original, with a single frame."""
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    ffmpeg.input(str(src)).output(str(dst), vcodec="copy", an=None, **{"frames:v": 1}).overwrite_output().run(
        cmd=ffmpeg_binary(), quiet=True
    )
    return Path(dst)


def make_broken_grid_tree(root: str | Path, good: int = 2) -> dict[str, tuple[str, str]]:
    """A GRID speaker tree of ``good`` whole GRID clips (s1/) beside every input a build must record
    as a failure rather than build or lose: {entry's path relative to root: (stage, reason regex)}.

    s1/  the GRID clips' first 20 KB and 200 KB (GRID-named: they pass discovery, fail at decode)
    s2/  GRID frames as an MP4 with its index at the end, an AVI and an MKV, each cut in half, and
         a one-frame clip (the first frame of a GRID .mpg)
    s3/  a symlink loop, a dangling symlink, a FIFO, a misnamed copy of a good clip, an empty file
    """
    root = Path(root)
    clips = grid_clips()
    if len(clips) < good:
        raise FileNotFoundError(f"need {good} GRID clips at {GRID_DIR}")
    for d in ("s1", "s2", "s3"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for clip in clips[:good]:
        (root / "s1" / clip.name).write_bytes(clip.read_bytes())
    first = clips[0]
    cut_file(first, root / "s1/pbai1a.mpg", 20_000)
    cut_file(first, root / "s1/pbai2a.mpg", 200_000)
    frames = decode_gray(first).frames
    work = root / ".whole"  # hidden: discovery leaves it alone; removed below
    work.mkdir(exist_ok=True)
    cut_file(write_mp4(work / "w.mp4", frames, faststart=False), root / "s2/sgaa1s.mp4", 0.5)
    cut_file(write_video(work / "w.avi", frames), root / "s2/sgab1s.avi", 0.5)
    cut_file(write_video(work / "w.mkv", frames), root / "s2/sgac1s.mkv", 0.5)
    one_frame_mpg(first, root / "s2/sgad1s.mpg")
    shutil.rmtree(work)
    os.symlink("lgaa1a.mp4", root / "s3/lgaa1a.mp4")  # points at itself
    os.symlink("nowhere/gone.mp4", root / "s3/lgab1a.mp4")
    os.mkfifo(root / "s3/lgac1a.mp4")
    (root / "s3/take 2.mpg").write_bytes(first.read_bytes())
    (root / "s3/lgad1a.mpg").write_bytes(b"")
    return {
        "s1/pbai1a.mpg": ("decode", r"^3 of 75 frames decoded: the video stream breaks off"),
        "s1/pbai2a.mpg": ("decode", r"^35 of 75 frames decoded: the video stream breaks off"),
        "s2/sgaa1s.mp4": ("decode", r"moov atom not found"),
        "s2/sgab1s.avi": ("decode", r"^\d+ of 75 frames decoded: the video stream breaks off"),
        "s2/sgac1s.mkv": ("decode", r"^\d+ of 75 frames decoded: the video stream breaks off"),
        "s2/sgad1s.mpg": ("decode", r"^1 of 75 frames decoded, not the frames every clip of this dataset holds"),
        "s3/lgaa1a.mp4": ("discover", r"^symbolic link loop"),
        "s3/lgab1a.mp4": ("discover", r"^dangling symbolic link to 'nowhere/gone.mp4'"),
        "s3/lgac1a.mp4": ("discover", r"^a FIFO \(named pipe\), not a video file: left unopened"),
        "s3/take 2.mpg": ("discover", r"^the name does not spell a GRID sentence"),
        "s3/lgad1a.mpg": ("discover", r"^empty file \(0 bytes\)"),
    }
