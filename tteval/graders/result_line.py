"""The result line of a sandboxed harness: a marker, the run's nonce, a blank, then the payload. Only the process
told the nonce (on its stdin) can write a line that counts; the last such line wins."""

from __future__ import annotations

from typing import Any, Callable

from tteval.graders.sandbox_limits import ExecResult


def find_result(result: ExecResult, marker: str, nonce: str, decode: Callable[[str], Any]) -> dict | None:
    """The dict that `decode` reads from the last line carrying `marker` and `nonce` (in the stdout tail, then the
    whole captured stdout), or None when there is no such line that decodes to a dict."""
    prefix = marker + nonce + " "
    for text in (result.stdout_tail, result.stdout):
        at = text.rfind(prefix)
        if at < 0:
            continue
        line = text[at + len(prefix):].split("\n", 1)[0]
        try:
            payload = decode(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(payload, dict):
            return payload
    return None
