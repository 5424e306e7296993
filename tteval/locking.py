"""One writer at a time: an fcntl (flock) lock on a run folder or an output file, held for a whole command.

The lock file holds the holder's pid while it is held (emptied on release), so a second process fails at once
with one line naming it. The kernel drops the lock when its holder dies, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from tteval.errors import TtevalError

LOCK_NAME = ".lock"  # inside a run folder


@contextlib.contextmanager
def held(lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` (created if missing) for the block; `what` names the locked thing."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise TtevalError(f"cannot write {lock_path.parent}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f" (pid {holder})" if holder else ""
        raise TtevalError(f"{what} is in use by another tteval process{who}; wait for it to finish, or use another --out") from None
    try:
        with contextlib.suppress(OSError):  # the pid is a courtesy: a full disk must not stop the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

