"""`flowprep stats`: what a shard folder holds, and how good it is, in one table."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import FlowprepError
from .manifest import Manifest

QC_SHOWN = ("detection_rate", "frames_interpolated", "jitter_px", "flow_mag_mean", "flow_mag_p99", "flow_saturated")
PERCENTILES = (1, 5, 50, 95, 99)


def shard_stats(root: str | Path, allow_incomplete: bool = False) -> dict:
    """Counts per split and label, frames, QC distributions and bytes per clip of the folder ``root``.
    A folder whose build did not finish is refused unless ``allow_incomplete``: its figures would
    describe a part of the data as if it were all of it."""
    import h5py
    import hdf5plugin  # noqa: F401

    root = Path(root)
    manifest = Manifest.load(root)
    if not allow_incomplete:
        manifest.require_complete(root, "--allow-incomplete")
    labels: dict[str, Counter] = {}
    qc: dict[str, list[np.ndarray]] = {}
    for entry in manifest.shards:
        try:
            with h5py.File(root / entry.name, "r") as f:
                words = f["word"].asstr()[()]
                labels.setdefault(entry.split, Counter()).update(words.tolist())
                for key, ds in f["qc"].items():
                    qc.setdefault(key, []).append(ds[()])
        except (OSError, KeyError, ValueError) as exc:
            raise FlowprepError(f"cannot read shard {root / entry.name} ({exc}); run `flowprep verify {root}` "
                                "to see what is wrong, then rerun the build") from None
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
        "labels_per_split": {s: len(c) for s, c in labels.items()},
        "clips_per_label": {s: dict(sorted(c.items())) for s, c in labels.items()},
        "bytes_per_clip": totals["bytes"] / totals["clips"] if totals["clips"] else 0.0,
        "failures_by_stage": dict(Counter(f.get("stage", "?") for f in manifest.failures)),
        "qc": dist,
        "flow_backend": manifest.flow_backend.get("name"),
    }


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
    lines += ["", f"{'qc':<22}{'mean':>9}" + "".join(f"{'p' + str(p):>9}" for p in PERCENTILES)]
    for key in QC_SHOWN:
        if key in stats["qc"]:
            d = stats["qc"][key]
            lines.append(f"{key:<22}{d['mean']:>9.3f}" + "".join(f"{d['p' + str(p)]:>9.3f}" for p in PERCENTILES))
    return "\n".join(lines)
