"""Any tree of video files (.mp4 .mpg .mpeg .avi .mov .mkv .webm): the fallback layout.

A clip's id is its path relative to the root without the suffix. A folder called train, val or
test on the way sets the split (train otherwise). The class is the nearest folder above the file
that is not a split folder; labels index the sorted class names, and files with no such folder
(right under the root or under a split folder only) get label -1 and word "".
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import (SPLITS, ClipRecord, Layout, Scan, SkippedEntry, is_video_name, list_dir, split_of,
                   walk_files)

# Detection looks at no more than this many entries before giving up on finding a video.
_PEEK_ENTRIES = 2000


def _class_of(parts: tuple[str, ...]) -> str:
    return next((p for p in reversed(parts) if p not in SPLITS), "")


class FolderLayout(Layout):
    name = "folder"
    expects = "any tree holding video files (.mp4 .mpg .mpeg .avi .mov .mkv .webm)"

    @classmethod
    def matches(cls, root: Path) -> bool:
        queue, looked = [str(root)], 0
        while queue and looked < _PEEK_ENTRIES:
            for entry in list_dir(queue.pop(0)):
                looked += 1
                if is_video_name(entry.name):
                    return True
                if entry.is_dir():
                    queue.append(entry.path)
        return False

    @classmethod
    def scan(cls, root: Path, only: frozenset[str] | None = None) -> Scan:
        skips: list[SkippedEntry] = []
        found = list(walk_files(root, skips=skips))
        classes = sorted({c for c in (_class_of(parts) for parts, _ in found) if c})
        index = {c: i for i, c in enumerate(classes)}
        records = []
        for parts, entry in found:
            stem = os.path.splitext(entry.name)[0]
            word = _class_of(parts)
            records.append(
                ClipRecord("/".join(parts + (stem,)), entry.path, split_of(parts), index.get(word, -1), word, cls.name)
            )
        skips = [SkippedEntry(s.path, s.clip_id, s.split, s.reason, _class_of(tuple(s.clip_id.split("/")[:-1])))
                 for s in skips]
        return Scan(cls.name, records, skips, classes)
