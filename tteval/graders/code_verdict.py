"""A code check's outcome (`CodeVerdict`), from what its run reported: the stage the harness or oracle reached
(the program ran, a test failed, every test passed) and the sandbox's status (why a run broke off)."""

from __future__ import annotations

from dataclasses import dataclass

from tteval.graders.sandbox_limits import ExecResult

VERDICTS = ("passed", "failed", "timeout", "crashed", "sandbox_error")


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


def split_verdict(result: ExecResult, payload: dict | None, oracle_note: str) -> CodeVerdict:
    """The verdict from the oracle's own comparisons; the sandbox's status only says why a run broke off."""
    base = _base(result)
    stage = payload.get("stage") if isinstance(payload, dict) else None
    base["exec_s"] = _exec_s(payload)
    if payload is not None and stage in ("done", "tests", "program"):
        return _reached(stage, payload, base)
    if result.status == "timeout" or oracle_note == "backstop":
        return CodeVerdict("timeout", False, result.note or "time limit", **base)
    if result.status == "sandbox_error":
        return CodeVerdict("sandbox_error", False, result.note or "sandbox error", **base)
    if stage is None and oracle_note:
        return CodeVerdict("sandbox_error", False, one_line(oracle_note), **base)
    why = payload.get("error", "") if isinstance(payload, dict) else ""
    detail = _crash_detail(result) if result.status != "ok" else one_line(why or "the program stopped answering")
    return CodeVerdict("crashed", False, detail, **base)


def inprocess_verdict(result: ExecResult, payload: dict | None) -> CodeVerdict:
    """The verdict of the in-process harness, from its result line (`payload`, None when there was none)."""
    base = _base(result)
    if result.status == "timeout":
        return CodeVerdict("timeout", False, result.note or "time limit", **base)
    if result.status == "sandbox_error":
        return CodeVerdict("sandbox_error", False, result.note or "sandbox error", **base)
    if payload is None or result.status != "ok":
        return CodeVerdict("crashed", False, _crash_detail(result), **base)
    base["exec_s"] = _exec_s(payload)
    return _reached(payload.get("stage"), payload, base)


def _reached(stage: object, payload: dict, base: dict) -> CodeVerdict:
    """Passed ("done"), the first failing test ("tests"), or else the program's own error before the tests."""
    if stage == "done":
        return CodeVerdict("passed", True, "", **base)
    if stage == "tests":
        line, source, error = payload.get("line"), payload.get("source") or "", payload.get("error") or ""
        where = f"line {line}: {source}" if line else "tests"
        index = payload.get("index")
        return CodeVerdict("failed", False, one_line(f"{where} -> {error}"),
                           failed_test=index if isinstance(index, int) else None, **base)
    error = payload.get("error") or "error"
    if error.startswith("SystemExit"):
        return CodeVerdict("crashed", False, one_line(f"the program exited before the tests ({error})"), **base)
    line = payload.get("line")
    return CodeVerdict("crashed", False, one_line(f"program{f' line {line}' if line else ''}: {error}"), **base)


def _base(result: ExecResult) -> dict:
    return dict(runtime_s=result.runtime_s, time_limit_s=result.limit.cpu_limit_s, cpu_s=result.cpu_s,
                wall_limit_s=result.limit.wall_limit_s, limit_fired=result.limit_fired, reruns=result.reruns)


def _exec_s(payload: dict | None) -> float | None:
    elapsed = payload.get("elapsed") if isinstance(payload, dict) else None
    return float(elapsed) if isinstance(elapsed, (int, float)) else None


def _crash_detail(result: ExecResult) -> str:
    if result.status == "killed":
        return one_line(f"the program was {result.note or 'killed'}")
    last = next((ln.strip() for ln in reversed(result.stderr.splitlines()) if ln.strip()), "")
    if result.status == "ok":
        return "the program exited with code 0 before the tests finished"
    if last:
        return one_line(f"exit code {result.returncode}: {last}")
    return f"the program exited with code {result.returncode} before the tests finished"


def one_line(text: str, limit: int = 300) -> str:
    """`text` on one line (runs of blanks made one space), cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
