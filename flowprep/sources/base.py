"""What every layout shares: the clip record, the layout base class and a fast directory walker.

A layout turns a directory into clip records. Detection (`matches`) must stay cheap because it
runs before anything else on trees of half a million files; scanning (`scan`) lists directories
with os.scandir and never stats a file it does not have to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..errors import FlowprepError

VIDEO_SUFFIXES = frozenset({".mp4", ".mpg", ".mpeg", ".avi", ".mov", ".mkv", ".webm"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClipRecord:
    """One video to process and what is known about it before decoding."""

    clip_id: str  # unique, stable, path-like ("ABOUT/train/ABOUT_00001", "s1/bbaf2n")
    path: str  # absolute path of the video
    split: str  # "train" | "val" | "test"
    label: int  # class index, -1 when the layout has no classes
    word: str  # the class name (LRW word, folder name) or GRID sentence, "" when unknown
    source: str  # layout name: "lrw" | "grid" | "folder"
    boundary: tuple[float, float] | None = None  # (start_s, end_s) of the speech in the clip

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["boundary"] = list(self.boundary) if self.boundary is not None else None
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
        )


class Layout:
    """One dataset layout. Subclasses set `name` and `expects` and implement both classmethods."""

    name: ClassVar[str]
    expects: ClassVar[str]  # the tree this layout reads, in one line, for error messages

    @classmethod
    def matches(cls, root: Path) -> bool:
        """Whether ``root`` looks like this layout, from a handful of directory entries."""
        raise NotImplementedError

    @classmethod
    def scan(cls, root: Path) -> list[ClipRecord]:
        """Every clip under ``root``, in any order (discover sorts)."""
        raise NotImplementedError


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


def walk_files(root: Path, suffixes: frozenset[str] = VIDEO_SUFFIXES) -> Iterator[tuple[tuple[str, ...], os.DirEntry]]:
    """(folders from root to the file, entry) for every file under root whose suffix is in
    ``suffixes`` (lower case), in no fixed order.

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
                if entry.is_dir():
                    stack.append((entry.path, parts + (entry.name,), below))
                elif os.path.splitext(entry.name)[1].lower() in suffixes and entry.is_file():
                    yield parts, entry
            except OSError:  # a dangling link
                continue


def check_root(src: str | Path) -> Path:
    """The source folder as an absolute path; a clear error when it is missing or empty."""
    root = Path(src).expanduser()
    if not root.exists():
        raise FlowprepError(f"source folder {root} does not exist")
    if not root.is_dir():
        raise FlowprepError(f"source {root} is not a directory")
    if not list_dir(root):
        raise FlowprepError(f"source folder {root} is empty")
    return Path(os.path.abspath(root))
