"""Run untrusted Python programs in a throw-away sandbox: namespaces, an unprivileged uid, rlimits, capped output.

How a program runs (`run_python`):

    harness (this process)
      └─ launcher: `python -I -S launcher.py cfg`, a new session; sums the CPU time of the program's process
         tree every 0.1 s against the CPU limit, holds the wall-time backstop, reports over a pipe
           └─ program: `python -s -P main.py`, set up between fork and exec

Isolation modes (`isolation_mode()` probes once which one works):

* ``namespaces`` (running as root, the case here): the launcher calls unshare(2) for new PID, mount, IPC and
  network namespaces. The program is PID 1 of its PID namespace, so when it ends or is killed every process it
  started dies with it (fork bombs, daemons that `setsid()` away); it cannot see or signal the harness. Its root
  is a fresh tmpfs, entered with pivot_root, that holds only the system dirs (/usr, /etc, the /bin, /lib
  symlinks), the interpreter's prefixes (venv included, minus any installed copy of tteval, whose data files
  hold the datasets), /dev/null, zero, full, random, urandom, a fresh /proc and size-capped private tmpfs on
  /tmp, /var/tmp and /dev/shm; all read-only but those tmpfs. So the project checkout, the datasets, /run (host
  Unix socket files), /srv, /home, the rest of /root and the host's /tmp are not there. SysV shared memory,
  message queues and POSIX queues live in the run's IPC namespace and die with it (its SysV shared memory is
  capped at one tmpfs size in all). The network namespace has
  only a loopback device that is down: no connection leaves, not even to 127.0.0.1 of the host (abstract Unix
  sockets are per network namespace too). Then it drops to a random unprivileged uid/gid (one per run, so
  RLIMIT_NPROC, which root ignores and which counts per user, bounds exactly this run's processes and threads),
  sets no_new_privs, a parent-death signal and a seccomp filter under which memfd_create fails with EPERM (its
  pages escape RLIMIT_AS and this machine has no cgroup v2 memory controller to bound them; tmpfs files are
  bounded by the tmpfs sizes), and execs.
* ``userns`` (not root, unprivileged user namespaces allowed): the same namespaces and minimal root inside a new
  user namespace that maps only the caller's own uid, so the program keeps the caller's uid (but sees none of
  the caller's files beyond the minimal root), its processes die with it, it cannot see or signal the harness
  and has no network. RLIMIT_NPROC then counts all the caller's processes, so
  it is set to `max_processes` plus those already running.
* ``plain`` (none of the above works): a new session, the same rlimits, and a kill of the program's process
  group at the end; no network isolation, no uid change, and a descendant that calls `setsid()` can outlive
  the run.

Force a mode with TTEVAL_SANDBOX_MODE=namespaces|userns|plain.

`Session` starts a program with one end of a socketpair open in it (and nowhere else: the launcher closes its
copy), for the code checker's call-by-call exchange; `run_python` is a session with no exchange.

The parts: `sandbox_limits.py` (`Limits`, `ExecResult`, the rerun rule), `sandbox_run.py` (one launch and its
report), `sandbox_plan.py` (the minimal root, environment, rlimits), `sandbox_zygote.py` and `launcher.py`.

The program gets a scrubbed environment (PATH, LANG, HOME and TMPDIR = its working directory, PYTHONHASHSEED=0,
one BLAS/OpenMP thread). It runs with `-s -P` rather than `-I`: those are the two halves of `-I` besides `-E`,
and `-E` would also drop PYTHONHASHSEED, which we pin so set/dict-of-str ordering is reproducible run to run;
the scrubbed environment already gives what `-E` protects against. stdin/stdout/stderr are unlinked temporary
files (no pipe can fill and deadlock); RLIMIT_FSIZE bounds them and we read back at most `output_bytes`
from the start plus a short tail, so a final status line survives a flood of output.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Callable, Sequence

from tteval.errors import TtevalError
from tteval.graders.sandbox_limits import ExecResult, Limits, per_program, rerun_if_starved
from tteval.graders.sandbox_run import SandboxRun


def run_python(source: str, limits: Limits, stdin: str | None = None) -> ExecResult:
    """Run one Python program in a fresh sandbox and return its status, capped output and times. A run stopped
    by the wall backstop used less CPU than its limit (it waited, or load starved it), so it is run once more and
    is a timeout only if the backstop stops it again: a verdict does not depend on the load of the moment."""
    if not isinstance(source, str):
        raise TtevalError(f"run_python needs the program as a str, got {type(source).__name__}")
    mode = isolation_mode()

    def once() -> tuple[ExecResult, None]:
        with SandboxRun(source, limits, stdin, mode) as run:
            return run.result(), None

    return rerun_if_starved(once)[0]


def run_many(
    sources: Sequence[str],
    limits: Limits | Sequence[Limits],
    workers: int = 2,
    stdins: Sequence[str | None] | None = None,
) -> list[ExecResult]:
    """Run many programs, at most `workers` at a time, and return their results in input order."""
    n = len(sources)
    per_limits = per_program(limits, n, "limits")
    per_stdin = list(stdins) if stdins is not None else [None] * n
    if len(per_stdin) != n:
        raise TtevalError(f"run_many got {n} sources but {len(per_stdin)} stdins")
    if workers < 1:
        raise TtevalError(f"workers must be at least 1, got {workers}")
    if n == 0:
        return []
    if workers == 1 or n == 1:
        return [run_python(s, lim, inp) for s, lim, inp in zip(sources, per_limits, per_stdin)]
    with ThreadPoolExecutor(max_workers=min(workers, n), thread_name_prefix="tteval-sandbox") as pool:
        return list(pool.map(run_python, sources, per_limits, per_stdin))


class Session:
    """A sandboxed program with a private socket to the harness, for an exchange while it runs (the code checker
    sends it one call at a time). `channel` is the harness's end; the program's end is the only other copy, held by
    the program (fd `program_fd`). `wait()` gives the program's ExecResult once it has ended or was killed."""

    def __init__(self, source_for_fd: "Callable[[int], str]", limits: Limits, stdin: str | None = None):
        self.channel, theirs = socket.socketpair()
        self.program_fd = theirs.fileno()
        self._run = SandboxRun(source_for_fd(self.program_fd), limits, stdin, isolation_mode())
        try:
            self._run.start(channel_fd=self.program_fd)
        finally:
            theirs.close()
        self._result: ExecResult | None = None

    def wait(self) -> ExecResult:
        """The program's result: waits for it to end (it ends at the latest at its wall limit)."""
        if self._result is None:
            self.channel.close()  # EOF tells a program still reading that the exchange is over
            self._result = self._run.collect()
        return self._result

    def close(self) -> None:
        """Kill the program if it still runs, collect it, remove its files."""
        try:
            if self._result is None:
                self._run.kill()
                self.wait()
        finally:
            self._run.__exit__(None, None, None)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def isolation_mode() -> str:
    """The strongest isolation that works here: 'namespaces' (root), 'userns' (unprivileged), else 'plain'."""
    forced = os.environ.get("TTEVAL_SANDBOX_MODE", "").strip().lower()
    if forced in MODES:
        return forced
    if forced:
        raise TtevalError(f"TTEVAL_SANDBOX_MODE must be one of {', '.join(MODES)}, got {forced!r}")
    return _probe_mode()


MODES = ("namespaces", "userns", "plain")


@lru_cache(maxsize=1)
def _probe_mode() -> str:
    """Try the full sandbox once on a trivial program; fall back a mode at a time."""
    if not sys.platform.startswith("linux"):
        return "plain"
    mode = "namespaces" if os.geteuid() == 0 else "userns"  # root in a user namespace could undo read-only mounts
    with SandboxRun("pass", Limits(wall_s=10.0), None, mode) as run:
        probe = run.result()
    if probe.status == "ok":
        return mode
    why = probe.note or probe.stderr.strip().splitlines()[-1:] or probe.status
    warnings.warn(f"tteval's code sandbox falls back to plain mode (no namespaces, no network isolation): {why}",
                  RuntimeWarning, stacklevel=3)
    return "plain"
