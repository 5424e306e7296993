"""How many threads llama.cpp runs: $TTEVAL_LLAMA_THREADS, else the CPUs that other processes leave idle now."""

from __future__ import annotations

import os
import time

from tteval.errors import TtevalError


def env_threads() -> int | None:
    """$TTEVAL_LLAMA_THREADS as a thread count, or None when unset."""
    env = os.environ.get("TTEVAL_LLAMA_THREADS", "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise TtevalError(f"TTEVAL_LLAMA_THREADS must be a positive integer, got {env!r}")
    return int(env)


def idle_threads() -> int:
    """How many threads llama.cpp should run now: the CPUs this process may use minus those other processes keep
    busy (at least 1).

    Why: llama.cpp's threads spin at the barriers between a graph's operations, so a thread that the kernel parks
    behind another process stalls every other thread until it runs again; with two threads on two busy CPUs
    decoding runs 10-20x slower. Busy CPUs are read from the kernel's count of runnable tasks (/proc/loadavg,
    field 4, minus this reading thread; the median of 5 readings 1 ms apart), not the 1-minute load average,
    which lags by minutes and counts this process's own threads."""
    cpus = _available_cpus()
    try:
        readings = []
        for i in range(5):
            with open("/proc/loadavg", "rb") as f:
                readings.append(int(f.read().split()[3].split(b"/")[0]) - 1)
            if i < 4:
                time.sleep(0.001)
    except (OSError, ValueError, IndexError):  # not Linux: assume a quiet machine
        return cpus
    others = sorted(readings)[2]
    return max(1, min(cpus, cpus - others))


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
