"""Dataset rows of a task: its vendored JSONL file (read directly when `datasets` would give the rows back
unchanged) or a hub dataset through `datasets`, with one clear line for a bad file or an unreachable hub."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from tteval.errors import TtevalError, first_line
from tteval.jsonl import json_object

DATA_SOURCES = ("auto", "local", "hub")  # `--data-source`: the vendored file else the hub, only the file, only the hub


def load_rows(name: str, local: Path | None, hub: dict[str, Any] | None, data_source: str) -> list[dict[str, Any]]:
    """The rows of task `name`: its `local` file (`data_source` auto: when it exists; local: always), else the
    `hub` dataset (`{path, name, split}`)."""
    use_local = data_source == "local" or (data_source == "auto" and local is not None and local.is_file())
    if data_source not in DATA_SOURCES:
        raise TtevalError(f"--data-source must be auto, local or hub, got {data_source!r}")
    if use_local and local is not None and local.is_file() and local.suffix in (".jsonl", ".ndjson"):
        rows = check_jsonl(name, local)
        if plain_table(rows):  # what datasets would return, without its import and Arrow round trip (~1 s)
            return rows
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    if use_local:
        if local is None or not local.is_file():
            raise TtevalError(f"task '{name}': data file not found: {local}")
        if local.suffix in (".jsonl", ".ndjson"):
            pass  # checked above
        elif local.stat().st_size == 0:
            raise TtevalError(f"task '{name}': the dataset is empty: {local}")
        try:
            with _quiet_datasets():
                ds = datasets.load_dataset("json", data_files=str(local), split="train")
        except Exception as exc:  # datasets wraps JSON errors in several exception types
            raise TtevalError(f"task '{name}': cannot read {local}: {_root_cause(exc)}") from None
        return [dict(r) for r in ds]
    if not hub:
        raise TtevalError(f"task '{name}' names no hub dataset and its local file is missing: {local}")
    try:
        with _quiet_datasets():
            ds = datasets.load_dataset(hub["path"], hub.get("name"), split=hub.get("split", "test"))
    except Exception as exc:
        chain = " ".join(_chain_messages(exc)).lower()
        offline = any(w in chain for w in ("not cached", "connection", "name or service", "offline", "resolve host"))
        hint = " (the hub is unreachable and the dataset is not in the local cache)" if offline else ""
        raise TtevalError(
            f"task '{name}': cannot load hub dataset {hub['path']}: {_root_cause(exc)}{hint}"
        ) from None
    return [dict(r) for r in ds]


def plain_table(rows: list[dict[str, Any]]) -> bool:
    """Whether `datasets` would give these JSON rows back unchanged: the same keys in the same order in every row,
    each column of one type (str, int, float, bool, None, or lists of str), so no column is unified or widened."""
    if not rows:
        return False
    keys = list(rows[0])
    for key in keys:
        kinds = {type(r.get(key)) for r in rows}
        if len(kinds) != 1 or not kinds <= {str, int, float, bool, type(None), list}:
            return False
        if list in kinds and not all(isinstance(v, str) for r in rows for v in r[key]):
            return False
        if int in kinds and not all(-(2**63) <= r[key] < 2**63 for r in rows):
            return False
    return all(list(r) == keys for r in rows)


def check_jsonl(name: str, path: Path) -> list[dict[str, Any]]:
    """A JSONL data file holds at least one JSON object and nothing else (else say which line is wrong); its rows."""
    rows = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            where = f"task '{name}': {path}:{lineno}"
            row = json_object(raw, where)
            if (b"\\ud" in raw or b"\\uD" in raw) and _has_lone_surrogate(row):
                raise TtevalError(f"{where}: a string holds a lone surrogate escape (\\ud800-\\udfff), not a character")
            rows.append(row)
    if not rows:
        raise TtevalError(f"task '{name}': the dataset is empty: {path}")
    return rows


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= c <= "\udfff" for c in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


@contextlib.contextmanager
def _quiet_datasets():
    """Silence `datasets`' own error log lines while loading: the failure is reported as one TtevalError."""
    loggers = [logging.getLogger(name) for name in ("datasets", "huggingface_hub")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _chain_messages(exc: BaseException) -> list[str]:
    out, seen = [], set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        out.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return out


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost chained exception (datasets wraps the real reason)."""
    seen = set()
    while (exc.__cause__ or exc.__context__) is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return first_line(exc)
