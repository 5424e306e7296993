"""The warm launcher (`launcher.py --zygote`): it forks each sandbox run's launcher, so a run costs a fork instead of an
interpreter start and ctypes import. What each run gets is unchanged: a fresh launcher process, fresh namespaces
and root, a fresh exec of the program. TTEVAL_SANDBOX_ZYGOTE=0 starts a launcher process per run instead.
"""

from __future__ import annotations

import atexit
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

LAUNCHER = str(Path(__file__).with_name("launcher.py"))


def use_zygote() -> bool:
    """Whether runs are forked from the zygote (pidfd support, and not TTEVAL_SANDBOX_ZYGOTE=0)."""
    return hasattr(os, "pidfd_open") and os.environ.get("TTEVAL_SANDBOX_ZYGOTE", "1").strip() != "0"


class ForkedLauncher:
    """A launcher forked by the zygote: its pid, and its exit code read from its status pipe (Popen's subset)."""

    def __init__(self, pid: int, status_fd: int):
        self.pid, self._fd, self.returncode, self._done = pid, status_fd, None, False

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` s (None: for ever) for the launcher to exit; True if it has."""
        if not self._done:
            if not select.select([self._fd], [], [], timeout)[0]:
                return False
            data = _read_all_blocking(self._fd)
            os.close(self._fd)
            self._done = True
            text = data.decode(errors="replace").strip()
            self.returncode = int(text) if text.lstrip("-").isdigit() else -signal.SIGKILL  # zygote gone: killed
        return True

    def poll(self) -> int | None:
        self.wait(0)
        return self.returncode if self._done else None

    def __del__(self) -> None:
        if not self._done:
            os.close(self._fd)


def _read_all_blocking(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


class _LauncherZygote:
    """The warm launcher process, reached over a SOCK_SEQPACKET socket that carries each run's descriptors."""

    def __init__(self) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", LAUNCHER, "--zygote", str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={},
                start_new_session=True)
        finally:
            theirs.close()

    def spawn(self, cfg: str, std: Sequence[Any], fds: Sequence[int]) -> ForkedLauncher:
        """Have the zygote fork a launcher for `cfg` with `std` as its stdin/out/err and `fds` (report pipe, then
        the channel if any) passed on."""
        status_r, status_w = os.pipe()
        try:
            socket.send_fds(self.control, [cfg.encode()], [*(f.fileno() for f in std), fds[0], status_w, *fds[1:]])
        except OSError:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        line = b""
        while not line.endswith(b"\n"):
            chunk = os.read(status_r, 1)
            if not chunk:
                os.close(status_r)
                raise OSError("the sandbox zygote ended")
            line += chunk
        return ForkedLauncher(int(line), status_r)

    def close(self) -> None:
        end_zygote(self.control, self.proc)


def end_zygote(control: Any, proc: subprocess.Popen) -> None:
    """End a zygote process: EOF on its control channel (it exits), then kill it if it has not within 5 s."""
    control.close()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


_ZYGOTE: list[_LauncherZygote] = []
_ZYGOTE_LOCK = threading.Lock()


def _launcher_zygote() -> _LauncherZygote:
    """The process's launcher zygote, started on first use (again if it died), closed at exit."""
    with _ZYGOTE_LOCK:
        if _ZYGOTE and _ZYGOTE[0].proc.poll() is not None:
            _ZYGOTE.pop().close()
        if not _ZYGOTE:
            if not _ZYGOTE_STARTED:
                atexit.register(_close_zygote)
                _ZYGOTE_STARTED.append(True)
            _ZYGOTE.append(_LauncherZygote())
        return _ZYGOTE[0]


_ZYGOTE_STARTED: list[bool] = []


def spawn_forked(cfg: str, std: Sequence[Any], fds: Sequence[int]) -> ForkedLauncher:
    """Fork a launcher from the zygote; a zygote that died (killed from outside) is replaced once."""
    try:
        return _launcher_zygote().spawn(cfg, std, fds)
    except OSError:
        with _ZYGOTE_LOCK:
            while _ZYGOTE:
                _ZYGOTE.pop().close()
        return _launcher_zygote().spawn(cfg, std, fds)


def _close_zygote() -> None:
    with _ZYGOTE_LOCK:
        while _ZYGOTE:
            _ZYGOTE.pop().close()
