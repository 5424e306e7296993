"""Run folders on disk: append-only fsynced samples.jsonl, atomically replaced run.json and metrics.json."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from tteval.errors import TtevalError
from tteval.jsonl import json_object

SAMPLE_FIELDS = ("task_id", "sample_index", "completion", "answer", "correct", "num_tokens", "logprob", "scores")


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync it, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path) -> Any:
    """Read a JSON file, or raise a one-line TtevalError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TtevalError(f"file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TtevalError(f"malformed JSON in {path}: {exc}") from None


@dataclass
class RunDir:
    """One run's folder: `run.json` (config, versions, timings), `samples.jsonl`, `metrics.json`."""

    path: Path

    @property
    def samples_path(self) -> Path:
        return self.path / "samples.jsonl"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    def recover_samples(self) -> list[dict[str, Any]]:
        """Read the samples written so far; a half-written last line (a crash mid-write) is cut off the file."""
        p = self.samples_path
        if not p.exists():
            return []
        data = p.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            with open(p, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
            data = data[:end]
        records = []
        for lineno, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            record = json_object(line, f"{p}:{lineno}: malformed sample line")
            if not isinstance(record.get("task_id"), str):
                raise TtevalError(f"{p}:{lineno}: malformed sample line: no string 'task_id'")
            records.append(record)
        return records

    def trim(self, keep: Callable[[list[dict[str, Any]]], int]) -> dict[str, list[dict[str, Any]]]:
        """Keep the first keep(records) samples of each problem (in sample order), rewriting the file if any go.

        Returns the kept samples per problem that has any: what a resumed run continues from."""
        records = self.recover_samples()
        groups: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            groups.setdefault(r["task_id"], []).append(r)
        kept: dict[str, list[dict[str, Any]]] = {}
        for task_id, group in groups.items():
            group.sort(key=lambda r: r.get("sample_index", 0))
            count = keep(group)
            if count > 0:
                kept[task_id] = group[:count]
        if sum(map(len, kept.values())) < len(records):
            ids = {id(r) for g in kept.values() for r in g}
            tmp = self.samples_path.with_suffix(".jsonl.tmp")
            tmp.unlink(missing_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, default=_json_default) + "\n" for r in records if id(r) in ids))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.samples_path)
        return kept

    def append_samples(self, records: Iterable[dict[str, Any]]) -> None:
        """Append one JSON line per record and fsync, so that a batch is either on disk or re-generated."""
        self.path.mkdir(parents=True, exist_ok=True)
        payload = "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
        with open(self.samples_path, "a", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
