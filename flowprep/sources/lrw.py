"""LRW (Lip Reading in the Wild): ``lipread_mp4/WORD/{train,val,test}/WORD_NNNNN.mp4`` + ``.txt``.

Each clip is 29 frames at 25 fps (1.16 s) with the word centred in it; the .txt next to the
video gives the word's length ("Duration: 0.53 seconds"), so the word spans
``((1.16 - d) / 2, (1.16 + d) / 2)`` seconds. Labels are indices into the sorted word folders
found under the root, so a partial copy of LRW numbers its words differently from the full set
(build a subset of the full tree with ``--words`` instead: labels then index every word of the tree).
A video in a split folder that is not a readable .mp4 is skipped with its reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .base import SPLITS, VIDEO_SUFFIXES, ClipRecord, Layout, Scan, SkippedEntry, list_dir, unusable

CLIP_SECONDS = 29 / 25
_WORD = re.compile(r"^[A-Z][A-Z0-9'_-]*$")
_DURATION = re.compile(r"Duration:\s*([0-9]*\.?[0-9]+)\s*sec", re.IGNORECASE)


def _words_root(root: Path) -> Path:
    """The folder holding the word folders: ``root`` itself or its ``lipread_mp4`` child."""
    inner = root / "lipread_mp4"
    return inner if inner.is_dir() else root


def _word_dirs(root: Path) -> list[os.DirEntry]:
    return sorted((e for e in list_dir(root) if _WORD.match(e.name) and e.is_dir()), key=lambda e: e.name)


def parse_boundary(text: str) -> tuple[float, float] | None:
    """Centred (start_s, end_s) of the word from an LRW .txt, None when the line is missing or absurd."""
    match = _DURATION.search(text)
    if match is None:
        return None
    duration = float(match.group(1))
    if not 0 < duration < 10 * CLIP_SECONDS:  # garbled
        return None
    duration = min(duration, CLIP_SECONDS)
    start = (CLIP_SECONDS - duration) / 2
    return (round(start, 6), round(start + duration, 6))


def _read_boundary(txt_path: str) -> tuple[float, float] | None:
    try:  # os.open/os.read: a third of the cost of open() on a 100-byte file, times 539k files
        fd = os.open(txt_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return parse_boundary(os.read(fd, 4096).decode("utf-8", errors="replace"))
    except OSError:
        return None
    finally:
        os.close(fd)


def _scan_split(word: str, label: int, split: str, folder: str,
                skips: list[SkippedEntry]) -> list[ClipRecord]:
    """The clips of one WORD/split folder, boundaries read from the .txt files listed beside them."""
    entries = list_dir(folder)
    names = {e.name for e in entries}
    records = []
    for e in entries:
        stem, suffix = os.path.splitext(e.name)
        if suffix.lower() not in VIDEO_SUFFIXES:
            continue
        reason = unusable(e.path) if suffix == ".mp4" else f"LRW clips are .mp4 files, not {suffix}"
        if reason is not None:
            skips.append(SkippedEntry(e.path, f"{word}/{split}/{e.name}", split, reason, word))
            continue
        txt = stem + ".txt"
        boundary = _read_boundary(os.path.join(folder, txt)) if txt in names else None
        records.append(ClipRecord(f"{word}/{split}/{stem}", e.path, split, label, word, LrwLayout.name, boundary))
    return records


class LrwLayout(Layout):
    name = "lrw"
    frames = 29
    expects = "WORD/{train,val,test}/WORD_NNNNN.mp4 (+ .txt), UPPERCASE word folders, here or in lipread_mp4/"

    @classmethod
    def matches(cls, root: Path) -> bool:
        # A few word folders suffice: one holding WORD/<split>/WORD_*.mp4 makes the tree LRW.
        for word in _word_dirs(_words_root(root))[:3]:
            for split in SPLITS:
                entries = list_dir(os.path.join(word.path, split))
                if any(e.name.startswith(word.name + "_") and e.name.endswith(".mp4") for e in entries):
                    return True
        return False

    @classmethod
    def scan(cls, root: Path, only: frozenset[str] | None = None) -> Scan:
        records: list[ClipRecord] = []
        skips: list[SkippedEntry] = []
        words = _word_dirs(_words_root(root))
        for label, word in enumerate(words):  # labels count every word folder, read or not
            if only is not None and word.name not in only:
                continue  # --words: 2 of 500 words need not list 539k files
            for split in SPLITS:
                records += _scan_split(word.name, label, split, os.path.join(word.path, split), skips)
        return Scan(cls.name, records, skips, [w.name for w in words])
