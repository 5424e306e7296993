"""A warm `python -m tteval.cli` for the tests' CLI calls (helpers.tteval): each call is still its own process, with
its own argv, environment, working directory, standard streams and exit status, but it is forked from a server that
has already imported the third-party libraries the CLI loads (numpy, scipy, pandas, typer, rich, pydantic, yaml), so a
call does not pay their ~0.2 CPU s of imports again (the suite makes several hundred calls).

tteval itself is not imported by the server: each child imports it after the call's environment, working directory and
`sys.path` are in place, and runs `tteval.cli` as `__main__` (runpy), as `python -m` does, so tteval's import-time
reads of the environment stay real. A call that needs a fresh interpreter passes `fresh=True` to helpers.tteval;
TTEVAL_TEST_WARM_CLI=0 turns the server off for the whole session.

Wire: a SOCK_SEQPACKET socket; a call is one JSON message (argv, env, cwd) carrying three descriptors (stdout,
stderr and a status pipe); the server forks, writes the child's pid, then its exit code, to the status pipe.
"""

from __future__ import annotations

import atexit
import gc
import json
import locale
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

# What `run`, `score` and `leaderboard` import beyond the standard library's core.
PRELOAD = ("numpy", "scipy.special", "scipy.stats", "pandas", "pandas.core.methods.to_dict", "pyarrow.pandas_compat",
           "typer", "typer._adapters", "typer._click.decorators", "rich.console", "rich.table", "rich.progress",
           "rich._emoji_codes", "pydantic", "pydantic.main", "pydantic.type_adapter", "yaml",
           "multiprocessing.connection", "sqlite3", "shlex", "html.entities", "email.parser")  # fmt: skip


def enabled() -> bool:
    return os.environ.get("TTEVAL_TEST_WARM_CLI", "1").strip() != "0" and hasattr(os, "pidfd_open")


# ------------------------------------------------------------------------------------------------ server side


def serve(control_fd: int) -> None:
    """The server's loop: fork one child per call until EOF on `control_fd` (the test worker has gone)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as tteval/cli.py sets it before numpy loads
    for name in PRELOAD:
        __import__(name)
    gc.freeze()  # the children's collections skip (and so do not copy) the server's objects
    started_with = {"", os.path.dirname(os.path.abspath(__file__)), *os.environ.get("PYTHONPATH", "").split(os.pathsep)}
    base_path = [p for p in sys.path if p not in started_with]  # the interpreter's own: stdlib, site-packages
    control = socket.socket(fileno=control_fd)
    running: dict[int, tuple[int, int]] = {}  # pidfd -> (pid, status fd)
    while True:
        ready, _, _ = select.select([control, *running], [], [])
        for fd in ready:
            if fd is not control:
                pid, status_fd = running.pop(fd)
                _, status = os.waitpid(pid, 0)
                _write(status_fd, f"{os.waitstatus_to_exitcode(status)}\n")
                os.close(status_fd)
                os.close(fd)
        if control not in ready:
            continue
        message, fds, _, _ = socket.recv_fds(control, 1 << 22, 3)
        if not message:
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            control.close()
            for other, (_, status_fd) in running.items():
                os.close(other)
                os.close(status_fd)
            _child(json.loads(message), fds, base_path)  # never returns: the CLI ends the process
        os.close(fds[0])
        os.close(fds[1])
        _write(fds[2], f"{pid}\n")
        running[os.pidfd_open(pid)] = (pid, fds[2])


def _write(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
    except OSError:
        pass


def _child(call: dict, fds: list[int], base_path: list[str]) -> None:
    """In the forked child: take the call's streams, directory, environment and path, then run tteval.cli."""
    import runpy

    out, err, status_fd = fds
    os.close(status_fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (out, 1), (err, 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(call["cwd"])
    os.environ.clear()
    os.environ.update(call["env"])
    extra = [p for p in call["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *(p for p in base_path if p not in extra)]  # as `python -m` builds it
    sys.argv[:] = ["-m", *call["argv"]]
    code = 0
    try:
        runpy.run_module("tteval.cli", run_name="__main__", alter_sys=True)  # tteval.cli.main exits by itself
    except SystemExit as exc:  # only when something exits before main (an import-time error)
        from tteval.fast_exit import exit_code

        code = exit_code(exc.code)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    # The interpreter's exit without its finalization, as tteval's own: tearing down every module of the server would
    # write to (and so copy) each page the fork shares with it.
    from tteval.fast_exit import exit_now

    exit_now(code)


# ------------------------------------------------------------------------------------------------ client side


class _Server:
    """The worker's warm server process and the socket its calls go over."""

    def __init__(self, env: dict[str, str]) -> None:
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        here = os.path.dirname(os.path.abspath(__file__))
        code = f"import sys; sys.path.insert(0, {here!r}); import warm_cli; warm_cli.serve({theirs.fileno()})"
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", code], pass_fds=(theirs.fileno(),), env=env,
                                         stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        finally:
            theirs.close()

    def close(self) -> None:
        from tteval.graders.sandbox_zygote import end_zygote  # here: the server must not import tteval

        end_zygote(self.control, self.proc)  # EOF on the control socket, then a kill if it lingers


_SERVER: list[_Server] = []
_LOCK = threading.Lock()
_BASE_ENV = dict(os.environ)  # the session's environment before any test changes it


def _server() -> _Server:
    """The worker's server, started on first use (again if it died), ended at exit."""
    with _LOCK:
        if _SERVER and _SERVER[0].proc.poll() is not None:
            _SERVER.pop().close()
        if not _SERVER:
            _SERVER.append(_Server(_BASE_ENV))
            atexit.register(_SERVER[0].close)
        return _SERVER[0]


def run(argv: list[str], cmd: list[str], cwd: str | None, env: dict[str, str],
        timeout: float) -> subprocess.CompletedProcess:
    """`subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)` for `cmd` = `python -m
    tteval.cli *argv`, served by a fork of the warm server."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    status_r, status_w = os.pipe()
    message = json.dumps({"argv": argv, "env": env, "cwd": os.path.abspath(cwd or os.getcwd())}).encode()
    try:
        try:
            socket.send_fds(_server().control, [message], [out_w, err_w, status_w])
        except OSError:  # the server died since it was checked: once more, with a new one
            socket.send_fds(_server().control, [message], [out_w, err_w, status_w])
    finally:
        for fd in (out_w, err_w, status_w):
            os.close(fd)
    got: dict[int, list[bytes]] = {out_r: [], err_r: [], status_r: []}
    pending, deadline, pid = set(got), time.monotonic() + timeout, None
    try:
        while pending:  # until EOF on all three, as communicate() reads both streams to their end
            left = deadline - time.monotonic()
            if left <= 0:
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(cmd, timeout, _text(got[out_r]), _text(got[err_r]))
            for fd in select.select(list(pending), [], [], left)[0]:
                data = os.read(fd, 1 << 16)
                if data:
                    got[fd].append(data)
                else:
                    pending.discard(fd)
            status = b"".join(got[status_r]).split(b"\n")
            if pid is None and len(status) > 1:
                pid = int(status[0])
    finally:
        for fd in got:
            os.close(fd)
    status = b"".join(got[status_r]).split(b"\n")
    returncode = int(status[1]) if len(status) > 2 else -signal.SIGKILL  # no exit code: the server was killed
    return subprocess.CompletedProcess(cmd, returncode, _text(got[out_r]), _text(got[err_r]))


def _text(parts: list[bytes]) -> str:
    """Decoded as `subprocess.run(text=True)` does: the locale's encoding, universal newlines."""
    return b"".join(parts).decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")
