"""Sandbox limits and results: the `Limits` of one program (CPU time decides, wall time is a backstop), its
`ExecResult`, the shipped defaults (`verifiers/sandbox.yaml`), and the load rule that reruns a starved program."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, TypeVar

from tteval.errors import TtevalError

_T = TypeVar("_T")

STATUSES = ("ok", "error", "timeout", "killed", "sandbox_error")
DEFAULT_CPU_S = 10.0  # CPU limit when none is given (MBPP's slowest reference, task 123, needs 3-6 s)
WALL_FACTOR, WALL_EXTRA_S = 3.0, 5.0  # wall backstop = 3 x the CPU limit + 5 s unless `wall_s` is set


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


def per_program(value: Any, n: int, name: str) -> list[Any]:
    """One `Limits` per program: the one given repeated, or a sequence checked to have one per program."""
    if isinstance(value, Limits):
        return [value] * n
    items = list(value)
    if len(items) != n:
        raise TtevalError(f"got {n} programs but {len(items)} {name}")
    return items
