"""Where a run came from, recorded in run.json (never in the run id): the command line, tteval's version and git
revision, and content hashes of the model file and the task's data, so a published number can be traced."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

_SOURCE = Path(__file__).resolve().parent.parent


REMEMBER_HASH_BYTES = 16 << 20  # files this large have their hash remembered (a 4 GB GGUF takes ~8 s to hash)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes. A file of 16 MiB or more has it remembered under the cache folder, keyed on the
    file's path and stat (device, inode, size, mtime, ctime: any write changes ctime), so a model is hashed once."""
    stat = os.stat(path)
    if stat.st_size < REMEMBER_HASH_BYTES:
        return _sha256(path)
    from tteval.cache import cache_root
    from tteval.results import write_atomic

    identity = (os.path.realpath(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    entry = cache_root() / "file-sha256" / hashlib.sha256(repr(identity).encode()).hexdigest()
    try:
        known = entry.read_text(encoding="ascii").strip()
        if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
            return known
    except (OSError, ValueError):
        pass
    digest = _sha256(path)
    try:
        write_atomic({entry: digest.encode()})
    except Exception:  # a read-only cache folder costs the next run a re-hash, nothing else
        pass
    return digest


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The commit of tteval's source checkout (with "+dirty" for uncommitted changes), or None when installed."""
    if not (_SOURCE / ".git").exists():
        return None
    try:
        rev = subprocess.run(["git", "-C", str(_SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(_SOURCE), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (rev + ("+dirty" if dirty else "")) if rev else None


def run_provenance(model_file: str | None, data_file: Path | None) -> dict[str, Any]:
    """The record for run.json's "provenance": command, version, git revision, model and data hashes."""
    from tteval import __version__

    out: dict[str, Any] = {"command": shlex.join(["tteval", *sys.argv[1:]]) if Path(sys.argv[0]).name == "tteval"
                           else shlex.join(sys.argv), "tteval_version": __version__, "git_revision": git_revision()}
    if model_file and Path(model_file).is_file():
        out["model_file"] = str(model_file)
        out["model_sha256"] = file_sha256(str(model_file))
    if data_file is not None and data_file.is_file():
        out["data_file"] = data_file.name
        out["data_sha256"] = file_sha256(str(data_file))
    return out
