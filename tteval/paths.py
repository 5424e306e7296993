"""Where the shipped task specs and verifier templates live: in the wheel (`tteval/_tasks`) or the repo (`tasks/`)."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """Return the shipped data folder `tasks` or `verifiers`, installed or from a source checkout."""
    for candidate in (_PKG / f"_{name}", _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"tteval's shipped '{name}' folder is missing from {_PKG}")
