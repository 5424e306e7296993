"""Warm trusted oracle processes (`oracle.py`, forked from a zygote per check) and one split run: the program in
the sandbox (`candidate_server.py`) answering calls, the tests in a fresh oracle fork making them."""

from __future__ import annotations

import atexit
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from tteval.graders.sandbox import Session
from tteval.graders.sandbox_limits import ExecResult, Limits
from tteval.graders.sandbox_zygote import end_zygote

_SERVER_SOURCE = (Path(__file__).with_name("candidate_server.py")).read_text(encoding="utf-8")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_ORACLE_BOOT = (f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
                "from tteval.graders.oracle import main; main()")
_ORACLE_BACKSTOP_S = 5.0


class _Zygote:
    """One warm oracle process (`oracle.zygote`), reached over a SOCK_SEQPACKET socket that carries descriptors."""

    def __init__(self) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _ORACLE_BOOT, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8"})
        finally:
            theirs.close()

    def run(self, channel_fd: int, job: bytes, deadline_s: float) -> tuple[dict | None, str]:
        """Have a fresh fork of the oracle run `job` against the sandbox behind `channel_fd`: (verdict, note)."""
        job_r, job_w = os.pipe()
        verdict_r, verdict_w = os.pipe()
        try:
            try:
                socket.send_fds(self.control, [f"{deadline_s:.3f}".encode()], [channel_fd, job_r, verdict_w])
            finally:
                os.close(job_r)
                os.close(verdict_w)
            try:
                view = memoryview(job)
                while view:
                    view = view[os.write(job_w, view):]
            except BrokenPipeError:
                pass  # the oracle died before reading: no verdict below
            finally:
                os.close(job_w)
            out, ended = _read_until(verdict_r, deadline_s + 2.0)
        finally:
            os.close(verdict_r)
        if not ended:
            return None, "backstop"
        try:
            payload = json.loads(out) if out else None
        except ValueError:
            payload = None
        return (payload, "") if isinstance(payload, dict) else (None, "the test oracle ended without a verdict")

    def close(self) -> None:
        end_zygote(self.control, self.proc)


def _read_until(fd: int, timeout_s: float) -> tuple[bytes, bool]:
    """Everything from `fd` up to EOF, and whether EOF came within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return b"".join(chunks), False
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)


class _ZygotePool:
    """Idle zygotes, one per check running at once, kept for the next call and closed at exit."""

    def __init__(self) -> None:
        self.idle: list[_Zygote] = []
        self.lock = threading.Lock()
        atexit.register(self.close)

    def run(self, channel_fd: int, job: bytes, deadline_s: float) -> tuple[dict | None, str]:
        for attempt in range(2):
            with self.lock:
                zygote = self.idle.pop() if self.idle else None
            if zygote is None:
                try:
                    zygote = _Zygote()
                except OSError as exc:
                    return None, f"cannot start the test oracle: {exc}"
            try:
                result = zygote.run(channel_fd, job, deadline_s)
            except OSError:  # the zygote is gone (killed from outside): a new one, once
                zygote.close()
                continue
            with self.lock:
                self.idle.append(zygote)
            return result
        return None, "the test oracle could not be reached"

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for zygote in idle:
            zygote.close()


_ORACLES = _ZygotePool()


def run_split(program: str, job: dict, limits: Limits) -> tuple[ExecResult, dict | None, str]:
    """One run of `program` in the sandbox against the oracle `job`: (the sandbox's result, the oracle's verdict
    payload or None, a note: "backstop" when the oracle's deadline passed, or why no oracle could run)."""
    def source(fd: int) -> str:
        return f"{_SERVER_SOURCE}\n\nserve({program!r}, {fd})\n"

    with Session(source, limits) as session:
        payload, note = _ORACLES.run(session.channel.fileno(), json.dumps(job).encode(),
                                     limits.wall_limit_s + _ORACLE_BACKSTOP_S)
        return session.wait(), payload, note
