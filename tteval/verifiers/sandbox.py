"""Run untrusted Python programs in a throw-away sandbox: namespaces, an unprivileged uid, rlimits, capped output.

How a program runs (`run_python`):

    harness (this process)
      └─ launcher: `python -I -S -c _LAUNCHER cfg`, a new session; sums the CPU time of the program's process
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

The program gets a scrubbed environment (PATH, LANG, HOME and TMPDIR = its working directory, PYTHONHASHSEED=0,
one BLAS/OpenMP thread). It runs with `-s -P` rather than `-I`: those are the two halves of `-I` besides `-E`,
and `-E` would also drop PYTHONHASHSEED, which we pin so set/dict-of-str ordering is reproducible run to run;
the scrubbed environment already gives what `-E` protects against. stdin/stdout/stderr are unlinked temporary
files (no pipe can fill and deadlock); RLIMIT_FSIZE bounds them and we read back at most `output_bytes`
from the start plus a short tail, so a final status line survives a flood of output.
"""

from __future__ import annotations

import ast
import math
import os
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from tteval.errors import TtevalError

_T = TypeVar("_T")

STATUSES = ("ok", "error", "timeout", "killed", "sandbox_error")
TAIL_BYTES = 4096  # kept from the end of a truncated stdout, where status lines go
_BACKSTOP_S = 5.0  # extra seconds the harness waits for the launcher before killing it itself
_UID_RANGE = (200_000, 2**31 - 2)  # random per-run uid/gid; no passwd entry needed
DEFAULT_CPU_S = 10.0  # CPU limit when none is given (MBPP's slowest reference, task 123, needs 3-6 s)
WALL_FACTOR, WALL_EXTRA_S = 3.0, 5.0  # wall backstop = 3 x the CPU limit + 5 s unless `wall_s` is set
POLL_S = 0.1  # how often the launcher sums the CPU time of the program's process tree


@dataclass(frozen=True)
class Limits:
    """Resource limits for one program; the defaults equal the shipped `verifiers/sandbox.yaml`.

    CPU time decides (it does not grow with machine load); wall time is only a backstop against programs that
    wait (sleep, a blocked read), several times the CPU limit, and a run it stops is run once more (`run_python`).
    """

    wall_s: float | None = None  # wall-clock backstop; None: WALL_FACTOR x the CPU limit + WALL_EXTRA_S
    cpu_s: float | None = DEFAULT_CPU_S  # CPU s of the program and all its descendants; None: DEFAULT_CPU_S
    memory_mb: int = 4096  # address space (RLIMIT_AS)
    file_size_mb: int = 64  # largest file written (RLIMIT_FSIZE), stdout/stderr included; also each tmpfs size
    max_processes: int = 64  # processes + threads of the run (RLIMIT_NPROC under a per-run uid)
    output_bytes: int = 1 << 20  # bytes of stdout and of stderr kept
    network: bool = False  # True keeps the host network (no network namespace)

    def __post_init__(self) -> None:
        for name in ("memory_mb", "file_size_mb", "max_processes", "output_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise TtevalError(f"sandbox limit {name} must be a positive number, got {value!r}")
        for name in ("wall_s", "cpu_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 < value < 1e6):
                raise TtevalError(f"sandbox limit {name} must be a positive number of seconds or null, got {value!r}")

    @property
    def cpu_limit_s(self) -> float:
        """The CPU-time limit of the whole run, in seconds (the limit that decides a timeout)."""
        return float(self.cpu_s) if self.cpu_s is not None else DEFAULT_CPU_S

    @property
    def wall_limit_s(self) -> float:
        """The wall-time backstop, in seconds: `wall_s`, else WALL_FACTOR x the CPU limit + WALL_EXTRA_S."""
        return float(self.wall_s) if self.wall_s is not None else WALL_FACTOR * self.cpu_limit_s + WALL_EXTRA_S

    def replace(self, **changes: Any) -> "Limits":
        """A copy with some limits changed (validated again)."""
        return Limits(**{**asdict(self), **changes})


@dataclass
class ExecResult:
    """What happened to one sandboxed program: status, exit code, capped output, wall and CPU time."""

    status: str  # "ok" | "error" (non-zero exit) | "timeout" (CPU; wall backstop twice) | "killed" | "sandbox_error"
    returncode: int | None  # exit code, or -signal when killed; None when it never ran
    stdout: str
    stderr: str
    runtime_s: float  # wall time from fork to reap of the program (its interpreter start included)
    cpu_s: float  # user + system CPU of the program and all its descendants
    limit: Limits
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_tail: str = ""  # the last TAIL_BYTES of stdout when it was truncated, else ""
    isolation: str = ""  # "namespaces" | "userns" | "plain"
    note: str = ""  # why it ended, when not by itself (e.g. "CPU time limit 2 s"), or the sandbox error
    limit_fired: str = ""  # the limit that ended the (last) run: "cpu", "wall" (the backstop), or "" (none)
    reruns: int = 0  # 1 when a first run hit the wall backstop and this result is of the run after it


def load_limits(path: str | Path | None = None, **overrides: Any) -> Limits:
    """Read limits from a YAML file (default: the shipped `verifiers/sandbox.yaml`), then apply `overrides`."""
    import yaml

    from tteval.paths import shipped_dir

    spec_path = Path(path) if path is not None else shipped_dir("verifiers") / "sandbox.yaml"
    try:
        spec = yaml.safe_load(spec_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise TtevalError(f"cannot read sandbox limits from {spec_path}: {exc}") from None
    values = dict(spec.get("limits") or {})
    known = {f.name for f in fields(Limits)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TtevalError(f"unknown sandbox limit(s) {', '.join(unknown)} in {spec_path}; known: {sorted(known)}")
    values.update(overrides)
    return Limits(**values)


def run_python(source: str, limits: Limits, stdin: str | None = None) -> ExecResult:
    """Run one Python program in a fresh sandbox and return its status, capped output and times. A run stopped
    by the wall backstop used less CPU than its limit (it waited, or load starved it), so it is run once more and
    is a timeout only if the backstop stops it again: a verdict does not depend on the load of the moment."""
    if not isinstance(source, str):
        raise TtevalError(f"run_python needs the program as a str, got {type(source).__name__}")
    mode = isolation_mode()

    def once() -> tuple[ExecResult, None]:
        with _Run(source, limits, stdin, mode) as run:
            return run.result(), None

    return rerun_if_starved(once)[0]


def rerun_if_starved(once: Callable[[], tuple[ExecResult, _T]], starved: Callable[[_T], bool] = lambda _: False
                     ) -> tuple[ExecResult, _T]:
    """The load rule, in one place: a run the wall backstop stopped (or that `starved` says waited) used less CPU
    than its limit, so `once()` runs again and the second outcome stands, with `reruns` = 1."""
    first, extra = once()
    if first.limit_fired != "wall" and not starved(extra):
        return first, extra
    again, extra = once()
    again.reruns = 1
    if again.limit_fired == "wall":
        again.note += f" twice (first run: {first.cpu_s:.2f} s CPU in {first.runtime_s:.1f} s)"
    return again, extra


def run_many(
    sources: Sequence[str],
    limits: Limits | Sequence[Limits],
    workers: int = 2,
    stdins: Sequence[str | None] | None = None,
) -> list[ExecResult]:
    """Run many programs, at most `workers` at a time, and return their results in input order."""
    n = len(sources)
    per_limits = _per_item(limits, n, "limits")
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
        self._run = _Run(source_for_fd(self.program_fd), limits, stdin, isolation_mode())
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
    with _Run("pass", Limits(wall_s=10.0), None, mode) as run:
        probe = run.result()
    if probe.status == "ok":
        return mode
    why = probe.note or probe.stderr.strip().splitlines()[-1:] or probe.status
    warnings.warn(f"tteval's code sandbox falls back to plain mode (no namespaces, no network isolation): {why}",
                  RuntimeWarning, stacklevel=3)
    return "plain"


def _per_item(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, Limits):
        return [value] * n
    items = list(value)
    if len(items) != n:
        raise TtevalError(f"got {n} programs but {len(items)} {name}")
    return items


_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_DEVICES = ("null", "zero", "full", "random", "urandom")


@lru_cache(maxsize=1)
def _root_plan() -> dict[str, Any]:
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
_ARCH = {
    "x86_64": {"pivot_root": 155, "memfd_create": 319, "audit_arch": 0xC000003E, "x32_bit": 0x40000000},
    "aarch64": {"pivot_root": 41, "memfd_create": 279, "audit_arch": 0xC00000B7, "x32_bit": 0},
}


def _interpreter_paths_under_tmp() -> list[str]:
    """Interpreter / venv folders that live under /tmp, /var/tmp or /dev/shm (e.g. a CI checkout in /tmp): the
    sandbox's private tmpfs would hide them, so they are bound back read-only."""
    needed = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, os.path.dirname(sys.executable)}
    tmp_roots = ("/tmp", "/var/tmp", "/dev/shm")
    found = sorted({os.path.realpath(p) for p in needed} | {os.path.abspath(p) for p in needed})
    under = [p for p in found if any(p.startswith(r + os.sep) for r in tmp_roots) and os.path.isdir(p)]
    return [p for p in under if not any(p != q and p.startswith(q + os.sep) for q in under)]


def _nproc_limit(max_processes: int, own_uid: bool) -> int:
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


def _program_env(workdir: str) -> dict[str, str]:
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


class _Run:
    """One launch: a private folder for main.py, temp files for the std streams, the report pipe; all cleaned up."""

    def __init__(self, source: str, limits: Limits, stdin: str | None, mode: str):
        self.limits, self.mode = limits, mode
        self.dir = tempfile.mkdtemp(prefix="tteval-sbx-")
        os.chmod(self.dir, 0o700)
        self.program_path = os.path.join(self.dir, "main.py")
        with open(self.program_path, "w", encoding="utf-8", errors="surrogatepass") as fh:
            fh.write(source)
        with tempfile.TemporaryFile() as scratch:  # handed over read-only, so the program cannot rewrite it
            if stdin:
                scratch.write(stdin.encode("utf-8", errors="surrogatepass"))
                scratch.flush()
            fd_path = f"/proc/self/fd/{scratch.fileno()}"
            self.stdin = open(fd_path, "rb") if os.path.exists(fd_path) else os.fdopen(os.dup(scratch.fileno()), "rb")
            self.stdin.seek(0)
        self.stdout = tempfile.TemporaryFile()
        self.stderr = tempfile.TemporaryFile()

    def __enter__(self) -> "_Run":
        return self

    def __exit__(self, *exc: object) -> None:
        for fh in (self.stdin, self.stdout, self.stderr):
            fh.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _config(self, report_fd: int, channel_fd: int | None = None) -> dict[str, Any]:
        lim = self.limits
        namespaces = self.mode in ("namespaces", "userns")
        own_uid = self.mode == "namespaces"  # a fresh uid per run; the other modes keep the caller's
        workdir = os.path.join("/tmp", os.path.basename(self.dir)) if namespaces else self.dir
        uid = secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]) + _UID_RANGE[0]
        return {
            "mode": self.mode,
            "report_fd": report_fd,
            "harness_pid": os.getpid(),
            "program": self.program_path,
            "workdir": workdir,
            "exe": sys.executable,
            "argv": [sys.executable, "-s", *(["-P"] if sys.version_info >= (3, 11) else []), "main.py"],
            "env": _program_env(workdir),
            "wall_s": lim.wall_limit_s,
            "cpu_s": lim.cpu_limit_s,
            "poll_s": POLL_S,
            "rlimits": {
                "RLIMIT_CPU": [math.ceil(lim.cpu_limit_s), math.ceil(lim.cpu_limit_s) + 1],
                "RLIMIT_AS": [lim.memory_mb << 20] * 2,
                "RLIMIT_FSIZE": [lim.file_size_mb << 20] * 2,
                "RLIMIT_NPROC": [_nproc_limit(lim.max_processes, own_uid)] * 2,
                "RLIMIT_CORE": [0, 0],
            },
            "network": bool(lim.network),
            "tmpfs_mb": int(lim.file_size_mb),
            "uid": uid if own_uid else None,
            "root": _root_plan(),
            "arch": _ARCH.get(os.uname().machine),
            "tmp_keep": _interpreter_paths_under_tmp(),
            "channel_fd": channel_fd,
            "root_dir": self.dir,
        }

    def result(self) -> ExecResult:
        """Start the program and wait for it to end."""
        self.start()
        return self.collect()

    def start(self, channel_fd: int | None = None) -> None:
        """Start the launcher; `channel_fd` (one end of a socketpair) stays open in the program, nowhere else."""
        self.proc: subprocess.Popen | None = None
        self.start_error = ""
        self.read_fd, write_fd = os.pipe()
        try:
            cfg = repr(self._config(write_fd, channel_fd))
            fds = (write_fd,) if channel_fd is None else (write_fd, channel_fd)
            try:
                self.proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", "-c", _LAUNCHER, cfg],
                    stdin=self.stdin, stdout=self.stdout, stderr=self.stderr,
                    pass_fds=fds, start_new_session=True, env={}, cwd=self.dir,
                )
            except OSError as exc:
                self.start_error = f"cannot start the sandbox launcher: {exc}"
        finally:
            os.close(write_fd)

    def collect(self) -> ExecResult:
        """Wait for the program (at most its wall limit plus a backstop), then read its report and output."""
        try:
            proc = self.proc
            if proc is None:
                return self._finish(None, None, self.start_error)
            try:
                backstop = not _wait(proc, self.limits.wall_limit_s + _BACKSTOP_S)
            except BaseException:  # e.g. Ctrl-C in the harness: take the run down with us
                _kill_group(proc.pid)
                proc.wait()
                raise
            if backstop:
                _kill_group(proc.pid)
                proc.wait()
            report = _read_all(self.read_fd)
            return self._finish(_parse_report(report), proc.returncode, "launcher backstop" if backstop else "")
        finally:
            os.close(self.read_fd)

    def kill(self) -> None:
        """End the run now (its whole process group)."""
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            _kill_group(self.proc.pid)

    def _finish(self, report: dict[str, Any] | None, launcher_rc: int | None, note: str) -> ExecResult:
        out, out_cut, tail = _read_capped(self.stdout, self.limits.output_bytes, TAIL_BYTES)
        err, err_cut, _ = _read_capped(self.stderr, self.limits.output_bytes, 0)
        base = dict(limit=self.limits, stdout=out, stderr=err, stdout_truncated=out_cut, stderr_truncated=err_cut,
                    stdout_tail=tail, isolation=self.mode)
        if report is None or "status" not in report:
            if note == "launcher backstop":
                return ExecResult(status="timeout", returncode=None, runtime_s=self.limits.wall_limit_s, cpu_s=0.0,
                                  note=f"wall-time backstop {self.limits.wall_limit_s:g} s (the launcher had to be "
                                       "killed)", limit_fired="wall", **base)
            if launcher_rc is not None and launcher_rc < 0:
                return ExecResult(status="killed", returncode=launcher_rc, runtime_s=0.0, cpu_s=0.0,
                                  note=f"the sandbox launcher was killed by signal {-launcher_rc}", **base)
            why = note or f"the sandbox launcher exited with code {launcher_rc} and no report"
            return ExecResult(status="sandbox_error", returncode=None, runtime_s=0.0, cpu_s=0.0, note=why, **base)
        if report["status"] == "sandbox_error":
            return ExecResult(status="sandbox_error", returncode=None, runtime_s=0.0, cpu_s=0.0,
                              note=str(report.get("error", "")), **base)
        rc, cpu, wall = report["returncode"], float(report["cpu"]), float(report["wall"])
        fired = report.get("fired", "")
        cpu_limit = self.limits.cpu_limit_s
        rlimit_cpu = math.ceil(cpu_limit)  # RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL a second later
        rlimit_hit = rc < 0 and (-rc == signal.SIGXCPU or (-rc == signal.SIGKILL and cpu >= rlimit_cpu - 0.05))
        if fired == "cpu" or rlimit_hit:
            status, note, fired = "timeout", f"CPU time limit {cpu_limit:g} s", "cpu"
        elif fired == "wall":
            status, note = "timeout", f"wall-time backstop {self.limits.wall_limit_s:g} s ({cpu:.2f} s CPU used)"
        elif rc < 0:
            status, note = "killed", f"killed by signal {signal.Signals(-rc).name if -rc in _SIGNALS else -rc}"
        else:
            status, note = ("ok" if rc == 0 else "error"), ""
        return ExecResult(status=status, returncode=rc, runtime_s=wall, cpu_s=cpu, note=note, limit_fired=fired, **base)


_SIGNALS = {int(s) for s in signal.Signals}


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for `proc` to exit within `timeout` s; True if it did. A pidfd wakes us at once (Popen.wait polls)."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not ready:
        return False
    proc.wait()
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_all(fd: int) -> bytes:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_report(raw: bytes) -> dict[str, Any] | None:
    report: dict[str, Any] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            item = ast.literal_eval(line)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(item, dict):
            report.update(item)
    return report or None


def _read_capped(fh: Any, cap: int, tail: int) -> tuple[str, bool, str]:
    """(first `cap` bytes, whether there was more, last `tail` bytes past the cap) of a temp file, decoded."""
    size = os.fstat(fh.fileno()).st_size
    fh.seek(0)
    head = fh.read(min(size, cap))
    cut = size > cap
    end = b""
    if cut and tail:
        fh.seek(max(cap, size - tail))
        end = fh.read(tail)
    return head.decode("utf-8", errors="replace"), cut, end.decode("utf-8", errors="replace")


# The launcher runs as `python -I -S -c _LAUNCHER <config>` with only the standard library; the config is the
# repr of a dict of literals that the harness wrote (json would cost the launcher 6 ms of imports). Its own
# failures are reported as {"status": "sandbox_error"}; the program's outcome as status/returncode/wall/cpu.
_LAUNCHER = r'''
import ctypes, os, resource, select, signal, sys, time

cfg = eval(sys.argv[1], {"__builtins__": {}})
REPORT = cfg["report_fd"]
os.set_inheritable(REPORT, False)


def report(**items):
    os.write(REPORT, (repr(items) + "\n").encode())


libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.syscall.restype = ctypes.c_long
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
MNT_DETACH, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 2, 22, 2
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


prctl = getattr(libc, "prctl", lambda *args: 0)  # Linux only; plain mode elsewhere runs without it
prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
if os.getppid() != cfg["harness_pid"]:
    os._exit(111)
namespaces = cfg["mode"] in ("namespaces", "userns")
if namespaces:
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | (0 if cfg["network"] else CLONE_NEWNET)
    if cfg["mode"] == "userns":
        flags |= CLONE_NEWUSER
    outer_uid, outer_gid = os.getuid(), os.getgid()
    if libc.unshare(flags) != 0:
        report(status="sandbox_error", error="unshare: " + os.strerror(ctypes.get_errno()))
        os._exit(0)
    if cfg["mode"] == "userns":  # map only our own uid/gid, to themselves
        for name, text in (("setgroups", "deny"), ("uid_map", f"{outer_uid} {outer_uid} 1"),
                           ("gid_map", f"{outer_gid} {outer_gid} 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)
with open(cfg["program"], "rb") as fh:
    source = fh.read()


def remount_read_only():
    """Bind-remount every mount read-only, keeping its nosuid/nodev/noexec flags (a user namespace must)."""
    keep = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    with open("/proc/self/mountinfo") as fh:
        entries = [line.split() for line in fh]
    for fields_ in entries:
        target = fields_[4].encode().decode("unicode_escape")
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in fields_[5].split(","):
            flags |= keep.get(option, 0)
        try:
            mount(None, target, None, flags)
        except OSError:
            pass  # best effort: the uid drop (root mode) still guards what cannot be remounted


def build_filesystem():
    """In the new mount namespace: a tmpfs root holding only the system dirs, the interpreter and a few devices,
    all read-only; private tmpfs /tmp and /dev/shm; a fresh /proc; then pivot_root into it (the host's tree,
    its datasets, project checkout and socket files, is no longer reachable)."""
    plan, arch = cfg["root"], cfg["arch"]
    if arch is None:
        raise OSError(0, "no pivot_root syscall number for this machine")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = cfg["root_dir"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for d in ("tmp", "var/tmp", "dev/shm", "proc"):
        os.makedirs(os.path.join(root, d), mode=0o755, exist_ok=True)
    for name in plan["devices"]:
        host = "/dev/" + name
        if os.path.exists(host):
            open(os.path.join(root, "dev", name), "w").close()
            mount(host, os.path.join(root, "dev", name), None, MS_BIND)
    for path in plan["binds"]:
        target = root + path
        os.makedirs(target, mode=0o755, exist_ok=True)
        mount(path, target, None, MS_BIND | MS_REC)
    for path, dest in plan["links"]:
        os.symlink(dest, root + path)
    for path in plan["hide"]:
        if os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    attr = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, root.encode(), AT_RECURSIVE, ctypes.byref(attr),
                    ctypes.sizeof(attr)) != 0:
        remount_read_only()  # kernels before 5.12 have no mount_setattr: remount each mount point instead
    size = f"size={cfg['tmpfs_mb']}m,mode=1777"
    for d in ("tmp", "var/tmp", "dev/shm"):
        mount("tmpfs", os.path.join(root, d), "tmpfs", MS_NOSUID | MS_NODEV, size)
    for p in cfg["tmp_keep"]:  # the interpreter's own folders under a tmp dir, bound back read-only
        os.makedirs(root + p, mode=0o755, exist_ok=True)
        mount(p, root + p, None, MS_BIND | MS_REC)
        mount(None, root + p, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    for path in plan["hide"]:  # hidden folders inside those (a venv under /tmp): hidden again, read-only
        if any(path.startswith(p + os.sep) for p in cfg["tmp_keep"]) and os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=755")
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # SysV shared memory of this IPC namespace: at most one tmpfs size in all (detached segments escape RLIMIT_AS)
    shm_bytes = cfg["tmpfs_mb"] << 20
    for name, value in (("shmmax", shm_bytes), ("shmall", shm_bytes // os.sysconf("SC_PAGE_SIZE"))):
        try:
            with open(os.path.join(root, "proc/sys/kernel", name), "w") as fh:
                fh.write(str(value))
        except OSError:
            pass  # best effort (a user namespace may not own these)
    os.chdir(root)
    check(libc.syscall(arch["pivot_root"], b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def deny_memfd():
    """seccomp: memfd_create fails with EPERM (its memory escapes RLIMIT_AS, and this machine may have no
    cgroup v2 memory controller to bound it); other ABIs (x32, i386) get ENOSYS for every call."""
    import struct
    arch = cfg["arch"]
    if arch is None:
        return
    ret_errno = 0x00050000
    code = [(0x20, 0, 0, 4), (0x15, 1, 0, arch["audit_arch"]), (0x06, 0, 0, ret_errno | 38), (0x20, 0, 0, 0),
            (0x15, 2, 0, arch["memfd_create"]), (0x35, 1, 0, arch["x32_bit"] or 0xFFFFFFFF),
            (0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, ret_errno | 1)]
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in code))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(code), ctypes.addressof(buf))
    check(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def child():
    os.setsid()
    workdir, uid = cfg["workdir"], cfg["uid"]
    if namespaces:
        build_filesystem()
        os.makedirs(workdir, mode=0o700, exist_ok=True)
        with open(os.path.join(workdir, "main.py"), "wb") as fh:
            fh.write(source)
        if uid is not None:
            os.chown(os.path.join(workdir, "main.py"), uid, uid)
            os.chown(workdir, uid, uid)
    for name, (soft, hard) in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    check(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if namespaces:
        deny_memfd()
    os.chdir(workdir)
    os.execve(cfg["exe"], cfg["argv"], cfg["env"])


err_r, err_w = os.pipe()
# The host's /proc, opened before the program's mount namespace (which we share) gets its own /proc on top; the
# launcher reads the program's process tree through it. Close-on-exec, so the program never holds it.
PROC = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.close(err_r)
        child()
    except BaseException as exc:
        try:
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:2000])
        finally:
            os._exit(127)
os.close(err_w)
if cfg["channel_fd"] is not None:
    os.close(cfg["channel_fd"])  # the program holds the only copy: its end closes when it ends
TICK = os.sysconf("SC_CLK_TCK")


def read_proc(path):
    fd = os.open(path, os.O_RDONLY, dir_fd=PROC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def list_proc(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY, dir_fd=PROC)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


try:
    HAVE_CHILDREN = read_proc(f"{os.getpid()}/task/{os.getpid()}/children") is not None
except OSError:
    HAVE_CHILDREN = False


def kill_program():
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def process_tree():
    """Host pids of the program and its descendants (zombies included: they keep their CPU times)."""
    if not HAVE_CHILDREN:  # no /proc/PID/task/TID/children: the program's session instead
        found = []
        for name in list_proc("."):
            if name.isdigit():
                try:
                    data = read_proc(f"{name}/stat")
                except OSError:
                    continue
                if int(data[data.rindex(b")") + 2:].split()[3]) == pid:
                    found.append(int(name))
        return found
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in list_proc(f"{p}/task"):
                todo.extend(int(c) for c in read_proc(f"{p}/task/{tid}/children").split())
        except (OSError, ValueError):
            pass
    return found


seen, gone_cpu = {}, 0.0  # pid -> (parent pid, CPU s); CPU of processes that left the tree unreaped by it


def tree_cpu():
    """CPU seconds of the program's whole process tree: each process's own time plus its reaped children's;
    a process that left the tree without its parent reaping it keeps the time it had when last seen."""
    global gone_cpu
    now = {}
    for p in process_tree():
        try:
            data = read_proc(f"{p}/stat")
            f = data[data.rindex(b")") + 2:].split()
            now[p] = (int(f[1]), (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICK)
        except (OSError, ValueError, IndexError):
            continue
    for p, (parent, cpu) in seen.items():
        if p not in now and parent not in now:
            gone_cpu += cpu
    seen.clear()
    seen.update(now)
    return gone_cpu + sum(cpu for _, cpu in now.values())


try:
    waker = os.pidfd_open(pid)  # readable when the program exits: no polling delay at the end
except (AttributeError, OSError):
    waker = None
fired, peak_cpu, next_poll = "", 0.0, 0.0
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    elapsed = time.perf_counter() - start
    if not fired and (elapsed >= next_poll or elapsed >= cfg["wall_s"]):
        next_poll = elapsed + cfg["poll_s"]
        peak_cpu = max(peak_cpu, tree_cpu())
        fired = "cpu" if peak_cpu > cfg["cpu_s"] else "wall" if elapsed >= cfg["wall_s"] else ""
        if fired:
            kill_program()
    pause = 1.0 if fired else max(0.001, min(next_poll, cfg["wall_s"]) - elapsed)
    if waker is not None:
        select.select([waker], [], [], pause)
    else:
        time.sleep(min(pause, 0.01))
wall = time.perf_counter() - start
if not namespaces:
    kill_program()
setup_error = os.read(err_r, 4096).decode(errors="replace")
if setup_error:
    report(status="sandbox_error", error="sandbox setup failed: " + setup_error)
else:
    rc = os.waitstatus_to_exitcode(status)
    cpu = max(peak_cpu, usage.ru_utime + usage.ru_stime)
    report(status="done", returncode=rc, wall=wall, cpu=cpu, fired=fired)
'''
