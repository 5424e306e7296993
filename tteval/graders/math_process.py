"""One math-verify worker process (`MathVerifyProcess`, the parent's handle) and its loop (`serve`, in the child):
pickled (pred, gold) jobs in, verdicts out, over a socketpair; `MathGrader` keeps a pool of them."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from tteval.errors import TtevalError

# The folder holding the `tteval` package, put on the worker processes' PYTHONPATH.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MathVerifyProcess:
    """One `python -c` child running `serve`, talked to over a socketpair with pickled messages.

    A plain subprocess rather than multiprocessing's spawn: spawn re-runs the parent's `__main__` script in the
    child, which breaks user scripts that build a MathGrader at top level without an `if __name__` guard.
    """

    def __init__(self, memory_limit_mb: int | None):
        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
        code = "import sys; from tteval.graders.math_process import serve; serve(int(sys.argv[1]), sys.argv[2])"
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(child_sock.fileno()), str(memory_limit_mb or 0)],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        finally:
            child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.started = time.monotonic()
        self.is_ready = False

    def ready(self, start_timeout_s: float) -> bool:
        """True once the worker has imported math-verify; blocks for it (raising if it cannot start)."""
        if self.is_ready:
            return True
        remaining = start_timeout_s - (time.monotonic() - self.started)
        message: Any = None
        try:
            if self.conn.poll(max(0.0, remaining)):
                message = self.conn.recv()
        except (EOFError, OSError):
            message = None
        if isinstance(message, tuple) and message[0] == "ready":
            self.is_ready = True
            return True
        self.stop(kill=True)
        detail = message[1] if isinstance(message, tuple) and len(message) > 1 else "no reply"
        raise TtevalError(f"math-verify worker failed to start ({detail}); is math-verify installed?")

    def send(self, job: tuple[str, str]) -> bool:
        try:
            self.conn.send(job)
            return True
        except (OSError, ValueError):
            return False

    def poll(self) -> tuple[str, Any] | None:
        """The worker's reply if one is waiting; ('died', ...) if the worker is gone."""
        try:
            if not self.conn.poll():
                return None
            return self.conn.recv()
        except (EOFError, OSError) as exc:
            return ("died", repr(exc))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, kill: bool = False) -> None:
        """Ask the worker to exit (or kill it outright) and reap it."""
        if not kill and self.alive():
            try:
                self.conn.send(None)
                self.proc.wait(timeout=2.0)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        if self.alive():
            self.proc.kill()
        try:
            self.proc.wait(timeout=10.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not get ignored
            pass
        self.conn.close()


def serve(fd: int, memory_limit_mb: str = "0") -> None:
    """Child process loop on socket `fd`: receive (pred, gold), reply ('ok', verdict) or ('error', kind); None stops."""
    conn = Connection(fd)
    try:
        if int(memory_limit_mb):
            import resource

            limit = int(memory_limit_mb) * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        logging.getLogger("math_verify").setLevel(logging.ERROR)
        logging.getLogger("latex2sympy2_extended").setLevel(logging.ERROR)
        from math_verify import parse, verify

        parsed: dict[str, Any] = {}

        def parsed_answer(text: str) -> Any:
            if text not in parsed:
                if len(parsed) > 4096:
                    parsed.clear()
                parsed[text] = parse("\\boxed{" + text + "}", parsing_timeout=None)
            return parsed[text]

        verify(parsed_answer("1"), parsed_answer("1"), timeout_seconds=None)  # warm sympy's first-call caches
    except BaseException as exc:  # noqa: BLE001 - report any start-up failure to the parent
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            job = None
        if job is None:  # done: exit without tearing down sympy's modules (~0.1 s the parent would wait for)
            os._exit(0)
        try:
            pred, gold = job
            conn.send(("ok", bool(verify(parsed_answer(gold), parsed_answer(pred), timeout_seconds=None))))
        except BaseException as exc:  # noqa: BLE001 - one bad answer must not end the worker
            try:
                conn.send(("error", f"{type(exc).__name__}"))
            except (OSError, ValueError):
                return
