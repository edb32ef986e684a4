"""`flowprep preview`: a contact sheet a person can judge at a glance.

One band per clip: the mouth crops over time with their frame index, the flow under them
colour-coded with the standard Middlebury colour wheel (hue = direction, saturation = magnitude,
one shared scale per sheet, shown as a key at the top) with its pair index, and a caption with the
clip id, its word and its text (or "unlabelled") and its QC numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import flow_vis
import numpy as np

from .shards.reader import ShardFile
from .errors import FlowprepError
from .shards.manifest import Manifest

CAPTION_H = 22  # the clip caption above each band
INDEX_H = 14  # the frame / pair index strips under the tiles
KEY_H, KEY_W = 64, 640  # the colour-wheel key at the top
GAP = 6  # white rows between bands
CAPTION_FONT = 0.42  # cv2 font scale of the captions


def pick_clips(root: Path, clip_ids: list[str] | None = None, worst: int | None = None) -> list[tuple[str, int]]:
    """(shard name, index) of the requested clips, or of the ``worst`` clips by QC."""
    manifest = Manifest.load(root)
    found: list[tuple[float, str, int, str]] = []
    for entry in manifest.shards:
        with ShardFile(root / entry.name) as shard:
            for i, cid in enumerate(shard.meta["clip_id"]):
                qc = {k: float(v[i]) for k, v in shard.qc.items()}
                found.append((_badness(qc), entry.name, i, str(cid)))
    if not found:
        raise FlowprepError(f"{root} holds no clips")
    if clip_ids:
        wanted = [(name, i) for _, name, i, cid in found if cid in set(clip_ids)]
        missing = set(clip_ids) - {cid for *_, cid in found}
        if missing:
            raise FlowprepError(f"clip(s) not in {root}: {', '.join(sorted(missing))}")
        return wanted
    found.sort(key=lambda x: -x[0])
    return [(name, i) for _, name, i, _ in found[: worst or 4]]


def _badness(qc: dict[str, float]) -> float:
    """Higher is worse: missed faces weigh most, then crop jitter, then saturated flow."""
    return (1 - qc.get("detection_rate", 1.0)) * 10 + qc.get("jitter_px", 0.0) + qc.get("flow_saturated", 0.0) * 1e-3


def contact_sheet(root: str | Path, clips: list[tuple[str, int]], columns: int = 10) -> np.ndarray:
    """RGB uint8 image: a key (the colour wheel and its scale in pixels), then per clip a caption,
    ``columns`` evenly spaced crops with their frame index, and the flow from each of those frames to
    the next with its pair index. Every flow tile shares one scale: the 99th percentile of the
    shown clips' flow magnitude is full saturation."""
    root = Path(root)
    samples = []
    for name, i in clips:
        with ShardFile(root / name) as shard:
            samples.append(shard.clip(i, ("gray", "flow")))
    magnitudes = [np.hypot(s["flow"][:, 0], s["flow"][:, 1]) for s in samples if len(s["flow"])]
    peak = max((float(np.percentile(m, 99)) for m in magnitudes), default=0.0) or 1.0
    tiles, captions = [], []
    for s in samples:
        gray, flow = s["gray"], s["flow"]
        size = gray.shape[-1]
        shown = len(flow) if len(flow) else len(gray)
        picks = np.linspace(0, shown - 1, num=min(columns, shown)).round().astype(int)
        top = np.concatenate([np.repeat(gray[k][..., None], 3, axis=2) for k in picks], axis=1)
        if len(flow):
            bottom = np.concatenate([flow_colours(flow[k], peak) for k in picks], axis=1)
        else:
            bottom = np.zeros_like(top)
        pairs = [f"flow {k}>{k + 1}" if len(flow) else "no flow" for k in picks]
        tiles.append(np.concatenate([top, _index_row([f"frame {k}" for k in picks], size), bottom,
                                     _index_row(pairs, size)]))
        captions.append(caption(s))
    key = _key(peak)
    # as wide as the widest of the key, the tiles and the captions (a caption is never cut off)
    width = max([key.shape[1]] + [t.shape[1] for t in tiles] + [text_width(c) + 8 for c in captions])
    bands = [key] + [np.concatenate([_text_row(c, t.shape[1], CAPTION_H), t]) for c, t in zip(captions, tiles)]
    bands = [np.pad(b, ((0, GAP), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in bands]
    sheet = np.concatenate(bands, axis=0)
    y = KEY_H + GAP
    for c, t in zip(captions, tiles):  # captions drawn across the whole width
        sheet[y:y + CAPTION_H] = _text_row(c, width, CAPTION_H)
        y += CAPTION_H + t.shape[0] + GAP
    return sheet


def flow_colours(flow: np.ndarray, peak: float) -> np.ndarray:
    """One flow field (2,H,W) in pixels -> RGB uint8 on a fixed scale: ``peak`` pixels is full
    saturation, longer vectors are clamped to it (flow_vis's own ``flow_to_color`` rescales every
    field by its own maximum, which would make a still frame look as lively as a fast one)."""
    u, v = flow[0] / peak, flow[1] / peak
    over = np.maximum(np.hypot(u, v), 1.0)
    return flow_vis.flow_uv_to_colors(u / over, v / over)


def colour_wheel(size: int) -> np.ndarray:
    """RGB uint8 (size, size): the flow colour of every vector inside the unit disc (x right, y
    down, as image flow), white outside it."""
    c = (np.arange(size) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(c, c)
    inside = np.hypot(u, v) <= 1
    wheel = flow_vis.flow_uv_to_colors(u * inside, v * inside)
    wheel[~inside] = 255
    return wheel


def _key(peak: float) -> np.ndarray:
    """The sheet's top band: the colour wheel, and in words what its radius is in pixels."""
    key = np.full((KEY_H, KEY_W, 3), 255, np.uint8)
    wheel = colour_wheel(KEY_H - 8)
    key[4:4 + wheel.shape[0], 4:4 + wheel.shape[1]] = wheel
    x = KEY_H + 4
    for j, line in enumerate((f"flow colour: a point of the wheel = a motion of that direction and length;",
                              f"the rim = {peak:.1f} px or more (99th percentile of the shown flow), white = still",
                              "tiles: evenly spaced frames; under each, its flow to the next frame")):
        cv2.putText(key, line, (x, 18 + 17 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return key


def caption(s: dict) -> str:
    qc = s["qc"]
    word = s["word"] if s["label"] >= 0 and s["word"] else ""
    text = f'"{s["text"]}"' if s.get("text") and s.get("text") != word else ""
    what = " ".join(w for w in (word, text) if w) or "unlabelled"  # GRID: its class and its sentence
    return (f"{s['clip_id']}  {what}  {len(s['gray'])} frames  det {qc.get('detection_rate', float('nan')):.2f}  "
            f"interp {qc.get('frames_interpolated', 0):.0f}  jitter {qc.get('jitter_px', float('nan')):.2f}px  "
            f"|flow| p99 {qc.get('flow_mag_p99', float('nan')):.1f}px")


def _text_row(text: str, width: int, height: int) -> np.ndarray:
    row = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(row, text, (4, height - 7), cv2.FONT_HERSHEY_SIMPLEX, CAPTION_FONT, (0, 0, 0), 1, cv2.LINE_AA)
    return row


def text_width(text: str) -> int:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, CAPTION_FONT, 1)[0][0]


def _index_row(labels: list[str], tile: int) -> np.ndarray:
    """A strip under a row of tiles with each tile's label (left-aligned under it)."""
    row = np.full((INDEX_H, tile * len(labels), 3), 255, np.uint8)
    for j, label in enumerate(labels):
        cv2.putText(row, label, (j * tile + 3, INDEX_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (60, 60, 60), 1,
                    cv2.LINE_AA)
    return row


# What cv2 can write an RGB sheet as (filtered by this OpenCV build's writers at import).
_CANDIDATE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".ppm", ".pnm")
IMAGE_SUFFIXES = tuple(s for s in _CANDIDATE_SUFFIXES if cv2.haveImageWriter("preview" + s))


def _check_request(out: Path, clip_ids: list[str] | None, worst: int | None, columns: int) -> None:
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise FlowprepError(f"--out {out}: cannot write {out.suffix or 'a file without a suffix'}; "
                            f"name an image file ending in {', '.join(IMAGE_SUFFIXES)}")
    if worst is not None and worst < 1:
        raise FlowprepError(f"--worst {worst}: must be 1 or more (the number of clips to show)")
    if columns < 1:
        raise FlowprepError(f"--columns {columns}: must be 1 or more (frames shown per clip)")
    if out.is_dir():
        raise FlowprepError(f"--out {out} is a folder: name an image file in it, e.g. {out / 'preview.png'}")
    existing = next(p for p in (out.parent.absolute(), *out.parent.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise FlowprepError(f"--out {out}: {existing} is a file, not a folder; choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FlowprepError(f"--out {out}: the folder {existing} is not writable; choose another --out")


def preview(root: str | Path, out: str | Path, clip_ids: list[str] | None = None, worst: int | None = None,
            columns: int = 10) -> Path:
    """Write the contact sheet of ``clip_ids`` (or of the ``worst`` clips by QC, 4 by default) to the
    image ``out``; its folder is created when missing."""
    root, out = Path(root), Path(out)
    _check_request(out, clip_ids, worst, columns)
    sheet = contact_sheet(root, pick_clips(root, clip_ids, worst), columns)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FlowprepError(f"--out {out}: cannot create its folder {out.parent} ({exc.strerror})") from None
    if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        why = "the folder is not writable" if not os.access(out.parent, os.W_OK) else "OpenCV refused the file"
        raise FlowprepError(f"could not write {out}: {why}; choose another --out")
    return out
