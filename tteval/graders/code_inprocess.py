"""The old mode, for tests that cannot be split (they reach the program's namespace: `globals()`, `eval`): program
and tests in one sandboxed process (`inprocess_harness.py`), which reports on a result line with a nonce."""

from __future__ import annotations

import ast
import hashlib
import secrets
from pathlib import Path
from typing import Sequence

from tteval.errors import TtevalError
from tteval.graders.code_tests import normalize_newlines, statement_units, test_calls
from tteval.graders.code_verdict import CodeVerdict, inprocess_verdict
from tteval.graders.result_line import find_result
from tteval.graders.sandbox import run_many
from tteval.graders.sandbox_limits import ExecResult, Limits

MARKER = "\x1eTTEVAL-RESULT "
_HARNESS = Path(__file__).with_name("inprocess_harness.py").read_text(encoding="utf-8")


def check_inprocess(items: Sequence[tuple[str, str]], limits: Sequence[Limits], workers: int) -> list[CodeVerdict]:
    """Check (program, tests) pairs with the tests in the candidate's process."""
    nonces = [secrets.token_hex(16) for _ in items]
    sources = [harness_source(program, tests, "check", []) for program, tests in items]
    results = run_many(sources, list(limits), workers=workers, stdins=[n + "\n" for n in nonces])
    return [inprocess_verdict(r, _find_result(r, n) if r.status == "ok" else None) for r, n in zip(results, nonces)]


def signatures_inprocess(items: Sequence[tuple[str, str]], limits: Sequence[Limits], workers: int) -> list[str]:
    """Behaviour signatures with the signature harness in the candidate's process."""
    nonces = [secrets.token_hex(16) for _ in items]
    sources = [harness_source(program, tests, "signature", test_calls(tests)) for program, tests in items]
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


def harness_source(program: str, tests: str, mode: str, calls: Sequence[str]) -> str:
    """The script the sandbox runs: the harness with a call that passes the program, tests and calls as literals."""
    if not isinstance(program, str):
        raise TtevalError(f"program must be a str, got {type(program).__name__}")
    units = statement_units(tests)
    lines = normalize_newlines(tests).split("\n")
    return (f"{_HARNESS}\n\n_tteval_harness({program!r}, {units!r}, {lines!r}, {mode!r}, {list(calls)!r}, "
            f"{MARKER.encode()!r})\n")


def _find_result(result: ExecResult, nonce: str) -> dict | None:
    """The harness's result (a dict literal) from the line that carries our nonce (last one wins), or None."""
    return find_result(result, MARKER, nonce, lambda line: ast.literal_eval(line[:100_000]))
