"""The one home of write-then-rename, and of file checksums, for everything flowprep writes.

A file a reader may see (a shard, the manifest, a checkpoint, downloaded weights) is first written
to a temporary name next to it, flushed to disk, then renamed into place, and the folder itself is
flushed so the rename survives a power cut. The temporary name is unpredictable and created
exclusively without following symlinks (O_CREAT|O_EXCL|O_NOFOLLOW), so nothing planted in the folder
can redirect the write; whatever goes wrong, the temporary is removed.

With ``replace=False`` the rename becomes a hard link that fails when the target exists: the first
writer wins, and a retried or duplicated writer learns that its file was not placed (``placed``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
from pathlib import Path

TMP_SUFFIX = ".tmp"


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (renames, links, unlinks) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:  # some network filesystems refuse fsync on a folder: nothing more can be done
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


class AtomicFile:
    """``with AtomicFile(path) as tmp:`` write ``tmp`` (by path or by opening it); on a clean exit the
    file is flushed and appears at ``path`` in one step; on an error ``path`` is untouched and ``tmp``
    is gone. ``replace=False``: never replace an existing ``path``; ``placed`` then says who won."""

    def __init__(self, path: str | Path, replace: bool = True):
        self.path = Path(path)
        self.replace = replace
        self.tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}{TMP_SUFFIX}")
        self.placed = False

    def __enter__(self) -> Path:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        os.close(os.open(self.tmp, flags, 0o666))  # the umask decides the final permissions
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                fd = os.open(self.tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.placed = _place(self.tmp, self.path, self.replace)
                fsync_dir(self.path.parent)
        finally:
            self.tmp.unlink(missing_ok=True)


def _place(tmp: Path, path: Path, replace: bool) -> bool:
    if replace:
        os.replace(tmp, path)
        return True
    try:
        os.link(tmp, path)  # atomic create-if-absent, also over NFS
    except FileExistsError:
        return False
    except OSError as exc:  # a filesystem without hard links: check, then rename (a narrow race remains)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if path.exists():
            return False
        os.replace(tmp, path)
    return True


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new, never half of one."""
    with AtomicFile(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())
