"""A content-addressed generation cache (SQLite) in front of any backend, so no request is paid for twice."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from tteval.backends.base import Backend, Completion, Request


def cache_root() -> Path:
    """Where tteval keeps what it can recompute (generations, ENAMEL tests, file hashes): `$TTEVAL_CACHE_DIR`, else
    `~/.cache/tteval/`."""
    return Path(os.environ.get("TTEVAL_CACHE_DIR") or Path.home() / ".cache" / "tteval")


def default_cache_path() -> Path:
    """The generation cache: `generations.sqlite` under `cache_root()`."""
    return cache_root() / "generations.sqlite"


def request_key(backend: str, model: str, request: Request) -> str:
    """The hash of everything that determines a request's completions: backend, model, prompt, sampling params."""
    fields = asdict(request)
    if not fields["extra"]:
        del fields["extra"]  # requests without --gen-kwargs keep the keys they had before it existed
    payload = json.dumps({"backend": backend, "model": model, **fields}, sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()


def cacheable(request: Request) -> bool:
    """Only reproducible requests are cached: greedy ones, or sampled ones with an explicit seed."""
    return request.temperature == 0 or request.seed is not None


class CachedBackend:
    """Wraps a backend: hits come from SQLite, misses go to the backend in one batched call and are stored."""

    def __init__(self, backend: Backend, path: Path | None = None):
        self.backend = backend
        self.name, self.model, self.usage = backend.name, backend.model, backend.usage
        self.model_params = getattr(backend, "model_params", None)
        self.path = Path(path) if path else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, completions TEXT NOT NULL)")
        self.hits = self.misses = 0

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        keys = [request_key(self.name, self.model, r) if cacheable(r) else None for r in requests]
        found: dict[str, list[Completion]] = {}
        for key in {k for k in keys if k}:
            row = self._db.execute("SELECT completions FROM generations WHERE key = ?", (key,)).fetchone()
            if row:
                found[key] = [Completion(**c) for c in json.loads(row[0])]
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(requests) - len(missing)
        self.misses += len(missing)
        fresh = self.backend.generate([requests[i] for i in missing]) if missing else []
        with self._db:
            for i, comps in zip(missing, fresh):
                if keys[i]:
                    data = json.dumps([asdict(c) for c in comps])
                    self._db.execute("INSERT OR REPLACE INTO generations VALUES (?, ?)", (keys[i], data))
        by_index = dict(zip(missing, fresh))
        return [found[k] if k in found else by_index[i] for i, k in enumerate(keys)]

    def apply_chat_template(self, messages):
        return self.backend.apply_chat_template(messages)

    def close(self) -> str | None:
        self._db.close()
        return self.backend.close()
