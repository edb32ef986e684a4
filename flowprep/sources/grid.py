"""GRID audio-visual corpus: speaker folders ``s1/ … s34/`` of ``bbaf2n.mpg``-style clips, or one flat
folder of such clips.

File names spell the sentence: command, colour, preposition, letter, digit, adverb
("bbaf2n" = "bin blue at f two now"). Optional ``.align`` files give word timings as lines
``start end word`` in units of 1/25000 s (1000 units = one 25 fps frame; 3 s clips end near
75000); "sil" and "sp" mark silence. They are looked for next to the video, in an ``align/``
folder beside it, or anywhere under the root with the same speaker and name.

A record's text is the spoken sentence: from the .align (silences dropped) when there is one, else
spelled out from the file name. With an .align the record also carries each word's timing and
the boundary (first to last spoken word); without, both are None. The label is the sentence's
command, its first word (bin, lay, place, set: classes in that fixed order, the same for every
tree), so `flowprep train` has a target on any GRID folder. GRID has no official split (train
unless a folder on the path is train/val/test). A video whose name does not spell a GRID
sentence is skipped with that reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .base import (VIDEO_SUFFIXES, ClipRecord, Layout, Scan, SkippedEntry, is_video_name, list_dir, skipped,
                   split_of, walk_files)

ALIGN_UNITS_PER_SECOND = 25000.0
SILENCE = frozenset({"sil", "sp"})
# The six slots of a GRID sentence, by the letter that stands for each word in a file name.
COMMANDS = {"b": "bin", "l": "lay", "p": "place", "s": "set"}
COLOURS = {"b": "blue", "g": "green", "r": "red", "w": "white"}
PREPOSITIONS = {"a": "at", "b": "by", "i": "in", "w": "with"}
DIGITS = dict(zip("0123456789", ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")))
DIGITS["z"] = "zero"  # the corpus spells zero as z in its names
ADVERBS = {"a": "again", "n": "now", "p": "please", "s": "soon"}
CLASSES = sorted(COMMANDS.values())  # a clip's label: its command's index here
_NAME = re.compile(r"^[blps][bgrw][abiw][a-vx-z][0-9z][anps]$")  # GRID's letters skip w
_SPEAKER = re.compile(r"^s\d+$")


def is_grid_name(filename: str) -> bool:
    stem, _ = os.path.splitext(filename)
    return is_video_name(filename) and _NAME.match(stem) is not None


def sentence_of(stem: str) -> str:
    """The sentence a GRID file name spells: "bbaf2n" -> "bin blue at f two now"."""
    c, colour, prep, letter, digit, adverb = stem
    return " ".join((COMMANDS[c], COLOURS[colour], PREPOSITIONS[prep], letter, DIGITS[digit], ADVERBS[adverb]))


def parse_align(text: str) -> tuple[str, tuple[float, float] | None]:
    """(sentence, (start_s, end_s) of the speech) from an .align file; ("", None) when unreadable."""
    words = align_words(text)
    if not words:
        return "", None
    return " ".join(w for w, _, _ in words), (words[0][1], words[-1][2])


def align_words(text: str) -> tuple[tuple[str, float, float], ...]:
    """(word, start_s, end_s) of each spoken word of an .align file, silences left out."""
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
    return tuple((w, a / ALIGN_UNITS_PER_SECOND, b / ALIGN_UNITS_PER_SECOND) for a, b, w in spoken)


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


def _read_align(path: str | None) -> tuple[tuple[str, float, float], ...]:
    if path is None:
        return ()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return align_words(f.read(65536))
    except OSError:
        return ()


class GridLayout(Layout):
    name = "grid"
    frames = 75  # 3 s at 25 fps
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
    def scan(cls, root: Path, only: frozenset[str] | None = None) -> Scan:
        videos: list[tuple[tuple[str, ...], os.DirEntry]] = []
        aligns: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        skips: list[SkippedEntry] = []
        for parts, entry in walk_files(root, VIDEO_SUFFIXES | {".align"}, skips):
            if entry.name.endswith(".align"):
                aligns.setdefault(entry.name[: -len(".align")], []).append((parts, entry.path))
            elif is_grid_name(entry.name):
                videos.append((parts, entry))
            elif not entry.name.startswith("."):
                skips.append(skipped(root, parts, entry.name, "the name does not spell a GRID sentence "
                                     "(six letters such as bbaf2n.mpg); rename it or build with --layout folder"))
        records = []
        for parts, entry in videos:
            stem = os.path.splitext(entry.name)[0]
            words = _read_align(_find_align(parts, stem, aligns))
            text = " ".join(w for w, _, _ in words) if words else sentence_of(stem)
            boundary = (words[0][1], words[-1][2]) if words else None
            first = text.split()[0].lower() if text else ""
            command = first if first in CLASSES else COMMANDS[stem[0]]  # the .align's word where it has one
            clip_id = "/".join(parts + (stem,))
            records.append(ClipRecord(clip_id, entry.path, split_of(parts), CLASSES.index(command), command,
                                      cls.name, boundary, text=text, word_times=words or None))
        return Scan(cls.name, records, skips, list(CLASSES))
