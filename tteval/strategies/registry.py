"""The generation strategies of `--strategy`, by name: what a run requests, how a chunk runs, when a problem is
finished, what resume keeps and which curves it yields. The only place that tells strategies apart by name.

`sample` draws an i.i.d. pool of N (every selector is estimated from it offline); `pass-until` draws rounds until r
correct samples or the cap (Hu et al., ICLR 2024); `particle-filter` steers N particles step by step by a process
reward (Puri et al. 2025) and is a searcher: a sweep runs it once per budget.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from tteval.backends.base import Completion, Request
from tteval.errors import TtevalError

if TYPE_CHECKING:
    from tteval.backends.base import Backend
    from tteval.config import RunConfig
    from tteval.tasks import Problem, Task

Records = list[dict[str, Any]]
ChunkOutput = tuple[list[list[Completion]], list[list[dict[str, Any]]]]  # completions and record extras per problem


class Strategy(Protocol):
    """A generation strategy: its StrategyConfig knobs in the run id, its scorer needs and its curve family."""

    name: str
    identity: tuple[str, ...]  # StrategyConfig fields hashed into the run id
    searcher: bool  # steers generation: one run per budget in a sweep (else one pool at the largest budget)
    in_sweeps: bool  # a sweep can run it (its result is a curve over budgets)
    default_scorer: str | None  # the scorer it needs without --verifier (a process reward)
    scores_pool: bool  # the --verifier scores every generated candidate
    curves: str  # the curve family metrics computes: "pool", "pass_until" or "search"
    genrm_default: str  # GenRM's chain score when --genrm-score is not given
    prm_default: str  # a PRM's step aggregation when --prm-aggregation is not given

    def run_chunk(self, config: RunConfig, task: Task, problems: list[Problem], offsets: tuple[int, ...],
                  backend: Backend, scorer: Any) -> ChunkOutput: ...  # fmt: skip

    def finished(self, config: RunConfig, records: Records) -> bool: ...

    def kept_on_resume(self, config: RunConfig, records: Records) -> int: ...

    def worst_case(self, config: RunConfig) -> tuple[int, int, int]: ...


def problem_seed(seed: int, task_id: str) -> int:
    """A per-problem sampling seed that depends only on the run seed and the problem id."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def prompt_of(config: RunConfig, task: Task, problem: Problem) -> dict[str, Any]:
    """The request's prompt: the task's messages (chat), or their text as one plain prompt (raw)."""
    if config.prompt_format == "raw":
        return {"prompt": task.raw_prompt(problem)}
    return {"messages": task.messages(problem)}


class Sample:
    """An i.i.d. pool of N candidates per problem, in one request."""

    name = "sample"
    identity: tuple[str, ...] = ()
    searcher = False
    in_sweeps = True
    default_scorer: str | None = None
    scores_pool = True
    curves = "pool"
    genrm_default = "hybrid"
    prm_default = "last"

    def request(self, config: RunConfig, task: Task, problem: Problem, offset: int) -> Request:
        """The request for a problem's samples from `offset` on."""
        s = config.sampling
        return Request(**prompt_of(config, task, problem), n=s.n, temperature=s.temperature, top_p=s.top_p,
                       max_tokens=config.token_cap(), stop=task.stop(config.prompt_format),
                       seed=problem_seed(s.seed, problem.task_id),
                       extra=tuple(sorted((s.gen_kwargs or {}).items())))  # fmt: skip

    def run_chunk(self, config: RunConfig, task: Task, problems: list[Problem], offsets: tuple[int, ...],
                  backend: Backend, scorer: Any) -> ChunkOutput:  # fmt: skip
        outputs = backend.generate([self.request(config, task, p, o) for p, o in zip(problems, offsets)])
        return outputs, [[{} for _ in out] for out in outputs]

    def finished(self, config: RunConfig, records: Records) -> bool:
        return len(records) >= config.sampling.n

    def kept_on_resume(self, config: RunConfig, records: Records) -> int:
        """A pool is kept whole or not at all (a partial pool would be drawn again from its start)."""
        return len(records) if len(records) >= config.sampling.n else 0

    def worst_case(self, config: RunConfig) -> tuple[int, int, int]:
        """(candidates per problem, tokens per candidate, scored steps per candidate) at most."""
        return config.sampling.n, config.token_cap(), 1


class PassUntil(Sample):
    """Rounds of B samples per problem until r correct ones or N (Haldane's unbiased estimator)."""

    name = "pass-until"
    identity = ("until_successes", "round_size")
    in_sweeps = False  # one estimate per problem, not a curve over budgets
    curves = "pass_until"

    @staticmethod
    def round_len(config: RunConfig) -> int:
        """PassUntil's samples per problem per round."""
        return config.strategy.round_size or min(config.sampling.n, 16)

    def request(self, config: RunConfig, task: Task, problem: Problem, offset: int) -> Request:
        """The next round: round 0 is the pool a `sample` run would draw first; round r > 0 gets its own seed."""
        size = self.round_len(config)
        req = super().request(config, task, problem, 0)
        seed = req.seed
        if offset:
            seed = problem_seed(config.sampling.seed, f"{problem.task_id}#round{offset // size}")
        return replace(req, n=min(size, config.sampling.n - offset), seed=seed)

    def finished(self, config: RunConfig, records: Records) -> bool:
        if sum(bool(r.get("correct")) for r in records) >= config.strategy.until_successes:
            return True
        return len(records) >= config.sampling.n

    def kept_on_resume(self, config: RunConfig, records: Records) -> int:
        """Whole rounds only (a round is one seeded request)."""
        if len(records) >= config.sampling.n:
            return config.sampling.n
        size = self.round_len(config)
        return len(records) // size * size


class ParticleFilter(Sample):
    """N particles extended a step at a time and resampled by a process reward (particle Gibbs: --pf-iterations)."""

    name = "particle-filter"
    identity = ("pf_step_tokens", "pf_max_steps", "pf_softmax_temp", "pf_iterations")
    searcher = True
    default_scorer = "genrm"
    scores_pool = False
    curves = "search"
    genrm_default = "normalized"
    prm_default = "model"

    def run_chunk(self, config: RunConfig, task: Task, problems: list[Problem], offsets: tuple[int, ...],
                  backend: Backend, scorer: Any) -> ChunkOutput:  # fmt: skip
        """The final particles as completions, with their rewards, the selection and the search's token costs."""
        from tteval.searchers.particle_filter import particle_filter

        s, st = config.sampling, config.strategy
        prompts = [task.raw_prompt(p) if config.prompt_format == "raw" else backend.apply_chat_template(task.messages(p))
                   for p in problems]  # fmt: skip
        questions = [task.messages(p)[-1][1] for p in problems]
        results = particle_filter(
            backend, scorer, questions, prompts, s.n, keys=[p.task_id for p in problems], temperature=s.temperature,
            step_tokens=st.pf_step_tokens, max_steps=st.pf_max_steps, softmax_temp=st.pf_softmax_temp,
            seed=s.seed, iterations=st.pf_iterations, max_tokens=config.token_cap(),
        )  # fmt: skip
        outputs = [[Completion(p.text, p.policy_tokens, "stop") for p in r.particles] for r in results]
        extra = [
            [{"scores": {"prm": p.reward}, "selected": j == r.selected, "steps": r.steps, "pf_iterations": r.iterations,
              "problem_policy_tokens": r.policy_tokens, "problem_verifier_tokens": r.verifier_tokens}  # fmt: skip
             for j, p in enumerate(r.particles)]
            for r in results
        ]
        return outputs, extra

    def worst_case(self, config: RunConfig) -> tuple[int, int, int]:
        """Every particle slot of every pass generates (and scores) at most one step per filtering step, of at most
        min(--pf-step-tokens, --max-tokens) tokens (`_step_budget`): --pf-max-steps steps. Not --max-tokens per slot:
        a resampled particle keeps its parent's tokens, while those of the particle it replaced were spent."""
        st = config.strategy
        steps = min(st.pf_max_steps, config.token_cap())  # a live particle holds a token or more per step
        return config.sampling.n * st.pf_iterations, steps * min(config.token_cap(), st.pf_step_tokens), steps


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (Sample(), ParticleFilter(), PassUntil())}
SEARCHERS: tuple[str, ...] = tuple(name for name, s in STRATEGIES.items() if s.searcher)


def strategy_for(config_or_name: RunConfig | str) -> Strategy:
    """The strategy of a config (or called `name`), or a one-line error naming the choices."""
    name = config_or_name if isinstance(config_or_name, str) else config_or_name.strategy.name
    try:
        return STRATEGIES[name]
    except KeyError:
        raise TtevalError(f"unknown strategy '{name}'; choose one of: {', '.join(STRATEGIES)}") from None
