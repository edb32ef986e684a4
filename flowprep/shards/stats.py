"""`flowprep stats`: what a shard folder holds, and how good it is, in one table.

Besides counts and QC percentiles it shows what a newcomer checks first in their data: how long
the clips are per split (and which are far shorter than their split's median: cut videos, dropped
frames), and how balanced the classes are (the classes with the fewest and the most clips).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import FlowprepError
from .manifest import Manifest
from .reader import ShardFile

QC_SHOWN = ("detection_rate", "frames_interpolated", "jitter_px", "flow_mag_mean", "flow_mag_p99", "flow_saturated")
PERCENTILES = (1, 5, 50, 95, 99)
LENGTH_PERCENTILES = (5, 50)  # with min and max: the clip-length distribution per split
SHORT_SHARE = 0.5  # a clip shorter than this share of its split's median length is flagged
SHORT_LISTED = 20  # clip ids listed per split (the count is always complete)
CLASSES_LISTED = 5  # classes shown at each end of the per-class counts
UNLABELLED = "(unlabelled)"


def shard_stats(root: str | Path, allow_incomplete: bool = False) -> dict:
    """Counts per split and label, frames, QC distributions and bytes per clip of the folder ``root``.
    A folder whose build did not finish is refused unless ``allow_incomplete``: its figures would
    describe a part of the data as if it were all of it."""
    root = Path(root)
    manifest = Manifest.load(root)
    if not allow_incomplete:
        manifest.require_complete(root, "--allow-incomplete")
    labels: dict[str, Counter] = {}
    qc: dict[str, list[np.ndarray]] = {}
    lengths: dict[str, list[tuple[int, str]]] = {}
    for entry in manifest.shards:
        try:
            with ShardFile(root / entry.name) as shard:
                meta = shard.meta
                classes = [w if label >= 0 and w else UNLABELLED
                           for w, label in zip(meta["word"].tolist(), meta["label"].tolist())]
                labels.setdefault(entry.split, Counter()).update(classes)
                lengths.setdefault(entry.split, []).extend(zip(meta["length"].tolist(), meta["clip_id"].tolist()))
                for key, values in shard.qc.items():
                    qc.setdefault(key, []).append(values)
        except (FlowprepError, OSError, KeyError, ValueError) as exc:
            path = root / entry.name
            why = "No such file or directory" if not path.exists() else f"cannot be read ({exc})"
            raise FlowprepError(f"{path}: {why}; `flowprep verify --shards DIR` lists every problem of the folder, "
                                "and rerunning the build restores what is missing") from None
    totals = manifest.totals()
    dist = {}
    for key, parts in sorted(qc.items()):
        values = np.concatenate(parts)
        values = values[np.isfinite(values)]
        if values.size:
            dist[key] = {"mean": float(values.mean()),
                         **{f"p{p}": float(np.percentile(values, p)) for p in PERCENTILES}}
    return {
        "root": str(root),
        "complete": manifest.complete,
        "missing_clips": manifest.missing_clips,
        "totals": totals,
        "splits": manifest.splits(),
        "labels_per_split": {s: len(set(c) - {UNLABELLED}) for s, c in labels.items()},
        "clips_per_label": {s: dict(sorted(c.items())) for s, c in labels.items()},
        "bytes_per_clip": totals["bytes"] / totals["clips"] if totals["clips"] else 0.0,
        "failures_by_stage": dict(Counter(f.get("stage", "?") for f in manifest.failures)),
        # splits whose every clip failed have no lengths or classes to show
        "clip_frames": {s: _length_distribution(v) for s, v in sorted(lengths.items()) if v},
        "short_clips": {s: _short_clips(v) for s, v in sorted(lengths.items()) if v},
        "class_balance": {s: class_balance(c) for s, c in sorted(labels.items()) if c},
        "qc": dist,
        "flow_backend": manifest.flow_backend.get("name"),
    }


def _length_distribution(clips: list[tuple[int, str]]) -> dict:
    frames = np.array([n for n, _ in clips])
    return {"min": int(frames.min()), **{f"p{p}": float(np.percentile(frames, p)) for p in LENGTH_PERCENTILES},
            "max": int(frames.max()), "mean": float(frames.mean())}


def _short_clips(clips: list[tuple[int, str]]) -> dict:
    """Clips shorter than SHORT_SHARE x the split's median length, shortest first (ids capped)."""
    median = float(np.median([n for n, _ in clips]))
    below = sorted((n, cid) for n, cid in clips if n < SHORT_SHARE * median)
    return {"median": median, "threshold": SHORT_SHARE * median, "count": len(below),
            "clips": [{"clip_id": cid, "frames": n} for n, cid in below[:SHORT_LISTED]]}


def class_balance(counts: Counter) -> dict:
    """The classes with the fewest and the most clips (ties broken by name)."""
    fewest = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    most = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"classes": len(counts), "min": fewest[0][1], "max": most[0][1],
            "fewest": [list(kv) for kv in fewest[:CLASSES_LISTED]], "most": [list(kv) for kv in most[:CLASSES_LISTED]]}


def format_stats(stats: dict) -> str:
    t = stats["totals"]
    lines = [
        f"{stats['root']}: {t['clips']} clips, {t['frames']} frames, {t['shards']} shards, "
        f"{t['bytes'] / 2**20:.1f} MiB ({stats['bytes_per_clip'] / 1024:.0f} KiB/clip), {t['failed']} failed, "
        f"flow: {stats['flow_backend']}",
    ]
    if not stats.get("complete", True):
        lines.append(f"INCOMPLETE: {stats['missing_clips']} planned clips are missing (rerun the build to finish it)")
    lines += [
        "",
        f"{'split':<8}{'clips':>8}{'frames':>10}{'labels':>8}{'failed':>8}",
    ]
    for split, s in sorted(stats["splits"].items()):
        lines.append(f"{split:<8}{s['clips']:>8}{s['frames']:>10}{stats['labels_per_split'].get(split, 0):>8}"
                     f"{s['failed']:>8}")
    if stats["failures_by_stage"]:
        lines.append("failures by stage: " + ", ".join(f"{k} {v}" for k, v in stats["failures_by_stage"].items()))
    lines += _format_lengths(stats) + _format_classes(stats)
    lines += ["", f"{'qc':<22}{'mean':>9}" + "".join(f"{'p' + str(p):>9}" for p in PERCENTILES)]
    for key in QC_SHOWN:
        if key in stats["qc"]:
            d = stats["qc"][key]
            lines.append(f"{key:<22}{d['mean']:>9.3f}" + "".join(f"{d['p' + str(p)]:>9.3f}" for p in PERCENTILES))
    return "\n".join(lines)


def _format_lengths(stats: dict) -> list[str]:
    lines = ["", f"{'frames per clip':<16}{'min':>8}{'p5':>8}{'p50':>8}{'max':>8}{'mean':>8}"]
    for split, d in stats["clip_frames"].items():
        lines.append(f"{split:<16}{d['min']:>8}{d['p5']:>8.1f}{d['p50']:>8.1f}{d['max']:>8}{d['mean']:>8.1f}")
    for split, short in stats["short_clips"].items():
        if short["count"]:
            listed = ", ".join(f"{c['clip_id']} ({c['frames']})" for c in short["clips"])
            more = f", ... {short['count'] - len(short['clips'])} more" if short["count"] > len(short["clips"]) else ""
            lines.append(f"short clips in {split}: {short['count']} under {short['threshold']:g} frames "
                         f"(half the median {short['median']:g}): {listed}{more}")
    return lines


def _format_classes(stats: dict) -> list[str]:
    lines = [""]
    for split, b in stats["class_balance"].items():
        if b["classes"] == 1 and b["most"][0][0] == UNLABELLED:
            lines.append(f"clips per class in {split}: none, its {b['max']} clips are unlabelled")
            continue
        fewest = ", ".join(f"{name} {n}" for name, n in b["fewest"])
        most = ", ".join(f"{name} {n}" for name, n in b["most"])
        if b["classes"] <= CLASSES_LISTED:
            lines.append(f"clips per class in {split} ({b['classes']} classes): {most}")
        else:
            lines.append(f"clips per class in {split} ({b['classes']} classes, {b['min']}..{b['max']} each): "
                         f"fewest {fewest}; most {most}")
    return lines
