"""How many threads llama.cpp runs: $TTEVAL_LLAMA_THREADS, else every CPU this process may use, adapted by
`ThreadTuner` (one thread when timed decode steps show that all CPUs collapse under load)."""

from __future__ import annotations

import os
import statistics
from collections import deque

from tteval.errors import TtevalError

WINDOW = 3  # decode steps whose median per-row time stands for the thread count in use
PROBE_STEPS = 2  # decode steps a probe of the other thread count runs (fewer when clearly worse after the first)
PROBE_FIRST, PROBE_MAX = 32, 4096  # decode steps between scheduled probes: at least, doubled per failed probe
CHANGE = 1.5  # a window this much slower (all CPUs) or faster (one thread) than usual probes at once
SWITCH = 0.8  # switch when the probe's time per row is below this fraction of the current count's
ABORT = 1.5  # end a probe after its first step when that step's time per row is above this multiple
EMA = 1 / 16  # weight of a step in the usual time per row (per thread count and row count)


def env_threads() -> int | None:
    """$TTEVAL_LLAMA_THREADS as a thread count, or None when unset."""
    env = os.environ.get("TTEVAL_LLAMA_THREADS", "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise TtevalError(f"TTEVAL_LLAMA_THREADS must be a positive integer, got {env!r}")
    return int(env)


def default_threads() -> int:
    """How many threads llama.cpp starts with by default: every CPU this process may use (`os.sched_getaffinity`).

    Why not fewer: with libgomp's barrier spinning bounded (`llama_glue.GOMP_SPINCOUNT`), beside two CPU-bound
    processes on two CPUs two threads beat one (87 vs 70 tokens/s; quiet 155 vs 102; bench/results/load.json).
    Under heavier load (7-8 on 2 CPUs) two threads made 6 tokens/s against 55 with one (barrier waits on a
    descheduled thread): `ThreadTuner` catches that. Re-read at each call (a process's CPUs can change)."""
    return _available_cpus()


class ThreadTuner:
    """Chooses between all usable CPUs and one thread from timed decode steps (the thread count changes no sample).

    The rule: start with all CPUs. Every decode step reports its rows and seconds; per (thread count, rows) an
    exponential mean (`EMA`) keeps the usual time per row. A probe runs the other candidate for `PROBE_STEPS` steps
    (ended after one when `ABORT` x slower) and switches to it when its median time per row is below `SWITCH` x
    that of the `WINDOW` steps before it, with row counts within 25% (else it counts as no evidence). Probes run
    when the last `WINDOW` steps (of one row count) are `CHANGE` x slower than usual at all CPUs (load came) or
    `CHANGE` x faster at one thread (load went), and on a schedule: after the first `WINDOW` steps (the machine
    may be loaded from the start), then `PROBE_FIRST` steps after that or after a switch, the wait doubling after
    every failed probe up to `PROBE_MAX`. A quiet machine so keeps all CPUs and pays one one-thread step per
    scheduled probe (~8 in the first 4,000 steps, then one per 4,096); a collapse is caught within about
    `WINDOW` + `PROBE_STEPS` steps. Pure: no clock, no I/O."""

    def __init__(self, cpus: int):
        self.cpus = max(1, cpus)
        self.threads = self.cpus
        self.interval = WINDOW  # a first probe as soon as there is a window: a machine may be loaded from the start
        self.since = 0  # steps since the last probe or switch
        self.steps = self.one_thread_steps = self.probes = self.switches = 0  # counts, for benchmarks and tests
        self._recent: deque[tuple[int, float]] = deque(maxlen=WINDOW)  # (rows, seconds per row) at `threads`
        self._probe: list[tuple[int, float]] | None = None  # steps of a running probe
        self._usual: dict[tuple[int, int], float] = {}  # (threads, rows) -> usual seconds per row

    def set_cpus(self, cpus: int) -> int:
        """The CPUs this process may use changed (or not): keep one thread, else run all; return the count."""
        cpus = max(1, cpus)
        if cpus != self.cpus:
            self.__init__(cpus)  # timings of the former CPU set say nothing of the new one
        return self.threads

    def observe(self, rows: int, seconds: float) -> int:
        """One decode step of `rows` sequences took `seconds` at `self.threads`: return the count for the next."""
        self.steps += 1
        self.one_thread_steps += self.threads == 1
        if self.cpus == 1 or rows < 1:
            return self.threads
        per_row = seconds / rows
        if self._probe is not None:
            return self._probe_step(rows, per_row)
        key = (self.threads, rows)
        usual = self._usual.get(key)
        self._usual[key] = per_row if usual is None else usual + (per_row - usual) * EMA
        self._recent.append((rows, per_row))
        self.since += 1
        if len(self._recent) < WINDOW:
            return self.threads
        moved = False
        if usual and all(r == rows for r, _ in self._recent):
            ratio = _median(self._recent) / usual
            moved = ratio > CHANGE if self.threads > 1 else ratio < 1 / CHANGE
        if moved or self.since >= self.interval:
            self._probe = []
            self.probes += 1
            self.threads = self._other()
        return self.threads

    def _probe_step(self, rows: int, per_row: float) -> int:
        """A step of the probe: go on, switch, or go back (doubling the wait to the next scheduled probe)."""
        probe = self._probe
        probe.append((rows, per_row))
        before_rows = statistics.fmean(r for r, _ in self._recent)
        comparable = all(abs(r - before_rows) <= 0.25 * before_rows for r, _ in probe)
        before, now = _median(self._recent), _median(probe)
        if comparable and len(probe) < PROBE_STEPS and now <= ABORT * before:
            return self.threads
        self._probe, self.since = None, 0
        switch = comparable and len(probe) == PROBE_STEPS and now < SWITCH * before
        self._renormal(self.threads, rows, now)  # what this machine does now, for later `moved` checks
        if switch:
            self.switches += 1
            self.interval = PROBE_FIRST
            self._recent = deque(probe, maxlen=WINDOW)
        else:
            self.threads = self._other()
            self._renormal(self.threads, self._recent[-1][0], before)
            self.interval = min(max(2 * self.interval, PROBE_FIRST), PROBE_MAX) if comparable else self.interval
        return self.threads

    def _renormal(self, threads: int, rows: int, per_row: float) -> None:
        """Set the usual time per row of (threads, rows) to `per_row`, scaling that count's other rows alike."""
        old = self._usual.get((threads, rows))
        if old:
            for key in self._usual:
                if key[0] == threads:
                    self._usual[key] *= per_row / old
        self._usual[(threads, rows)] = per_row

    def _other(self) -> int:
        return 1 if self.threads > 1 else self.cpus


def _median(steps: "deque[tuple[int, float]] | list[tuple[int, float]]") -> float:
    return statistics.median(p for _, p in steps)


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
