"""Particle filtering for inference-time scaling (Puri et al. 2025, arXiv 2502.01618), over a batch of problems.

Particles are partial solutions extended one step at a time (a step ends at a blank line). After each step a
process reward r in (0, 1) scores every particle's whole partial answer ("model aggregation", the paper's best
setting); particles are resampled multinomially with probabilities softmax(logit(r) / T), i.e. proportional to the
reward odds at T = 1, as the authors' code does (their paper's Eq. 3 writes softmax(r), which is nearly uniform).
Finished particles stay in the pool with their final reward (`resample_inactive`, the authors' setting). A
particle stops at EOS, when its step contains `\\boxed`, on an empty step, or after `max_steps`. The answer is the
particle with the highest final reward. Every step is ONE batched backend call over all live particles of all
problems and ONE batched scorer call; a problem's randomness depends only on (seed, problem index).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from tteval.backends.base import Backend, Request

STEP_END = "\n\n"
EPS = float(np.finfo(float).eps)


class StepScorer(Protocol):
    """Anything that returns rewards in [0, 1] for (question, partial solution) pairs, with token costs."""

    def score(self, items: Sequence[tuple[str, str]]) -> list: ...


@dataclass
class Particle:
    """A partial solution, its reward history and what it cost."""

    text: str = ""
    rewards: list[float] = field(default_factory=list)
    done: bool = False
    policy_tokens: int = 0

    @property
    def reward(self) -> float:
        return self.rewards[-1] if self.rewards else 0.5

    def copy(self) -> Particle:
        return Particle(self.text, list(self.rewards), self.done, self.policy_tokens)


@dataclass
class PFResult:
    """The final particles of one problem, the index of the selected one, and the compute spent."""

    particles: list[Particle]
    selected: int
    policy_tokens: int
    verifier_tokens: int
    steps: int


def resampling_probs(rewards: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logit(r) / T) with r clipped to [eps, 1 - eps]: odds-proportional at T = 1."""
    r = np.clip(np.asarray(rewards, dtype=float), EPS, 1 - EPS)
    logits = (np.log(r) - np.log1p(-r)) / temperature
    w = np.exp(logits - logits.max())
    return w / w.sum()


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little") & 0x7FFFFFFF


def particle_filter(
    backend: Backend,
    scorer: StepScorer,
    questions: Sequence[str],
    prompts: Sequence[str],
    num_particles: int,
    *,
    temperature: float = 0.8,
    step_tokens: int = 256,
    max_steps: int = 40,
    softmax_temp: float = 1.0,
    seed: int = 0,
    resample_inactive: bool = True,
) -> list[PFResult]:
    """Run particle filtering on every problem at once; `prompts` are chat-templated, ready to continue."""
    pools = [[Particle() for _ in range(num_particles)] for _ in questions]
    rngs = [np.random.default_rng([seed, i]) for i in range(len(questions))]
    policy_tokens = [0] * len(questions)
    verifier_tokens = [0] * len(questions)
    steps = 0
    for step in range(max_steps):
        live = [(pi, j) for pi, pool in enumerate(pools) for j, p in enumerate(pool) if not p.done]
        if not live:
            break
        steps = step + 1
        outs = backend.generate(
            [
                Request(prompt=prompts[pi] + pools[pi][j].text, n=1, temperature=temperature, max_tokens=step_tokens,
                        stop=(STEP_END,), seed=_seed(seed, pi, step, j))  # fmt: skip
                for pi, j in live
            ]
        )
        for (pi, j), (c,) in zip(live, outs):
            p = pools[pi][j]
            ended_by_step = c.stop_reason == STEP_END
            p.text += c.text + (STEP_END if ended_by_step else "")
            p.policy_tokens += c.num_tokens
            policy_tokens[pi] += c.num_tokens
            eos = c.finish_reason == "stop" and not ended_by_step
            p.done = eos or "\\boxed" in c.text or not c.text.strip() or step + 1 == max_steps
        scores = scorer.score([(questions[pi], pools[pi][j].text) for pi, j in live])
        for (pi, j), s in zip(live, scores):
            pools[pi][j].rewards.append(float(s.score))
            verifier_tokens[pi] += int(getattr(s, "tokens", 0))
        touched = sorted({pi for pi, _ in live})
        for pi in touched:
            pools[pi] = _resample(pools[pi], rngs[pi], softmax_temp, resample_inactive)
    results = []
    for pi, pool in enumerate(pools):
        best = int(np.argmax([p.reward for p in pool]))
        results.append(PFResult(pool, best, policy_tokens[pi], verifier_tokens[pi], steps))
    return results


def _resample(pool: list[Particle], rng: np.random.Generator, temp: float, resample_inactive: bool) -> list[Particle]:
    """Draw a new pool of the same size multinomially by reward odds (finished particles too, if asked)."""
    if resample_inactive:
        candidates = pool
        keep: list[Particle] = []
    else:
        candidates = [p for p in pool if not p.done]
        keep = [p for p in pool if p.done]
        if not candidates:
            return pool
    probs = resampling_probs(np.array([p.reward for p in candidates]), temp)
    picks = rng.choice(len(candidates), size=len(pool) - len(keep), replace=True, p=probs)
    return keep + [candidates[i].copy() for i in picks]
