"""GRID audio-visual corpus: speaker folders ``s1/ … s34/`` of ``bbaf2n.mpg``-style clips, or one flat
folder of such clips.

File names spell the sentence: command, colour, preposition, letter, digit, adverb
("bbaf2n" = "bin blue at f two now"). Optional ``.align`` files give word timings as lines
``start end word`` in units of 1/25000 s (1000 units = one 25 fps frame; 3 s clips end near
75000); "sil" and "sp" mark silence. They are looked for next to the video, in an ``align/``
folder beside it, or anywhere under the root with the same speaker and name.

A record's word is the spoken sentence from the .align (silences dropped), its boundary the
span from the first to the last spoken word; both are empty/None without an .align. GRID has no
word classes (label -1) and no official split (train unless a folder on the path is train/val/test).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .base import VIDEO_SUFFIXES, ClipRecord, Layout, is_video_name, list_dir, split_of, walk_files

ALIGN_UNITS_PER_SECOND = 25000.0
SILENCE = frozenset({"sil", "sp"})
_NAME = re.compile(r"^[blps][bgrw][abiw][a-z][0-9z][anps]$")
_SPEAKER = re.compile(r"^s\d+$")


def is_grid_name(filename: str) -> bool:
    stem, _ = os.path.splitext(filename)
    return is_video_name(filename) and _NAME.match(stem) is not None


def parse_align(text: str) -> tuple[str, tuple[float, float] | None]:
    """(sentence, (start_s, end_s) of the speech) from an .align file; ("", None) when unreadable."""
    spoken: list[tuple[float, float, str]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3:
            continue
        try:
            start, end = float(fields[0]), float(fields[1])
        except ValueError:
            continue
        if fields[2].lower() not in SILENCE and end >= start:
            spoken.append((start, end, fields[2]))
    if not spoken:
        return "", None
    sentence = " ".join(w for _, _, w in spoken)
    return sentence, (spoken[0][0] / ALIGN_UNITS_PER_SECOND, spoken[-1][1] / ALIGN_UNITS_PER_SECOND)


def _speaker(parts: tuple[str, ...]) -> str | None:
    return next((p for p in parts if _SPEAKER.match(p)), None)


def _find_align(parts: tuple[str, ...], stem: str, aligns: dict[str, list[tuple[tuple[str, ...], str]]]) -> str | None:
    """The .align of the video at parts/stem: same folder, then its align/ subfolder, then same speaker,
    then the only file of that name."""
    candidates = aligns.get(stem, [])
    for where in (parts, parts + ("align",)):
        for apart, path in candidates:
            if apart == where:
                return path
    speaker = _speaker(parts)
    if speaker is not None:
        same = [path for apart, path in candidates if _speaker(apart) == speaker]
        if len(same) == 1:
            return same[0]
    return candidates[0][1] if len(candidates) == 1 else None


def _read_align(path: str | None) -> tuple[str, tuple[float, float] | None]:
    if path is None:
        return "", None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_align(f.read(65536))
    except OSError:
        return "", None


class GridLayout(Layout):
    name = "grid"
    expects = "s<N>/<name>.mpg speaker folders or one flat folder of GRID-named clips (bbaf2n.mpg), .align optional"

    @classmethod
    def matches(cls, root: Path) -> bool:
        entries = list_dir(root)
        videos = [e.name for e in entries if is_video_name(e.name)]
        if videos:  # a flat folder: every video must carry a GRID name
            return all(is_grid_name(n) for n in videos)
        speakers = sorted(e.path for e in entries if _SPEAKER.match(e.name) and e.is_dir())
        if not speakers:
            return False
        inside = list_dir(speakers[0])
        if any(is_grid_name(e.name) for e in inside):
            return True
        # some copies nest one more folder (s1/video/…)
        return any(any(is_grid_name(x.name) for x in list_dir(e.path)) for e in inside if e.is_dir())

    @classmethod
    def scan(cls, root: Path) -> list[ClipRecord]:
        videos: list[tuple[tuple[str, ...], os.DirEntry]] = []
        aligns: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for parts, entry in walk_files(root, VIDEO_SUFFIXES | {".align"}):
            if entry.name.endswith(".align"):
                aligns.setdefault(entry.name[: -len(".align")], []).append((parts, entry.path))
            elif is_grid_name(entry.name):
                videos.append((parts, entry))
        records = []
        for parts, entry in videos:
            stem = os.path.splitext(entry.name)[0]
            sentence, boundary = _read_align(_find_align(parts, stem, aligns))
            clip_id = "/".join(parts + (stem,))
            records.append(ClipRecord(clip_id, entry.path, split_of(parts), -1, sentence, cls.name, boundary))
        return records
