"""The oracle's end of the wire to the sandboxed program: one request at a time over a socket (`Channel`), values
decoded strictly into plain builtins (`decode`), and objects that are not plain data kept in the sandbox as
`Remote` handles; what goes out is plain tagged data (`encode`, sent in `marshal` form, which the sandbox reads
without importing `json`). The other end is `candidate_server.py`."""

from __future__ import annotations

import builtins
import json
import marshal
import os
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
        try:
            data = marshal.dumps(obj)
        except ValueError as exc:  # cannot happen for what `encode` makes; a clear fault if it ever does
            raise self._fail(f"a request could not be encoded: {exc}") from None
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
