"""LRS2 and LRS3 (Lip Reading Sentences): sentence-level clips with their transcripts.

LRS3 is ``{pretrain,trainval,test}/SPEAKER/NNNNN.mp4``; LRS2 is ``main/ID/NNNNN.mp4`` and
``pretrain/ID/NNNNN.mp4`` (often inside ``mvlrs_v1/``), with split lists ``train.txt``, ``val.txt``,
``test.txt`` (and ``pretrain.txt``) whose lines start with ``ID/NNNNN``. Next to every video a
``NNNNN.txt`` holds ``Text:  THE WORDS``, then ``Conf:`` (and ``Ref:``) lines, and in the pretrain
sets a table of word timings ``WORD START END ASDSCORE`` (seconds from the clip's start).

These corpora exist for sentence-level models: a record carries the transcript (``text``) and,
where the file has the table, each word's timing (``word_times``; the boundary then runs from the
first word's start to the last word's end). There are no classes (label -1, word ""): the
word-level trainer refuses such folders and sentence models read them through ShardDataset. The
split is the corpus's own: LRS3's folder name (pretrain, trainval, test); LRS2's list that names
the clip (train, val, test, pretrain), else its folder (main, pretrain). Clips vary in length.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .base import VIDEO_SUFFIXES, ClipRecord, Layout, Scan, SkippedEntry, list_dir, skipped, walk_files

LRS3_SETS = ("pretrain", "trainval", "test")
LRS2_SETS = ("main", "pretrain")
LRS2_LISTS = {"train.txt": "train", "val.txt": "val", "test.txt": "test", "pretrain.txt": "pretrain"}
LRS2_INNER = "mvlrs_v1"  # the folder LRS2's archive unpacks to
_TEXT = re.compile(r"^Text:\s*(.*?)\s*$", re.MULTILINE)
_TXT_BYTES = 1 << 20  # a pretrain transcript of a few minutes is tens of kilobytes


def parse_transcript(text: str) -> tuple[str, tuple[tuple[str, float, float], ...] | None]:
    """(sentence, word timings or None) from an LRS2/LRS3 .txt file; ("", None) without a Text line."""
    match = _TEXT.search(text)
    sentence = match.group(1) if match else ""
    words: list[tuple[str, float, float]] = []
    in_table = False
    for line in text.splitlines():
        fields = line.split()
        if fields[:3] == ["WORD", "START", "END"]:
            in_table = True
            continue
        if not in_table or len(fields) < 3:
            continue
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            continue
        if end >= start >= 0:
            words.append((fields[0], start, end))
    return sentence, tuple(words) or None


def read_transcript(path: str) -> tuple[str, tuple[tuple[str, float, float], ...] | None]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return parse_transcript(fh.read(_TXT_BYTES))
    except OSError:
        return "", None


def _corpus_root(root: Path) -> tuple[Path, str | None]:
    """(folder holding the sets, "lrs3" | "lrs2" | None) for ``root`` or its ``mvlrs_v1`` child.
    Lists ``root`` once (and that child only when it is there): detection must stay cheap."""
    names = {e.name for e in list_dir(root) if e.is_dir()}
    base = root
    if LRS2_INNER in names:
        base = root / LRS2_INNER
        names = {e.name for e in list_dir(base) if e.is_dir()}
    if "trainval" in names or ("test" in names and "main" not in names):
        return base, "lrs3"
    if "main" in names or "pretrain" in names:
        return base, "lrs2"
    return root, None


def _has_clip(folder: str) -> bool:
    """Whether one of the first few ID/SPEAKER folders of a set holds an NNNNN.mp4 with its .txt."""
    for sub in sorted((e for e in list_dir(folder) if e.is_dir()), key=lambda e: e.name)[:3]:
        names = {e.name for e in list_dir(sub.path)}
        if any(n.endswith(".mp4") and n[:-4].isdigit() and n[:-4] + ".txt" in names for n in names):
            return True
    return False


def _lrs2_lists(root: Path, base: Path) -> dict[str, str]:
    """``ID/NNNNN`` -> split, from whichever LRS2 split lists sit in ``base`` or ``root``."""
    split_of: dict[str, str] = {}
    for name, split in LRS2_LISTS.items():
        for folder in dict.fromkeys((base, root)):
            path = folder / name
            if not path.is_file():
                continue
            with open(path, encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    fields = line.split()
                    if fields:
                        split_of.setdefault(fields[0].removesuffix(".mp4"), split)
            break
    return split_of


class LrsLayout(Layout):
    name = "lrs"
    expects = ("LRS3 {pretrain,trainval,test}/SPEAKER/NNNNN.mp4 + .txt, or LRS2 [mvlrs_v1/]{main,pretrain}/"
               "ID/NNNNN.mp4 + .txt (split lists train.txt, val.txt, test.txt optional)")

    @classmethod
    def matches(cls, root: Path) -> bool:
        base, kind = _corpus_root(root)
        if kind is None:
            return False
        sets = LRS3_SETS if kind == "lrs3" else LRS2_SETS
        return any(_has_clip(str(base / s)) for s in sets if (base / s).is_dir())

    @classmethod
    def scan(cls, root: Path, only: frozenset[str] | None = None) -> Scan:
        base, kind = _corpus_root(root)
        sets = LRS3_SETS if kind == "lrs3" else LRS2_SETS
        lists = _lrs2_lists(root, base) if kind == "lrs2" else {}
        prefix = base.relative_to(root).parts
        skips: list[SkippedEntry] = []
        records = []
        for parts, entry in walk_files(root, VIDEO_SUFFIXES, skips):
            inner = parts[len(prefix):] if parts[:len(prefix)] == prefix else ()
            stem, suffix = os.path.splitext(entry.name)
            if len(inner) != 2 or inner[0] not in sets:
                where = " or ".join(f"{s}/ID/NAME.mp4" for s in sets)
                skips.append(skipped(root, parts, entry.name, f"not where {kind or 'LRS'} keeps clips ({where} "
                                     f"under {base}); move it there or build with --layout folder"))
                continue
            if suffix != ".mp4":
                skips.append(skipped(root, parts, entry.name, f"LRS clips are .mp4 files, not {suffix}"))
                continue
            text, words = read_transcript(os.path.join(os.path.dirname(entry.path), stem + ".txt"))
            split = lists.get(f"{inner[1]}/{stem}", inner[0]) if kind == "lrs2" else inner[0]
            boundary = (words[0][1], words[-1][2]) if words else None
            clip_id = "/".join(parts + (stem,))  # the video's path under --src, without its suffix
            records.append(ClipRecord(clip_id, entry.path, split, -1, "", cls.name, boundary, text=text,
                                      word_times=words))
        return Scan(cls.name, records, skips, [])


__all__ = ["LrsLayout", "parse_transcript", "read_transcript"]
