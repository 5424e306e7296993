"""Particle filtering for inference-time scaling (Puri et al. 2025, arXiv 2502.01618), over a batch of problems.

Particles are partial solutions extended one step at a time (a step ends at a blank line). After each step a
process reward r in (0, 1) scores every particle's whole partial answer ("model aggregation", the paper's best
setting). Before each new step, as the paper's kernel does (`particle_gibbs_batch.py`), particles are resampled
multinomially with probabilities softmax(logit(r) / T), i.e. proportional to the reward odds at T = 1, as the
authors' code does (their paper's Eq. 3 writes softmax(r), which is nearly uniform). So the pool the final argmax
sees is the last step's pool, never resampled after the last step (its_hub resamples once more, which can drop
the best particle: `resample_after_last=True`). Finished particles stay in the pool with their final reward
(`resample_inactive`, the authors' setting). A particle stops at EOS, when its step contains `\\boxed`, on an
empty step, or after `max_steps`. The answer is the particle with the highest final reward. Every step is ONE
batched backend call over all live particles of all problems and ONE batched scorer call; every random draw
(the resampling, each step's sampling seed, the scorer's seed) derives from (seed, problem key, its own path:
pass, step, particle), so a problem's particles do not depend on which problems share the batch.

Particle Gibbs (`iterations` T > 1, the paper's App. A.1 and its_hub's `ParticleGibbs`): after each filtering pass
one reference particle is drawn with the same odds weights; the next pass runs N - 1 fresh particles beside it.
The reference is never regenerated or replaced, but it competes in every resampling and a particle resampled
from it forks its prefix up to the current depth. Its weight is its reward at the free particles' current depth
(its final reward once it is shorter): the conditional SMC of Andrieu et al. (2010), where the reference path
is weighted like any particle at the same time step. The paper's code reads the reward one step ahead of that
depth and its_hub the final reward; neither is the conditional-SMC weight. The answer comes from the last pass
only (the authors' notebook takes `any` over passes, an oracle); the budget is N x T generations.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tteval.backends.base import Backend, Request
from tteval.verifiers.reward import Scorer as StepScorer  # process reward: (question, partial solution) pairs

STEP_END = "\n\n"
EPS = float(np.finfo(float).eps)


@dataclass
class Particle:
    """A partial solution as its steps, the reward after each step, and what it cost."""

    steps: list[str] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    done: bool = False
    policy_tokens: int = 0
    step_lengths: list[int] = field(default_factory=list)  # generated tokens of each step (the path's length)

    @property
    def text(self) -> str:
        return "".join(self.steps)

    @property
    def reward(self) -> float:
        return self.rewards[-1] if self.rewards else 0.5

    def reward_at(self, step: int) -> float:
        """The reward after `step` + 1 steps, or the final one for a particle that stopped earlier."""
        return self.rewards[min(step, len(self.rewards) - 1)] if self.rewards else 0.5

    @property
    def path_tokens(self) -> int:
        """Tokens generated along this particle's path (what `max_tokens` caps)."""
        return sum(self.step_lengths)

    def copy(self, steps: int | None = None) -> Particle:
        """An independent copy, cut back to its first `steps` steps (a fork of a longer reference particle)."""
        if steps is None or steps >= len(self.steps):
            return Particle(list(self.steps), list(self.rewards), self.done, self.policy_tokens, list(self.step_lengths))
        return Particle(self.steps[:steps], self.rewards[:steps], False, sum(self.step_lengths[:steps]),
                        self.step_lengths[:steps])  # fmt: skip


@dataclass
class PFResult:
    """The final particles of one problem, the index of the selected one, and the compute spent."""

    particles: list[Particle]
    selected: int
    policy_tokens: int
    verifier_tokens: int
    steps: int
    iterations: int = 1


def resampling_probs(rewards: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logit(r) / T) with r clipped to [eps, 1 - eps]: odds-proportional at T = 1."""
    r = np.clip(np.asarray(rewards, dtype=float), EPS, 1 - EPS)
    logits = (np.log(r) - np.log1p(-r)) / temperature
    w = np.exp(logits - logits.max())
    return w / w.sum()


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:4], "little") & 0x7FFFFFFF


def _rng(seed: int, key: str) -> np.random.Generator:
    """The resampling generator of one problem: (run seed, problem key) only."""
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}:pf:{key}".encode()).digest()[:16], "little"))


@dataclass
class _Search:
    """What one call of particle_filter shares across its passes: the inputs, knobs and per-problem counters."""

    backend: Backend
    scorer: StepScorer
    questions: Sequence[str]
    prompts: Sequence[str]
    keys: Sequence[str]
    temperature: float
    step_tokens: int
    max_steps: int
    softmax_temp: float
    seed: int
    resample_inactive: bool
    resample_after_last: bool
    max_tokens: int | None
    policy_tokens: list[int]
    verifier_tokens: list[int]
    steps: list[int]


def particle_filter(
    backend: Backend,
    scorer: StepScorer,
    questions: Sequence[str],
    prompts: Sequence[str],
    num_particles: int,
    *,
    keys: Sequence[str] | None = None,
    temperature: float = 0.8,
    step_tokens: int = 2048,
    max_steps: int = 40,
    softmax_temp: float = 1.0,
    seed: int = 0,
    resample_inactive: bool = True,
    resample_after_last: bool = False,
    iterations: int = 1,
    max_tokens: int | None = None,
) -> list[PFResult]:
    """Particle filtering (particle Gibbs when `iterations` > 1) on every problem at once.

    `prompts` are chat-templated, ready to continue; each problem gets `num_particles` particles per pass. `keys`
    name the problems (task ids; default their positions) and seed all their randomness. `max_tokens` caps the
    tokens a particle generates over all its steps (its last step is cut to fit, and it stops there); None, the
    authors' setting, bounds a particle only by `max_steps` x `step_tokens`. The defaults are the authors'
    (`scripts/pg.py`, `particle_gibbs_batch.py`): temperature 0.8, 40 steps of at most 2048 tokens."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    m = len(questions)
    keys = [str(k) for k in keys] if keys is not None else [str(i) for i in range(m)]
    if len(keys) != m or len(set(keys)) != m:
        raise ValueError("particle_filter needs one distinct key per problem")
    search = _Search(backend, scorer, questions, prompts, keys, temperature, step_tokens, max_steps, softmax_temp,
                     seed, resample_inactive, resample_after_last, max_tokens, [0] * m, [0] * m, [0] * m)  # fmt: skip
    rngs = [_rng(seed, k) for k in keys]
    refs: list[Particle | None] = [None] * m
    pools: list[list[Particle]] = []
    for it in range(iterations):
        pools = _filter_pass(search, rngs, refs, num_particles, it)
        if it + 1 < iterations:  # draw the next pass's reference particle by the same odds weights
            refs = [pool[int(rng.choice(len(pool), p=resampling_probs(np.array([p.reward for p in pool]))))]
                    for pool, rng in zip(pools, rngs)]  # fmt: skip
    results = []
    for pi, pool in enumerate(pools):
        best = int(np.argmax([p.reward for p in pool]))
        results.append(PFResult(pool, best, search.policy_tokens[pi], search.verifier_tokens[pi], search.steps[pi],
                                iterations))  # fmt: skip
    return results


def _filter_pass(
    search: _Search, rngs: list[np.random.Generator], refs: list[Particle | None], n: int, it: int
) -> list[list[Particle]]:
    """One filtering pass over all problems; a problem with a reference particle runs n - 1 free ones beside it.

    Step t (t >= 1) begins by resampling each problem that still has a live particle (the free particles then
    hold t steps); the last step's pool is returned as it is, unless `resample_after_last`."""
    s = search
    pools = [[Particle() for _ in range(n - (ref is not None))] for ref in refs]
    for step in range(s.max_steps):
        if step > 0:
            for pi, pool in enumerate(pools):
                if any(not p.done for p in pool):
                    pools[pi] = _resample(pool, rngs[pi], s.softmax_temp, s.resample_inactive, refs[pi], step)
        live = [(pi, j) for pi, pool in enumerate(pools) for j, p in enumerate(pool) if not p.done]
        if not live:
            break
        for pi in sorted({pi for pi, _ in live}):
            s.steps[pi] += 1
        paths = [f"{s.keys[pi]}/{it}/{step}/{j}" for pi, j in live]
        outs = s.backend.generate(
            [
                Request(prompt=s.prompts[pi] + pools[pi][j].text, n=1, temperature=s.temperature,
                        max_tokens=_step_budget(s, pools[pi][j]), stop=(STEP_END,), seed=_seed(s.seed, path))  # fmt: skip
                for (pi, j), path in zip(live, paths)
            ]
        )
        for (pi, j), (c,) in zip(live, outs):
            p = pools[pi][j]
            ended_by_step = c.stop_reason == STEP_END
            p.steps.append(c.text + (STEP_END if ended_by_step else ""))
            p.policy_tokens += c.num_tokens
            p.step_lengths.append(c.num_tokens)
            s.policy_tokens[pi] += c.num_tokens
            eos = c.finish_reason == "stop" and not ended_by_step
            spent = s.max_tokens is not None and p.path_tokens >= s.max_tokens
            p.done = eos or "\\boxed" in c.text or not c.text.strip() or step + 1 == s.max_steps or spent
        scores = s.scorer.score([(s.questions[pi], pools[pi][j].text) for pi, j in live], keys=paths)
        for (pi, j), sc in zip(live, scores):
            pools[pi][j].rewards.append(float(sc.score))
            s.verifier_tokens[pi] += int(getattr(sc, "tokens", 0))
    if s.resample_after_last:  # its_hub's order: one more resampling after the last step
        pools = [_resample(pool, rng, s.softmax_temp, s.resample_inactive, ref, max(len(p.steps) for p in pool))
                 for pool, rng, ref in zip(pools, rngs, refs)]  # fmt: skip
    return [pool + ([ref] if ref is not None else []) for pool, ref in zip(pools, refs)]


def _step_budget(s: _Search, p: Particle) -> int:
    """Tokens the next step of `p` may generate: a step's worth, or what is left of the particle's cap."""
    return s.step_tokens if s.max_tokens is None else max(1, min(s.step_tokens, s.max_tokens - p.path_tokens))


def _resample(pool: list[Particle], rng: np.random.Generator, temp: float, resample_inactive: bool,
              ref: Particle | None = None, depth: int = 1) -> list[Particle]:  # fmt: skip
    """Draw a new pool of the same size multinomially by reward odds (finished particles too, if asked).

    `depth` is how many steps the free particles hold: a reference particle competes with its reward at that
    depth (`Particle.reward_at(depth - 1)`), and a particle drawn from it forks its first `depth` steps."""
    if resample_inactive:
        candidates = list(pool)
        keep: list[Particle] = []
    else:
        candidates = [p for p in pool if not p.done]
        keep = [p for p in pool if p.done]
        if not candidates:
            return pool
    rewards = [p.reward for p in candidates]
    if ref is not None:
        candidates.append(ref)
        rewards.append(ref.reward_at(depth - 1))
    probs = resampling_probs(np.array(rewards), temp)
    picks = rng.choice(len(candidates), size=len(pool) - len(keep), replace=True, p=probs)
    return keep + [candidates[i].copy(depth) if candidates[i] is ref else candidates[i].copy() for i in picks]
