"""Sources: turn a directory into clip records, one module per dataset layout.

    records = discover("lipread_mp4/")          # layout detected: lrw, lrs, grid or folder
    records = discover("videos/", layout="folder")
    found = scan("lipread_mp4/", words=["ABOUT", "WORLD"], splits=["train"])  # records + skipped entries

Records come sorted by (split, clip_id), so the same tree always gives the same list. `scan` also
returns every entry named like a video that no record stands for (a broken link, a FIFO, an empty
file, a name the layout cannot read), each with its reason, and the tree's full class list.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from ..errors import FlowprepError
from .base import SPLITS, VIDEO_SUFFIXES, ClipRecord, Layout, Scan, SkippedEntry, check_root
from .folder import FolderLayout
from .grid import GridLayout
from .lrs import LrsLayout
from .lrw import LrwLayout

# In detection order: the most specific layout first, the catch-all folder last.
LAYOUTS: dict[str, type[Layout]] = {cls.name: cls for cls in (LrwLayout, LrsLayout, GridLayout, FolderLayout)}


def detect_layout(src_dir: str | Path) -> str:
    """The name of the first layout in LAYOUTS whose tree ``src_dir`` looks like."""
    root = check_root(src_dir)
    for name, layout in LAYOUTS.items():
        if layout.matches(root):
            return name
    expected = "\n".join(f"  {name}: {layout.expects}" for name, layout in LAYOUTS.items())
    raise FlowprepError(f"no known layout recognised in {root}; expected one of:\n{expected}")


def discover(src_dir: str | Path, layout: str = "auto") -> list[ClipRecord]:
    """Every clip under ``src_dir`` as records sorted by (split, clip_id)."""
    return scan(src_dir, layout).records


def scan(
    src_dir: str | Path,
    layout: str = "auto",
    words: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
) -> Scan:
    """The clips under ``src_dir`` (sorted by split, clip_id), the entries skipped (sorted by path)
    and the tree's classes. ``words`` and ``splits`` keep only those classes and splits; labels
    still index every class of the tree, so a partial build stays compatible with a full one."""
    if layout != "auto" and layout not in LAYOUTS:
        raise FlowprepError(f"unknown layout {layout!r}; choose one of: auto, {', '.join(LAYOUTS)}")
    root = check_root(src_dir)
    name = detect_layout(root) if layout == "auto" else layout
    words = list(words) if words is not None else None
    found = LAYOUTS[name].scan(root, frozenset(words) if words is not None else None)
    records, skips = found.records, found.skipped
    if words is not None:
        wanted = list(dict.fromkeys(words))
        unknown = [w for w in wanted if w not in found.classes]
        if unknown:
            known = ", ".join(found.classes[:8]) + (", ..." if len(found.classes) > 8 else "")
            raise FlowprepError(f"--words: {', '.join(unknown[:5])} not among the {len(found.classes)} classes of "
                                f"{root} ({known or 'it has none'}); check the spelling (case matters)")
        keep = set(wanted)
        records = [r for r in records if r.word in keep]
        skips = [s for s in skips if s.word in keep]
    if splits is not None:
        keep = set(splits)
        records = [r for r in records if r.split in keep]
        skips = [s for s in skips if s.split in keep]
    if not records:
        chosen = (" of the chosen words/splits" if words is not None or splits is not None else "")
        extra = f" ({len(skips)} entries skipped, e.g. {skips[0].clip_id}: {skips[0].reason})" if skips else ""
        raise FlowprepError(f"no {name} clips{chosen} found under {root}{extra}; expected {LAYOUTS[name].expects}")
    clashes = [cid for cid, n in Counter(r.clip_id for r in records).items() if n > 1]
    if clashes:
        paths = sorted(r.path for r in records if r.clip_id == clashes[0])
        raise FlowprepError(
            f"{len(clashes)} clip id(s) name more than one video, e.g. {clashes[0]!r}: {', '.join(paths)}; "
            "keep one video per name (same name, other suffix?)"
        )
    records = sorted(records, key=lambda r: (r.split, r.clip_id))
    return dataclasses.replace(found, records=records, skipped=sorted(skips, key=lambda s: s.path))


def expected_frames(source: str) -> int | None:
    """Frames every whole clip of the layout named ``source`` holds, None when clips vary."""
    layout = LAYOUTS.get(source)
    return layout.frames if layout is not None else None


__all__ = ["ClipRecord", "LAYOUTS", "Layout", "SPLITS", "Scan", "SkippedEntry", "VIDEO_SUFFIXES", "detect_layout",
           "discover", "expected_frames", "scan"]
