"""No collapse under load: tokens/s of the llama.cpp backend on a quiet machine and beside CPU-bound processes.

llama.cpp's CPU threads are OpenMP (libgomp) threads: at each barrier between a graph's operations the first to
arrive spins GOMP_SPINCOUNT times (libgomp's default 300,000, i.e. milliseconds) before it sleeps, so beside busy
processes a thread spins away the CPU its descheduled partner needs. tteval bounds the spinning
(`tteval.backends.llama_glue.GOMP_SPINCOUNT`, set before libgomp loads unless the user set GOMP_SPINCOUNT or
OMP_WAIT_POLICY) and by default runs one thread per CPU it may use (`tteval.backends.threads.default_threads`). Each row (a libgomp wait policy:
tteval's, libgomp's own default or OMP_WAIT_POLICY=passive; with the automatic thread count, one thread per CPU or
one thread) runs in its own process (libgomp reads its policy once) on n = 8 samples of a GSM8K prompt (64 tokens),
quiet and with BUSY CPU-bound processes beside it (pure-Python spin loops): a warm-up call, then the median of
ROUNDS; the load average is recorded. A row's process is ended after BENCH_ROW_CAP_S seconds (120; libgomp's
default beside the busy processes makes a few tokens/s): it is recorded as did not finish, with the upper bound
(1 + ROUNDS) x n x 64 tokens / cap on its tokens/s (and `<` on its ratio). Target: loaded >= 0.5 x quiet with the default settings. Writes bench/results/load.json.
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


POLICIES = {  # libgomp's barrier wait, set in each child's environment before llama_cpp loads
    "tteval": {},
    "libgomp default": {"GOMP_SPINCOUNT": "300000"},
    "passive": {"OMP_WAIT_POLICY": "passive"},
}


ROW_CAP_S = float(os.environ.get("BENCH_ROW_CAP_S", "120"))  # a row's process is ended here (libgomp's default, loaded)


def rows(cpus: int) -> dict[str, int | None]:
    """The thread settings compared: the default (one per CPU this process may use), all CPUs fixed, one thread."""
    return {"default (all CPUs)": None, f"fixed {cpus} threads": cpus, "fixed 1 thread": 1}


def child(threads: int | None) -> None:
    """One row's measurements (its wait policy was set in its environment by the parent): JSON on stdout."""
    from tteval.backends.llamacpp import LlamaCppBackend
    from tteval.tasks import load_problems, load_task

    task = load_task("gsm8k")
    messages = task.messages(load_problems(task, 1)[0])
    b = LlamaCppBackend(max_parallel=N) if threads is None else LlamaCppBackend(max_parallel=N, n_threads=threads)
    tokens_per_s(b, messages)  # warm up: context made, pages touched
    runs, used = [], []
    for _ in range(ROUNDS):
        runs.append(tokens_per_s(b, messages))
        used.append(b.n_threads)
    b.close()
    print(json.dumps({"tokens_per_s": round(statistics.median(runs), 1), "rounds": [round(x, 1) for x in runs],
                      "threads_used": used}))  # fmt: skip


def measure_row(env: dict[str, str], threads: int | None, cap_s: float = ROW_CAP_S) -> dict:
    """One row in its own process (libgomp reads its policy once), ended at cap_s: then the figure is an upper bound."""
    try:
        out = subprocess.run([sys.executable, __file__, "--child", str(threads or 0)], env=env, check=True,
                             capture_output=True, text=True, timeout=cap_s).stdout  # fmt: skip
    except subprocess.TimeoutExpired:  # warm-up and rounds of N x MAX_TOKENS tokens each did not fit in cap_s
        return {"did_not_finish_within_s": cap_s, "tokens_per_s_below": round((1 + ROUNDS) * N * MAX_TOKENS / cap_s, 1)}
    return json.loads(out.strip().splitlines()[-1])


def speed(row: dict) -> float:
    """A row's tokens/s, or its upper bound when it did not finish."""
    return row.get("tokens_per_s", row.get("tokens_per_s_below", 0.0))


def ratio(quiet: dict, loaded: dict) -> float | str | None:
    """loaded / quiet tokens/s; "< x" when only the loaded row did not finish (x its upper bound); None if unknown."""
    if "did_not_finish_within_s" in quiet or not speed(quiet):
        return None
    r = round(speed(loaded) / speed(quiet), 3)
    return f"< {r}" if "did_not_finish_within_s" in loaded else r


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TTEVAL_LLAMA_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    cpus = len(os.sched_getaffinity(0))
    result: dict[str, dict] = {}
    for phase in ("quiet", "loaded"):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(BUSY if phase == "loaded" else 0)]
        try:
            time.sleep(1.0 if spinners else 0.0)
            result[phase] = {"loadavg_1m_before": round(os.getloadavg()[0], 2)}
            for policy, extra in POLICIES.items():
                result[phase][policy] = {}
                for name, threads in rows(cpus).items():
                    result[phase][policy][name] = measure_row({**env, **extra}, threads)
                    print(phase, policy, name, json.dumps(result[phase][policy][name]), flush=True)
            result[phase]["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
    ratios = {f"{policy} / {name}": ratio(result["quiet"][policy][name], result["loaded"][policy][name])
              for policy in POLICIES for name in rows(cpus)}  # fmt: skip
    default = ratios["tteval / default (all CPUs)"]
    default = default if isinstance(default, float) else 0.0  # an upper bound or no quiet figure: not met
    out = {"setup": {"n": N, "max_tokens": MAX_TOKENS, "rounds": ROUNDS, "busy_processes": BUSY, "cpus": cpus,
                     "policies": POLICIES},
           **result, "loaded_vs_quiet": ratios, "target": "default (tteval policy, all CPUs) loaded >= 0.5 x quiet",
           "target_met": default >= 0.5,
           "note": "'quiet' is whatever else the machine runs: compare with the load averages recorded"}  # fmt: skip
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(ratios))


if __name__ == "__main__":
    child(int(sys.argv[2]) or None) if sys.argv[1:2] == ["--child"] else main()
