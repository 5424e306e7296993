"""How many threads llama.cpp runs: $TTEVAL_LLAMA_THREADS, else every CPU this process may use."""

from __future__ import annotations

import os

from tteval.errors import TtevalError


def env_threads() -> int | None:
    """$TTEVAL_LLAMA_THREADS as a thread count, or None when unset."""
    env = os.environ.get("TTEVAL_LLAMA_THREADS", "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise TtevalError(f"TTEVAL_LLAMA_THREADS must be a positive integer, got {env!r}")
    return int(env)


def default_threads() -> int:
    """How many threads llama.cpp runs by default: every CPU this process may use (`os.sched_getaffinity`).

    Why not fewer when other processes are busy: the collapse beside busy processes (two threads 10-20x slower
    than one) came from libgomp spinning at barriers, now bounded (`llama_glue.GOMP_SPINCOUNT`). With that bound,
    beside two CPU-bound processes on two CPUs two threads beat one (87 vs 70 tokens/s; quiet 155 vs 102;
    bench/results/load.json): the scheduler shares a CPU per runnable thread, so two threads get about a CPU's
    worth where one gets two thirds. Re-read at each call (a process's CPUs can change)."""
    return _available_cpus()


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
