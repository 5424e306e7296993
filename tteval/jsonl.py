"""One line of a JSONL file as a JSON object, or one clear error line naming the file and line."""

from __future__ import annotations

import json
from typing import Any

from tteval.errors import TtevalError


def json_object(raw: bytes, where: str) -> dict[str, Any]:
    """Decode one JSONL line (bytes) into a dict; `where` ("path:line") prefixes every error."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TtevalError(f"{where}: not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise TtevalError(f"{where}: malformed JSON ({exc.msg}, column {exc.colno})") from None
    except RecursionError:
        raise TtevalError(f"{where}: malformed JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise TtevalError(f"{where}: expected a JSON object")
    return obj
