"""The backend protocol: a batch of sampling requests in, completions with tokens and logprobs out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from tteval.errors import TtevalError


@dataclass(frozen=True)
class Request:
    """Sample `n` continuations of one prompt (plain text) or one chat (list of role/content messages)."""

    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None  # ((role, content), ...)
    n: int = 1
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = True
    top_logprobs: int = 0  # also return the top-k alternatives (token -> logprob) at each generated position
    extra: tuple[tuple[str, Any], ...] = ()  # --gen-kwargs: more sampling parameters, passed to vLLM / the server

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("a Request needs exactly one of prompt or messages")


def validate_request(req: Request) -> None:
    """Raise TtevalError for sampling parameters the backend cannot honour."""
    if req.n < 0:
        raise TtevalError(f"n must be >= 0, got {req.n}")
    if req.max_tokens < 0:
        raise TtevalError(f"max_tokens must be >= 0, got {req.max_tokens}")
    if not req.temperature >= 0.0:
        raise TtevalError(f"temperature must be >= 0, got {req.temperature}")
    if not 0.0 < req.top_p <= 1.0:
        raise TtevalError(f"top_p must be in (0, 1], got {req.top_p}")
    if req.top_logprobs < 0:
        raise TtevalError(f"top_logprobs must be >= 0, got {req.top_logprobs}")
    if any(not s for s in req.stop):
        raise TtevalError("stop strings must be non-empty")


# A candidate that is not a model's answer: its request never ran (a prompt the engine cannot take) or was
# aborted or errored inside the engine. It is recorded, graded as incorrect, and counted in the run's metrics.
FAILED_FINISH_REASONS = frozenset({"empty_prompt", "length_prompt", "abort", "error"})


def failed_completion(reason: str, prompt_tokens: int = 0) -> Completion:
    """The placeholder of a candidate that could not be generated, with why (one of FAILED_FINISH_REASONS)."""
    return Completion(text="", num_tokens=0, finish_reason=reason, prompt_tokens=prompt_tokens)


@dataclass
class Completion:
    """One sampled continuation. `logprob` is the sum of the sampled tokens' log-probabilities."""

    text: str
    num_tokens: int
    finish_reason: str  # "stop" (EOS or stop string) | "length" | "repetition" | a FAILED_FINISH_REASONS one
    logprob: float | None = None
    token_logprobs: list[float] | None = None
    tokens: list[str] | None = None  # generated token strings, aligned with token_logprobs
    top_logprobs: list[dict[str, float]] | None = None  # per position, when Request.top_logprobs > 0
    prompt_tokens: int = 0
    stop_reason: str | None = None  # the stop string that ended it; None for EOS or length

    @property
    def mean_logprob(self) -> float | None:
        """Length-normalised log-probability (log of the inverse perplexity), as RPC uses."""
        if self.logprob is None or self.num_tokens == 0:
            return None
        return self.logprob / self.num_tokens


@dataclass
class Usage:
    """Token and call counters a backend accumulates, for compute accounting."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    """Anything that turns a batch of requests into completions; one call per round, never one per sample."""

    name: str
    model: str
    usage: Usage

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Return, for each request, its `n` completions in sample order."""
        ...

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """Render chat messages to the model's prompt string with the generation prompt appended."""
        ...

    def close(self) -> str | None:
        """Release the model; optionally one line for the log (a GPU engine says whether its memory came back)."""
        ...
