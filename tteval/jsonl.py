"""JSON read back: one line of a JSONL file as a JSON object, or a whole JSON file; errors are one clear line naming
the file (and line)."""

from __future__ import annotations

import json
from pathlib import Path
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


def read_json(path: Path) -> Any:
    """Read a JSON file, or raise a one-line TtevalError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TtevalError(f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TtevalError(f"malformed JSON in {path}: {exc}") from None
    except RecursionError:
        raise TtevalError(f"malformed JSON in {path}: nested too deeply") from None
    except OSError as exc:
        raise TtevalError(f"cannot read {path}: {exc.strerror or exc}") from None
