"""`flowprep preview`: a contact sheet a person can judge at a glance.

One band per clip: the mouth crops over time, the flow under them colour-coded with the standard
Middlebury colour wheel (hue = direction, saturation = magnitude, one shared scale per sheet),
and a caption with the clip id, its word and its QC numbers.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import flow_vis
import numpy as np

from .dataset.reader import ShardFile
from .errors import FlowprepError
from .shards.manifest import Manifest

CAPTION_H = 22


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
    """RGB uint8 image: per clip, ``columns`` evenly spaced crops over their flow."""
    root = Path(root)
    bands = []
    samples = []
    for name, i in clips:
        with ShardFile(root / name) as shard:
            samples.append(shard.clip(i, ("gray", "flow")))
    peak = max(float(np.percentile(np.hypot(s["flow"][:, 0], s["flow"][:, 1]), 99)) for s in samples if len(s["flow"]))
    for s in samples:
        gray, flow = s["gray"], s["flow"]
        picks = np.linspace(0, len(flow) - 1, num=min(columns, len(flow))).round().astype(int) if len(flow) else [0]
        top = np.concatenate([np.repeat(gray[k][..., None], 3, axis=2) for k in picks], axis=1)
        if len(flow):
            colour = [flow_vis.flow_to_color(flow[k].transpose(1, 2, 0) / max(peak, 1e-6)) for k in picks]
            bottom = np.concatenate(colour, axis=1)
        else:
            bottom = np.zeros_like(top)
        caption = np.full((CAPTION_H, top.shape[1], 3), 255, np.uint8)
        qc = s["qc"]
        text = (f"{s['clip_id']}  '{s['word']}'  det {qc.get('detection_rate', float('nan')):.2f}  "
                f"interp {qc.get('frames_interpolated', 0):.0f}  jitter {qc.get('jitter_px', float('nan')):.2f}px  "
                f"|flow| p99 {qc.get('flow_mag_p99', float('nan')):.1f}px")
        cv2.putText(caption, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        bands.append(np.concatenate([caption, top, bottom], axis=0))
    width = max(b.shape[1] for b in bands)
    bands = [np.pad(b, ((0, 6), (0, width - b.shape[1]), (0, 0)), constant_values=255) for b in bands]
    legend = np.full((CAPTION_H, width, 3), 255, np.uint8)
    cv2.putText(legend, f"flow colour: direction = hue, full saturation = {peak:.1f} px (99th percentile)",
                (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([legend] + bands, axis=0)


def preview(root: str | Path, out: str | Path, clip_ids: list[str] | None = None, worst: int | None = None,
            columns: int = 10) -> Path:
    root, out = Path(root), Path(out)
    sheet = contact_sheet(root, pick_clips(root, clip_ids, worst), columns)
    if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise FlowprepError(f"could not write {out}")
    return out
