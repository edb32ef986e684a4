"""What every layout shares: the clip record, the layout base class and a fast directory walker.

A layout turns a directory into clip records. Detection (`matches`) must stay cheap because it
runs before anything else on trees of half a million files; scanning (`scan`) lists directories
with os.scandir and stats each video once (os.stat, never open: a FIFO named like a video would
block a reader forever). Every entry named like a video that cannot be planned (a dangling or
looping link, a FIFO or other non-file, an unreadable or empty file, a name the layout cannot read)
becomes a SkippedEntry with its reason, so nothing a user gave disappears without a line.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..config import SPLIT_NAMES
from ..errors import FlowprepError

VIDEO_SUFFIXES = frozenset({".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm"})
SPLITS = SPLIT_NAMES  # one list, kept with the build options that name splits


@dataclass(frozen=True)
class ClipRecord:
    """One video to process and what is known about it before decoding."""

    clip_id: str  # unique, stable, path-like ("ABOUT/train/ABOUT_00001", "s1/bbaf2n")
    path: str  # absolute path of the video
    split: str  # "train" | "val" | "test"
    label: int  # class index, -1 when the layout has no classes
    word: str  # the class name (LRW word, folder name, GRID command), "" when unknown
    source: str  # layout name: "lrw" | "grid" | "folder"
    boundary: tuple[float, float] | None = None  # (start_s, end_s) of the speech in the clip
    text: str = ""  # what is said in the clip (GRID: the sentence), "" when unknown
    # (word, start_s, end_s) of each spoken word (GRID with .align files), None when unknown
    word_times: tuple[tuple[str, float, float], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["boundary"] = list(self.boundary) if self.boundary is not None else None
        d["word_times"] = [list(w) for w in self.word_times] if self.word_times is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ClipRecord":
        b = d.get("boundary")
        return cls(
            clip_id=str(d["clip_id"]),
            path=str(d["path"]),
            split=str(d["split"]),
            label=int(d["label"]),
            word=str(d["word"]),
            source=str(d["source"]),
            boundary=(float(b[0]), float(b[1])) if b is not None else None,
            text=str(d.get("text", "")),
            word_times=tuple((str(w), float(a), float(z)) for w, a, z in d["word_times"])
            if d.get("word_times") is not None else None,
        )


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of the source tree named like a video that no clip record stands for, and why."""

    path: str  # absolute path of the entry
    clip_id: str  # its path relative to the source folder (suffix kept: it names the entry)
    split: str
    reason: str
    word: str = ""  # the class folder it sits in, where the layout has one ("" otherwise)

    def to_failure(self) -> dict[str, Any]:
        """A failures.jsonl record, shaped like a clip failure's, at stage "discover"."""
        return {"clip_id": self.clip_id, "path": self.path, "split": self.split, "stage": "discover",
                "reason": self.reason}


def skipped(root: Path, parts: tuple[str, ...], name: str, reason: str, word: str = "") -> SkippedEntry:
    """A SkippedEntry for the entry ``name`` in folder ``root/parts``."""
    return SkippedEntry(os.path.join(root, *parts, name), "/".join(parts + (name,)), split_of(parts), reason, word)


def unusable(path: str) -> str | None:
    """Why the video entry at ``path`` cannot be read as a clip, None when it is a readable,
    non-empty regular file. Stats it (following links) and never opens it."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop: the link points back at itself"
        if exc.errno == errno.ENOENT and os.path.islink(path):
            return f"dangling symbolic link to {os.readlink(path)!r}: its target does not exist"
        return f"cannot read it: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file")
        return f"{kind}, not a video file: left unopened"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    if not os.access(path, os.R_OK):
        return "permission denied: the file cannot be read"
    return None


class Layout:
    """One dataset layout. Subclasses set `name` and `expects` and implement both classmethods."""

    name: ClassVar[str]
    expects: ClassVar[str]  # the tree this layout reads, in one line, for error messages

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` looks like this layout, from a handful of directory entries."""
        raise NotImplementedError

    # Frames every clip of the layout holds when whole (None: clips vary); fewer is a decode failure.
    frames: ClassVar[int | None] = None

    @classmethod
    def scan(cls, root: Path, only: frozenset[str] | None = None) -> "Scan":
        """Every clip under ``root`` and every video-named entry it cannot plan, in any order.
        ``only`` names the classes wanted: a layout may skip reading the others (the caller filters
        anyway), but its ``classes`` stay the whole tree's."""
        raise NotImplementedError


@dataclass
class Scan:
    """What a layout found under a source folder."""

    layout: str
    records: list[ClipRecord]  # the clips to build
    skipped: list[SkippedEntry]  # entries named like videos that no record stands for, with the reason
    classes: list[str]  # the class name of each label, in label order, over the whole tree


def is_video_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def split_of(parts: tuple[str, ...]) -> str:
    """The split named by the first folder called train/val/test on the way to a file, else train."""
    for part in parts:
        if part in SPLITS:
            return part
    return "train"


def list_dir(path: str | Path) -> list[os.DirEntry]:
    """Entries of one folder, hidden ones (".DS_Store", "._x.mp4") left out; [] if it is not a folder."""
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError as exc:  # skipping it would silently drop clips
        raise FlowprepError(f"cannot read folder {path}: permission denied") from exc


def walk_files(
    root: Path, suffixes: frozenset[str] = VIDEO_SUFFIXES, skips: list[SkippedEntry] | None = None
) -> Iterator[tuple[tuple[str, ...], os.DirEntry]]:
    """(folders from root to the file, entry) for every file under root whose suffix is in
    ``suffixes`` (lower case), in no fixed order. Entries named like videos that are not usable
    files (see `unusable`) go to ``skips`` instead, when given.

    Symlinked folders are followed, except into a folder that is already on the way down (a cycle).
    """
    stack: list[tuple[str, tuple[str, ...], frozenset[tuple[int, int]]]] = [(str(root), (), frozenset())]
    while stack:
        folder, parts, above = stack.pop()
        try:
            st = os.stat(folder)
        except OSError:
            continue
        here = (st.st_dev, st.st_ino)
        if here in above:
            continue
        below = above | {here}
        for entry in list_dir(folder):
            try:
                is_dir = entry.is_dir()
            except OSError:  # a link loop: not a folder; judged below by its name
                is_dir = False
            if is_dir:
                stack.append((entry.path, parts + (entry.name,), below))
                continue
            suffix = os.path.splitext(entry.name)[1].lower()
            if suffix not in suffixes:
                continue
            if suffix in VIDEO_SUFFIXES:
                reason = unusable(entry.path)
                if reason is not None:
                    if skips is not None:
                        skips.append(skipped(root, parts, entry.name, reason))
                    continue
            elif not _is_file(entry):
                continue
            yield parts, entry


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def check_root(src: str | Path) -> Path:
    """The source folder as an absolute path; a clear error when it is missing or empty."""
    root = Path(src).expanduser()
    if not root.exists():
        raise FlowprepError(f"source folder {root} does not exist: check the --src path")
    if not root.is_dir():
        raise FlowprepError(f"source {root} is not a folder: --src takes the folder that holds the videos")
    if not list_dir(root):
        raise FlowprepError(f"source folder {root} is empty")
    return Path(os.path.abspath(root))
