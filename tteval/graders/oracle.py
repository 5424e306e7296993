"""The trusted side of a code check: run the tests here, with the candidate's functions as proxies to its sandbox.

The oracle process runs the test statements (never the candidate's code). Each name the tests use but do not
define (the function under test, HumanEval's `candidate`, MBPP's classes) is a `Remote`: calling it sends the
arguments to the sandboxed program (see `candidate_server.py`) and returns its result decoded into plain
builtins (no object of the candidate's can reach a comparison); objects that are not plain data stay in the
sandbox and come back as `Remote` handles, equal only to themselves. Builtins, `set`, `sorted`, `math.isclose`
and every other wrapper the tests apply are this process's own. Run as `python -I -c ...` by
`tteval.graders.oracle_pool` as a warm zygote that forks one child per check (`zygote`). The wire to the
sandbox (`Channel`, `Remote`, `decode`, `encode`) is `oracle_wire.py`.
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import sys
import time
from typing import Any

from tteval.graders.oracle_wire import MAX_DEPTH, Channel, ChannelBroken, Remote


def _summary(exc: BaseException) -> str:
    try:
        msg = str(exc)
    except Exception:
        msg = "<unprintable message>"
    return (type(exc).__name__ + (": " + msg if msg else ""))[:300]


def _last_line(tb: Any) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<tests>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def run(job: dict, fd: int) -> dict:
    """Wait for the program to load, then run each test statement; the first failure ends the check."""
    channel = Channel(fd)
    try:
        loaded = channel.receive()
    except ChannelBroken as exc:
        return {"stage": "channel", "error": str(exc)}
    if "e" in loaded:
        error = loaded["e"] if isinstance(loaded["e"], list) and len(loaded["e"]) >= 2 else ["Error", ""]
        line = loaded.get("line")
        return {"stage": "program", "error": _summary_of(error), "line": line if type(line) is int else None}
    namespace: dict[str, Any] = {"__name__": "__tteval_tests__", "__builtins__": builtins}
    for name in job["modules"]:
        try:
            namespace[name] = importlib.import_module(name)
        except ImportError:
            namespace[name] = Remote(channel, {"g": name}, "global")
    for name in job["remote"]:
        namespace[name] = Remote(channel, {"g": name}, "global")
    if job.get("calls") is not None:
        return _signature(job, namespace, channel)
    lines = job["lines"]
    start = time.perf_counter()
    for index, text in enumerate(job["units"]):
        try:
            exec(compile(text, "<tests>", "exec"), namespace)
        except BaseException as exc:  # noqa: BLE001  (the tests' own failure, whatever it is)
            if channel.broken:
                break
            line = _last_line(exc.__traceback__)
            source = lines[line - 1].strip()[:200] if line and 0 < line <= len(lines) else ""
            return {"stage": "tests", "index": index, "line": line, "source": source, "error": _summary(exc),
                    "elapsed": time.perf_counter() - start}
        if channel.broken:
            break
    if channel.broken:  # the tests may have swallowed the fault; it still ends the check
        return {"stage": "channel", "error": channel.broken, "elapsed": time.perf_counter() - start}
    return {"stage": "done", "elapsed": time.perf_counter() - start, "calls": channel.seq}


def _signature(job: dict, namespace: dict, channel: Channel) -> dict:
    """Behaviour signature: run the setup statements, then evaluate each checked expression (`test_calls`) here and
    hash its canonical text (or "!" + the exception); the expected values play no part."""
    import hashlib

    start = time.perf_counter()
    for text, setup in zip(job["units"], job["setup"]):
        if setup:
            try:
                exec(compile(text, "<tests>", "exec"), namespace)
            except Exception:  # noqa: BLE001  (as before: a failing setup statement is skipped)
                pass
    values = []
    for expr in job["calls"]:
        try:
            text = _canon(eval(compile(expr, "<call>", "eval"), namespace))
        except ChannelBroken:
            break
        except Exception as exc:  # noqa: BLE001
            text = "!" + _summary(exc)
        values.append(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32])
    if channel.broken:
        return {"stage": "channel", "error": channel.broken}
    return {"stage": "signature", "values": values, "elapsed": time.perf_counter() - start}


def _canon(value: Any, depth: int = 0) -> str:
    """A canonical text of a decoded value: sets sorted, floats by repr, handles by their type."""
    kind = type(value)
    if depth > MAX_DEPTH:
        return "..."
    if kind is list or kind is tuple:
        inner = ",".join(_canon(v, depth + 1) for v in value)
        return ("[%s]" if kind is list else "(%s)") % inner
    if kind is dict:
        return "{%s}" % ",".join(_canon(k, depth + 1) + ":" + _canon(v, depth + 1) for k, v in value.items())
    if kind is set or kind is frozenset:
        return kind.__name__ + "{%s}" % ",".join(sorted(_canon(v, depth + 1) for v in value))
    if kind is float:
        return float.__repr__(value)
    if kind is Remote:
        return repr(value)
    if hasattr(kind, "__next__"):
        return "iter" + _canon(list(value), depth + 1)
    return repr(value)


def _summary_of(error: list) -> str:
    name = str(error[0])[:100]
    message = " ".join(str(error[1]).split())[:200]
    return name + (": " + message if message else "")


def zygote(control_fd: int) -> None:
    """A warm oracle: forks one child per job, so a job costs a fork, not an interpreter start, and every job
    starts from the same state (results do not depend on which jobs ran before). A job arrives on the control
    socket as its deadline in seconds plus three descriptors: the sandbox's channel, a pipe with the job (JSON)
    and a pipe for the verdict (JSON). EOF on the control socket (the harness ended) ends the zygote."""
    import signal
    import socket

    control = socket.socket(fileno=control_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    for name in ("math", "re", "collections", "itertools", "heapq", "functools", "string", "random", "cmath"):
        importlib.import_module(name)  # what the tests import most, loaded once
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 64, 3)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        if len(fds) == 3:
            if os.fork() == 0:
                try:
                    control.close()
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    signal.setitimer(signal.ITIMER_REAL, float(message.decode()))  # SIGALRM ends a stuck job
                    _job(*fds)
                finally:
                    os._exit(0)
        for fd in fds:
            os.close(fd)


def _job(channel_fd: int, job_fd: int, verdict_fd: int) -> None:
    chunks = []
    while True:
        chunk = os.read(job_fd, 1 << 20)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(job_fd)
    verdict = run(json.loads(b"".join(chunks)), channel_fd)
    view = memoryview(json.dumps(verdict).encode("utf-8", "backslashreplace"))
    while view:
        view = view[os.write(verdict_fd, view):]


def main() -> None:
    """Entry point of a zygote process: `python -I -c ... <control fd>`; what the tests print goes nowhere."""
    zygote(int(sys.argv[1]))


if __name__ == "__main__":
    main()
