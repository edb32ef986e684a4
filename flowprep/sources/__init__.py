"""Sources: turn a directory into clip records, one module per dataset layout.

    records = discover("lipread_mp4/")          # layout detected: lrw, grid or folder
    records = discover("videos/", layout="folder")

Records come sorted by (split, clip_id), so the same tree always gives the same list.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..errors import FlowprepError
from .base import VIDEO_SUFFIXES, ClipRecord, Layout, check_root
from .folder import FolderLayout
from .grid import GridLayout
from .lrw import LrwLayout

# In detection order: the most specific layout first, the catch-all folder last.
LAYOUTS: dict[str, type[Layout]] = {cls.name: cls for cls in (LrwLayout, GridLayout, FolderLayout)}


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
    if layout != "auto" and layout not in LAYOUTS:
        raise FlowprepError(f"unknown layout {layout!r}; choose one of: auto, {', '.join(LAYOUTS)}")
    root = check_root(src_dir)
    name = detect_layout(root) if layout == "auto" else layout
    records = LAYOUTS[name].scan(root)
    if not records:
        raise FlowprepError(f"no {name} clips found under {root}; expected {LAYOUTS[name].expects}")
    clashes = [cid for cid, n in Counter(r.clip_id for r in records).items() if n > 1]
    if clashes:
        paths = sorted(r.path for r in records if r.clip_id == clashes[0])
        raise FlowprepError(
            f"{len(clashes)} clip id(s) name more than one video, e.g. {clashes[0]!r}: {', '.join(paths)}; "
            "keep one video per name (same name, other suffix?)"
        )
    return sorted(records, key=lambda r: (r.split, r.clip_id))


__all__ = ["ClipRecord", "LAYOUTS", "Layout", "VIDEO_SUFFIXES", "detect_layout", "discover"]
