"""No collapse under load: tokens/s of the llama.cpp backend on a quiet machine and beside CPU-bound processes.

llama.cpp's threads spin at the barriers between a graph's operations, so a thread parked behind another process
stalls the others. tteval's default (`n_threads=None`) runs as many threads as there are idle CPUs, re-read at
every call and every 32 decode steps (`tteval.backends.threads.idle_threads`: CPUs this process may use minus
the kernel's count of other runnable tasks). Compared with the old default, one thread per CPU (`fixed`), and
one thread, on n = 8 samples of a GSM8K prompt (64 tokens), quiet and with BUSY CPU-bound processes beside it
(pure-Python spin loops). Rounds interleave modes; the median of ROUNDS is kept; the load average is recorded.
Target: loaded >= 0.5 x quiet with the default settings. Writes bench/results/load.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULT = Path(__file__).parent / "results" / "load.json"
N, MAX_TOKENS, SEED = 8, 64, 0
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BUSY = 2  # CPU-bound processes beside it, as the target says


def tokens_per_s(backend, messages) -> float:
    from tteval.backends.base import Request

    backend.clear_cache()
    t0 = time.perf_counter()
    (out,) = backend.generate([Request(messages=messages, n=N, temperature=0.7, max_tokens=MAX_TOKENS, seed=SEED)])
    return sum(c.num_tokens for c in out) / (time.perf_counter() - t0)


def main() -> None:
    from tteval.backends.llamacpp import LlamaCppBackend
    from tteval.tasks import load_problems, load_task

    os.environ.pop("TTEVAL_LLAMA_THREADS", None)
    task = load_task("gsm8k")
    messages = task.messages(load_problems(task, 1)[0])
    cpus = len(os.sched_getaffinity(0))
    backends = {"default (idle CPUs)": LlamaCppBackend(max_parallel=N), f"fixed {cpus} threads": LlamaCppBackend(
        max_parallel=N, n_threads=cpus), "fixed 1 thread": LlamaCppBackend(max_parallel=N, n_threads=1)}  # fmt: skip
    for b in backends.values():
        tokens_per_s(b, messages)  # warm up: context made, pages touched
    result: dict[str, dict] = {}
    for phase in ("quiet", "loaded"):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY if phase == "loaded" else 0)]
        try:
            time.sleep(1.0 if spinners else 0.0)
            runs: dict[str, list[float]] = {name: [] for name in backends}
            threads: dict[str, list[int]] = {name: [] for name in backends}
            loads = [os.getloadavg()[0]]
            for _ in range(ROUNDS):
                for name, b in backends.items():
                    runs[name].append(tokens_per_s(b, messages))
                    threads[name].append(b.n_threads)
                loads.append(os.getloadavg()[0])
        finally:
            for p in spinners:
                p.kill()
                p.wait()
        result[phase] = {name: {"tokens_per_s": round(statistics.median(v), 1), "rounds": [round(x, 1) for x in v],
                                "threads_used": threads[name]} for name, v in runs.items()}  # fmt: skip
        result[phase]["loadavg_1m_per_round"] = [round(x, 2) for x in loads]
        print(phase, json.dumps(result[phase]), flush=True)
    for b in backends.values():
        b.close()
    ratios = {name: round(result["loaded"][name]["tokens_per_s"] / result["quiet"][name]["tokens_per_s"], 3)
              for name in backends}  # fmt: skip
    out = {"setup": {"n": N, "max_tokens": MAX_TOKENS, "rounds": ROUNDS, "busy_processes": BUSY, "cpus": cpus},
           **result, "loaded_vs_quiet": ratios, "target": "default loaded >= 0.5 x quiet",
           "target_met": ratios["default (idle CPUs)"] >= 0.5,
           "note": "'quiet' is whatever else the machine runs: compare with the load averages recorded"}  # fmt: skip
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(ratios))


if __name__ == "__main__":
    main()
