"""Harness overhead: the same requests through `tteval run` and through the backend's raw API in a minimal loop.

20 GSM8K problems x 8 samples, fixed seed and max tokens, on the embedded CPU model. Reports wall time and
generated tokens/s of: (a) `tteval run` end to end (generation + grading + files + metrics, cache off),
(b) tteval's llama.cpp backend called directly in a loop over the same chunks (the engine, batched),
(c) llama-cpp-python's own high-level API, one `create_chat_completion` per sample (the engine used naively).
Also splits tteval run's wall time into its phases (run.json timings): the generation phase against the raw loop
is the harness's own overhead; grading and metrics are work the raw loop does not do.
Writes bench/results/overhead.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBLEMS, N, MAX_TOKENS, SEED = 20, 8, 64, 0
OUT = Path(__file__).parent / "results" / "overhead.json"


PHASES: dict[str, float] = {}  # tteval run's own timings (run.json): generation, grading, metrics


def tteval_run() -> tuple[float, int]:
    out = Path(tempfile.mkdtemp())
    args = ["run", "--task", "gsm8k", "--limit", str(PROBLEMS), "-n", str(N), "--max-tokens", str(MAX_TOKENS),
            "--seed", str(SEED), "--out", str(out), "--no-cache"]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tteval.cli", *args], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    from tteval.records import read_run_meta

    meta = read_run_meta(run).to_dict()
    tokens = meta["usage"]["completion_tokens"]
    PHASES.update({k: float(v) for k, v in meta["timings"].items()})
    shutil.rmtree(out)
    return wall, tokens


def requests():
    from tteval.backends.base import Request
    from tteval.strategies.registry import problem_seed
    from tteval.tasks import load_problems, load_task

    task = load_task("gsm8k")
    return [
        Request(messages=task.messages(p), n=N, temperature=0.7, max_tokens=MAX_TOKENS, seed=problem_seed(SEED, p.task_id))
        for p in load_problems(task, PROBLEMS)
    ]


def backend_direct() -> tuple[float, int]:
    from tteval.backends.llamacpp import LlamaCppBackend
    from tteval.backends.registry import default_batch_problems
    from tteval.config import RunConfig

    reqs = requests()
    chunk = default_batch_problems(RunConfig.of(n=N))
    t0 = time.perf_counter()
    b = LlamaCppBackend()
    tokens = 0
    for i in range(0, len(reqs), chunk):
        tokens += sum(c.num_tokens for out in b.generate(reqs[i : i + chunk]) for c in out)
    wall = time.perf_counter() - t0
    b.close()
    return wall, tokens


def llama_cpp_naive() -> tuple[float, int]:
    from llama_cpp import Llama

    from tteval.backends.llamacpp import resolve_model_path

    t0 = time.perf_counter()
    llm = Llama(resolve_model_path("smollm2"), n_ctx=2048, verbose=False, seed=SEED)
    tokens = 0
    for r in requests():
        msgs = [{"role": role, "content": content} for role, content in r.messages]
        for i in range(r.n):
            out = llm.create_chat_completion(msgs, max_tokens=MAX_TOKENS, temperature=0.7, seed=r.seed + i)
            tokens += out["usage"]["completion_tokens"]
    return time.perf_counter() - t0, tokens


def main() -> None:
    rows = {}
    modes = [("tteval run", tteval_run), ("backend direct", backend_direct), ("llama-cpp-python naive", llama_cpp_naive)]
    if os.environ.get("BENCH_QUICK"):  # skip the slow naive loop (its ratio is then missing)
        modes = modes[:2]
    for name, fn in modes:
        load_before = os.getloadavg()[0]
        wall, tokens = fn()
        rows[name] = {"wall_s": round(wall, 2), "tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
                      "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
        print(f"{name:>24}: {wall:7.1f} s  {tokens:6d} tokens  {tokens / wall:7.1f} tok/s", flush=True)
    ratios = {
        "tteval_run_vs_backend_wall": round(rows["tteval run"]["wall_s"] / rows["backend direct"]["wall_s"], 3),
        "tteval_run_vs_backend_tps": round(rows["tteval run"]["tokens_per_s"] / rows["backend direct"]["tokens_per_s"], 3),
        "target_tteval_run_vs_backend_wall": 1.03,
        "tteval_run_vs_naive_tps": round(rows["tteval run"]["tokens_per_s"] / rows["llama-cpp-python naive"]["tokens_per_s"], 3)
        if "llama-cpp-python naive" in rows else None,
        # the generation phase alone (tteval's loop: chunks, fsynced appends, run.json, progress) against the raw loop
        "generation_phase_vs_backend_tps": round(
            rows["tteval run"]["tokens"] / PHASES["generation_s"] / rows["backend direct"]["tokens_per_s"], 3),
    }  # fmt: skip
    rows["tteval run"]["phases_s"] = {k: round(v, 2) for k, v in PHASES.items()}
    rows["tteval run"]["other_s"] = round(rows["tteval run"]["wall_s"] - sum(PHASES.values()), 2)  # start-up, imports
    print(json.dumps(ratios, indent=2))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    machine = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    OUT.write_text(json.dumps({"setup": {"problems": PROBLEMS, "n": N, "max_tokens": MAX_TOKENS, "seed": SEED},
                               "machine": machine, "runs": rows, "ratios": ratios}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
