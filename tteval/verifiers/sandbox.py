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
from tteval.verifiers.sandbox_plan import ARCH, interpreter_paths_under_tmp, nproc_limit, program_env, root_plan
from tteval.verifiers.sandbox_zygote import LAUNCHER as _LAUNCHER
from tteval.verifiers.sandbox_zygote import ForkedLauncher, spawn_forked, use_zygote

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
            "env": program_env(workdir),
            "wall_s": lim.wall_limit_s,
            "cpu_s": lim.cpu_limit_s,
            "poll_s": POLL_S,
            "rlimits": {
                "RLIMIT_CPU": [math.ceil(lim.cpu_limit_s), math.ceil(lim.cpu_limit_s) + 1],
                "RLIMIT_AS": [lim.memory_mb << 20] * 2,
                "RLIMIT_FSIZE": [lim.file_size_mb << 20] * 2,
                "RLIMIT_NPROC": [nproc_limit(lim.max_processes, own_uid)] * 2,
                "RLIMIT_CORE": [0, 0],
            },
            "network": bool(lim.network),
            "tmpfs_mb": int(lim.file_size_mb),
            "uid": uid if own_uid else None,
            "root": root_plan(),
            "arch": ARCH.get(os.uname().machine),
            "tmp_keep": interpreter_paths_under_tmp(),
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
                if use_zygote():
                    self.proc = spawn_forked(cfg, [self.stdin, self.stdout, self.stderr], fds)
                else:
                    self.proc = subprocess.Popen(
                        [sys.executable, "-I", "-S", _LAUNCHER, cfg],
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


def _wait(proc: "subprocess.Popen | ForkedLauncher", timeout: float) -> bool:
    """Wait for `proc` to exit within `timeout` s; True if it did. A pidfd wakes us at once (Popen.wait polls)."""
    if isinstance(proc, ForkedLauncher):
        return proc.wait(timeout)
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
