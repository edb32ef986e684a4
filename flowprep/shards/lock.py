"""One build per shard folder: an exclusive lock on ``OUT/.flowprep.lock``.

Two builds writing one folder would delete each other's temporaries and overwrite each other's
manifest. The build's driver holds ``fcntl.flock`` on the lock file for its whole run; the kernel
releases it when the process dies, however it dies, so a lock can never outlive its holder on this
host. The holder's host, PID and build id are written in the file so a refused build can name it,
and cleared on a clean exit: a lock file that still names someone when the lock is free was left by
a process that died, and the new build takes over with a warning.

While the lock is held, every temporary in the folder is stale: only this build's writers write
there, and they start after the driver has cleaned up. That is why temporaries need no owner tag.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path

from ..errors import FlowprepError

LOCK_NAME = ".flowprep.lock"
log = logging.getLogger(__name__)


class BuildLock:
    """``with BuildLock(out) as lock:`` ... ; ``lock.build_id`` names this build."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.build_id = uuid.uuid4().hex[:12]
        self.previous: dict | None = None  # what a dead holder left in the file, when we took over
        self._fd: int | None = None

    def acquire(self) -> "BuildLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise FlowprepError(f"cannot create the build lock {self.path}: {exc.strerror}; "
                                "--out must be a folder this user can write") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise FlowprepError(
                f"{self.folder} is being written by another build ({_describe(holder)}): wait for it to finish, "
                "or use another --out. Two builds into one folder would overwrite each other."
            ) from None
        except OSError as exc:
            os.close(fd)
            raise FlowprepError(f"cannot lock {self.path}: {exc.strerror}; put --out on a filesystem that "
                                "supports file locks (local disk, NFSv4, Lustre with flock)") from None
        left = _read(fd)
        if left:
            self.previous = left
            log.warning("flowprep: %s was left locked by a build that is gone (%s); taking it over",
                        self.folder, _describe(left))
        me = {"host": socket.gethostname(), "pid": os.getpid(), "build_id": self.build_id, "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty lock file: nobody holds it, nobody died holding it
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "BuildLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {"unreadable": True}


def _describe(holder: dict) -> str:
    if not holder or holder.get("unreadable"):
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    alive = ""
    if holder.get("host") == socket.gethostname():
        alive = ", alive" if _alive(int(holder.get("pid", 0))) else ", not running"
    return f"host {holder.get('host')}, PID {holder.get('pid')}{alive}, build {holder.get('build_id')}, since {since}"


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
