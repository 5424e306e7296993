"""The trusted side of a code check: run the tests here, with the candidate's functions as proxies to its sandbox.

The oracle process runs the test statements (never the candidate's code). Each name the tests use but do not
define (the function under test, HumanEval's `candidate`, MBPP's classes) is a `Remote`: calling it sends the
arguments to the sandboxed program (see `candidate_server.py`) and returns its result decoded into plain
builtins (no object of the candidate's can reach a comparison); objects that are not plain data stay in the
sandbox and come back as `Remote` handles, equal only to themselves. Builtins, `set`, `sorted`, `math.isclose`
and every other wrapper the tests apply are this process's own. Run as `python -I -c ...` by
`tteval.verifiers.oracle_pool` as a warm zygote that forks one child per check (`zygote`).
"""

from __future__ import annotations

import builtins
import importlib
import json
import os
import sys
import time
from typing import Any

MAX_MESSAGE = 1 << 26  # bytes of one message from the sandbox
MAX_DEPTH = 200
_EXCEPTIONS = {
    name: obj for name, obj in vars(builtins).items()
    if isinstance(obj, type) and issubclass(obj, BaseException)
    and name not in ("SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseException", "BaseExceptionGroup")
}


class ChannelBroken(BaseException):
    """The sandbox ended, sent something that is not a valid reply, or answered out of turn."""


class CandidateError(Exception):
    """An exception the candidate raised whose type is not a builtin exception (or is an exit)."""


class Remote:
    """A handle on an object that lives in the sandbox: a global of the program, or a value it returned."""

    __slots__ = ("_oracle", "_target", "_type")

    def __init__(self, oracle: "Channel", target: dict, type_name: str):
        object.__setattr__(self, "_oracle", oracle)
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_type", type_name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._oracle.request("call", self._target, args=list(args), kwargs=kwargs)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._oracle.request("getattr", self._target, name=name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._oracle.request("setattr", self._target, name=name, value=value)

    def __repr__(self) -> str:
        return f"<candidate {self._type}>"


class Channel:
    """One request at a time to the sandbox, matched by sequence number; any fault marks the channel broken."""

    def __init__(self, fd: int):
        self.fd, self.seq, self.broken = fd, 0, ""

    def _fail(self, why: str) -> "ChannelBroken":
        self.broken = self.broken or why
        return ChannelBroken(self.broken)

    def _read_exact(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            try:
                chunk = os.read(self.fd, min(n - got, 1 << 20))
            except OSError as exc:
                raise self._fail(f"the program's channel failed: {exc}") from None
            if not chunk:
                raise self._fail("the program ended before answering")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def receive(self) -> dict:
        """The next reply, strictly decoded into a dict with the expected sequence number."""
        if self.broken:
            raise ChannelBroken(self.broken)
        size = int.from_bytes(self._read_exact(4), "big")
        if size > MAX_MESSAGE:
            raise self._fail(f"the program sent a {size}-byte reply (limit {MAX_MESSAGE})")
        try:
            reply = json.loads(self._read_exact(size).decode("utf-8", "surrogatepass"))
        except (ValueError, RecursionError, MemoryError) as exc:
            raise self._fail(f"the program sent an unreadable reply: {type(exc).__name__}") from None
        if not isinstance(reply, dict) or reply.get("seq") != self.seq or ("v" in reply) == ("e" in reply):
            raise self._fail("the program sent a reply out of turn")
        return reply

    def send(self, obj: dict) -> None:
        data = json.dumps(obj).encode("utf-8", "surrogatepass")
        data = len(data).to_bytes(4, "big") + data
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            raise self._fail(f"the program's channel failed: {exc}") from None

    def request(self, op: str, target: dict, **fields: Any) -> Any:
        """Send one operation on a sandbox object and return its decoded result (or raise its exception)."""
        if self.broken:
            raise ChannelBroken(self.broken)
        self.seq += 1
        message: dict[str, Any] = {"seq": self.seq, "op": op, "target": target}
        args = fields.get("args", [])
        if op == "call":
            message["args"] = [encode(a) for a in args]
            message["kwargs"] = [[k, encode(v)] for k, v in fields["kwargs"].items()]
        elif op == "getattr":
            message["name"] = fields["name"]
        else:
            message["name"], message["value"] = fields["name"], encode(fields["value"])
        self.send(message)
        reply = self.receive()
        if "e" in reply:
            raise _exception(reply["e"])
        try:
            value = decode(reply["v"], self)
            for index, state in reply.get("m", []) or []:
                _update_in_place(args[index], decode(state, self))
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            raise self._fail(f"the program sent an invalid value: {type(exc).__name__}: {exc}"[:300]) from None
        return value


def _exception(payload: Any) -> BaseException:
    """The candidate's exception rebuilt here: a builtin exception type of that name, else CandidateError."""
    if not (isinstance(payload, list) and len(payload) >= 2 and all(isinstance(p, str) for p in payload[:2])):
        return ChannelBroken("the program sent an invalid exception")
    name, message = payload[0][:100], " ".join(payload[1].split())[:200]
    cls = _EXCEPTIONS.get(name)
    if cls is None or not issubclass(cls, Exception):
        return CandidateError(f"{name}: {message}" if message else name)
    try:
        return cls(message) if message else cls()
    except Exception:
        return CandidateError(f"{name}: {message}")


def _update_in_place(original: Any, state: Any) -> None:
    if type(original) is list and type(state) is list:
        original[:] = state
    elif type(original) is dict and type(state) is dict:
        original.clear()
        original.update(state)
    elif type(original) is set and type(state) is set:
        original.clear()
        original.update(state)
    elif type(original) is bytearray and type(state) is bytearray:
        original[:] = state


_PLAIN = (type(None), bool, int, float, str)
# builtins that travel by name (a test may pass `int` as an argument; a program may return `str`)
_BY_NAME = {name: getattr(builtins, name) for name in (
    "int", "float", "str", "bool", "list", "tuple", "dict", "set", "frozenset", "complex", "bytes", "bytearray",
    "type", "object", "len", "abs", "min", "max", "sum", "sorted", "reversed", "range", "print")}
_NAME_OF = {id(obj): name for name, obj in _BY_NAME.items()}


def decode(value: Any, channel: Channel, depth: int = 0) -> Any:
    """Plain tagged JSON -> builtins only; anything else is rejected (ValueError)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nested too deeply")
    if type(value) in _PLAIN:
        return value
    if type(value) is list:
        return [decode(v, channel, depth + 1) for v in value]
    if type(value) is not dict:
        raise ValueError(f"unexpected {type(value).__name__}")
    tag, inner = value.get("t"), value.get("v")
    if tag == "ref":
        ident, type_name = value.get("id"), value.get("type")
        if type(ident) is not int or type(type_name) is not str:
            raise ValueError("bad reference")
        return Remote(channel, {"r": ident}, type_name[:100])
    if tag == "builtin":
        if value.get("name") not in _BY_NAME:
            raise ValueError("unknown builtin")
        return _BY_NAME[value["name"]]
    if tag in ("bytes", "bytearray"):
        if type(inner) is not str:
            raise ValueError("bad bytes")
        return (bytes if tag == "bytes" else bytearray).fromhex(inner)
    if type(inner) is not list:
        raise ValueError(f"bad {tag!r} value")
    if tag == "complex":
        if len(inner) != 2 or not all(type(x) in (int, float) for x in inner):
            raise ValueError("bad complex")
        return complex(inner[0], inner[1])
    items = [decode(v, channel, depth + 1) for v in inner] if tag != "dict" else None
    if tag == "tuple":
        return tuple(items)
    if tag == "set":
        return set(items)
    if tag == "frozenset":
        return frozenset(items)
    if tag == "iter":
        return iter(items)
    if tag == "dict":
        out = {}
        for pair in inner:
            if type(pair) is not list or len(pair) != 2:
                raise ValueError("bad dict item")
            out[decode(pair[0], channel, depth + 1)] = decode(pair[1], channel, depth + 1)
        return out
    raise ValueError(f"unknown tag {tag!r}")


def encode(value: Any, depth: int = 0) -> Any:
    """A test's argument -> tagged JSON for the sandbox (TypeError for what cannot travel, e.g. a function)."""
    if depth > MAX_DEPTH:
        raise TypeError("argument nested too deeply")
    t = type(value)
    if t in _PLAIN:
        return value
    if t is list:
        return [encode(v, depth + 1) for v in value]
    if t is tuple:
        return {"t": "tuple", "v": [encode(v, depth + 1) for v in value]}
    if t in (set, frozenset):
        return {"t": t.__name__, "v": [encode(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        return {"t": "dict", "v": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if t in (bytes, bytearray):
        return {"t": t.__name__, "v": value.hex()}
    if t is complex:
        return {"t": "complex", "v": [value.real, value.imag]}
    if id(value) in _NAME_OF and _BY_NAME[_NAME_OF[id(value)]] is value:
        return {"t": "builtin", "name": _NAME_OF[id(value)]}
    if t is Remote:
        target = object.__getattribute__(value, "_target")
        return {"t": "ref", "id": target["r"]} if "r" in target else {"t": "gref", "name": target["g"]}
    if isinstance(value, (list, tuple, str, int, float)):  # subclasses (named tuples, enums): their plain value
        base = next(b for b in (bool, int, float, str, list, tuple) if isinstance(value, b))
        return encode(base(value), depth + 1)
    raise TypeError(f"a {t.__name__} cannot be sent to the sandboxed program")


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
