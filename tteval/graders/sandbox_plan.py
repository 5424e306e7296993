"""What a sandbox run is given: the minimal root's contents, syscall numbers per machine, rlimit budget, environment.

Read by `tteval.graders.sandbox` into each run's config for the launcher (`launcher.py`).
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any


_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_DEVICES = ("null", "zero", "full", "random", "urandom")


@lru_cache(maxsize=1)
def root_plan() -> dict[str, Any]:
    """What the sandbox's minimal root shows, read-only: the system dirs (symlinks recreated), the interpreter's
    prefixes, a few /dev nodes; and folders hidden again under them (installed copies of this package, whose
    data files hold the datasets' tests and gold solutions). Nothing else of the host: no project checkout,
    no datasets, no /run, /srv, /home, /root or host /tmp."""
    links, binds = [], set()
    for top in _SYSTEM_DIRS:
        if os.path.islink(top):
            links.append([top, os.readlink(top)])
        elif os.path.isdir(top):
            binds.add(top)
    prefixes = {sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix,
                str(Path(os.path.realpath(sys.executable)).parent.parent), os.path.dirname(sys.executable)}
    tmp_roots = ("/tmp", "/var/tmp", "/dev/shm")
    for raw in prefixes:
        for path in {os.path.abspath(raw), os.path.realpath(raw)}:
            if os.path.isdir(path) and not any(path == r or path.startswith(r + os.sep) for r in tmp_roots):
                binds.add(path)
    binds_sorted = sorted(b for b in binds if not any(b != q and b.startswith(q + os.sep) for q in binds))
    hide = set()
    for raw in prefixes:
        for site in Path(raw).glob("lib/python*/site-packages"):
            for entry in site.glob("tteval*"):
                if entry.is_dir() and not entry.is_symlink():
                    hide.add(str(entry))
    return {"binds": binds_sorted, "links": links, "hide": sorted(hide), "devices": list(_DEVICES)}


# Syscall numbers the launcher needs that libc does not wrap, and the seccomp audit arch, per machine.
ARCH = {
    "x86_64": {"pivot_root": 155, "memfd_create": 319, "audit_arch": 0xC000003E, "x32_bit": 0x40000000},
    "aarch64": {"pivot_root": 41, "memfd_create": 279, "audit_arch": 0xC00000B7, "x32_bit": 0},
}


def interpreter_paths_under_tmp() -> list[str]:
    """Interpreter / venv folders that live under /tmp, /var/tmp or /dev/shm (e.g. a CI checkout in /tmp): the
    sandbox's private tmpfs would hide them, so they are bound back read-only."""
    needed = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable)}
    tmp_roots = ("/tmp", "/var/tmp", "/dev/shm")
    found = sorted({os.path.realpath(p) for p in needed} | {os.path.abspath(p) for p in needed})
    under = [p for p in found if any(p.startswith(r + os.sep) for r in tmp_roots) and os.path.isdir(p)]
    return [p for p in under if not any(p != q and p.startswith(q + os.sep) for q in under)]


def nproc_limit(max_processes: int, own_uid: bool) -> int:
    """RLIMIT_NPROC counts every process of the real uid: under a fresh uid it is the run's own budget; otherwise
    it must leave room for the user's other processes (and root ignores it)."""
    if own_uid:
        return max_processes
    uid = os.getuid()
    owned = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                owned += entry.stat().st_uid == uid
            except OSError:
                continue
    return max_processes + owned


def program_env(workdir: str) -> dict[str, str]:
    """The program's whole environment: scrubbed, hash seed pinned, one BLAS/OpenMP thread."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
