"""One sandbox launch: the program's private folder and std-stream files, the launcher (forked from the warm
zygote or started afresh) with its config, and the launcher's report read back into an `ExecResult`."""

from __future__ import annotations

import ast
import math
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from typing import Any

from tteval.graders.sandbox_limits import ExecResult, Limits
from tteval.graders.sandbox_plan import ARCH, interpreter_paths_under_tmp, nproc_limit, program_env, root_plan
from tteval.graders.sandbox_zygote import LAUNCHER as _LAUNCHER
from tteval.graders.sandbox_zygote import ForkedLauncher, spawn_forked, use_zygote

TAIL_BYTES = 4096  # kept from the end of a truncated stdout, where status lines go
_BACKSTOP_S = 5.0  # extra seconds the harness waits for the launcher before killing it itself
_UID_RANGE = (200_000, 2**31 - 2)  # random per-run uid/gid; no passwd entry needed
POLL_S = 0.1  # how often the launcher sums the CPU time of the program's process tree


class SandboxRun:
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

    def __enter__(self) -> "SandboxRun":
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
