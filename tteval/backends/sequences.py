"""The decode state of one request (`Prompt`) and of one of its samples (`Sample`), and how a sample takes a token.

Token accounting: `num_tokens`, `tokens` and `token_logprobs` cover every sampled token, including the end-of-
generation token (shown as e.g. "<|im_end|>") and the tokens of a stop string, which `text` leaves out; `logprob`
is their sum and is always filled (Request.logprobs=False only drops the per-token lists). Token strings are the
token's UTF-8 text, a partial multi-byte character written as \\x escapes; `text` is decoded incrementally over
the whole byte stream (invalid bytes become U+FFFD).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tteval.backends.base import Completion, Request
from tteval.backends.kv_slots import Slot
from tteval.backends.llama_glue import Vocab
from tteval.backends.sampling import RowStats, sample_token, top_logprob_ids


@dataclass(eq=False)
class Prompt:
    """A request being served: its tokens, the logits after its prompt, and which samples are still to start."""

    index: int
    request: Request
    tokens: list[int]
    seed: int
    next_sample: int = 0
    logits: np.ndarray | None = None
    stats: RowStats | None = None
    array: np.ndarray = field(init=False, repr=False)  # the tokens as an array, for prefix comparisons

    def __post_init__(self) -> None:
        self.array = np.asarray(self.tokens, dtype=np.int64)


@dataclass(eq=False)
class Sample:
    """One sequence being decoded: sample `index` of a request, in the KV sequence of `slot`."""

    prompt: Prompt
    index: int
    slot: Slot
    rng: np.random.Generator
    limit: int  # most tokens it may sample: max_tokens, or less when the context is shorter
    decoder: Any
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    tops: list[dict[str, float]] = field(default_factory=list)
    text: str = ""
    finish: str | None = None
    stop_reason: str | None = None

    @property
    def seq_id(self) -> int:
        """The KV sequence it decodes in."""
        return self.slot.seq_id

    def advance(self, logits: np.ndarray, stats: RowStats, vocab: Vocab) -> None:
        """Sample one token, record its logprob(s), and decide whether the sample is finished."""
        req = self.prompt.request
        if self.limit <= 0:
            self.finish = "length"
            return
        u = self.rng.random() if req.temperature > 0 else 0.0
        tok = sample_token(logits, stats, req.temperature, req.top_p, u)
        self.token_ids.append(tok)
        self.logprobs.append(float(logits[tok]) - stats.logz)
        if req.top_logprobs:
            top: dict[str, float] = {}
            for t, lp in top_logprob_ids(logits, stats, req.top_logprobs):
                top.setdefault(vocab.token_name(t), lp)
            self.tops.append(top)
        if vocab.eog[tok]:
            self.finish = "stop"
            return
        before = len(self.text)
        self.text += self.decoder.decode(vocab.piece(tok))
        if req.stop and len(self.text) > before:
            hit = first_stop(self.text, req.stop, before)
            if hit is not None:
                at, stop = hit
                self.text, self.finish, self.stop_reason = self.text[:at], "stop", stop
                return
        if len(self.token_ids) >= self.limit:
            self.finish = "length"

    def completion(self, vocab: Vocab) -> Completion:
        """The finished sample as a Completion (its text decoded to the end unless a stop string cut it)."""
        req = self.prompt.request
        text = self.text if self.stop_reason is not None else self.text + self.decoder.decode(b"", final=True)
        want = req.logprobs
        return Completion(
            text=text,
            num_tokens=len(self.token_ids),
            finish_reason=self.finish or "length",
            logprob=float(np.sum(self.logprobs, dtype=np.float64)),
            token_logprobs=list(self.logprobs) if want else None,
            tokens=[vocab.token_name(t) for t in self.token_ids] if want else None,
            top_logprobs=list(self.tops) if req.top_logprobs else None,
            prompt_tokens=len(self.prompt.tokens),
            stop_reason=self.stop_reason,
        )


def empty_completion(p: Prompt) -> Completion:
    """The completion of a request with max_tokens=0: nothing sampled."""
    want = p.request.logprobs
    return Completion(
        text="",
        num_tokens=0,
        finish_reason="length",
        logprob=0.0,
        token_logprobs=[] if want else None,
        tokens=[] if want else None,
        top_logprobs=[] if p.request.top_logprobs else None,
        prompt_tokens=len(p.tokens),
    )


def first_stop(text: str, stops: Sequence[str], new_from: int) -> tuple[int, str] | None:
    """The earliest stop string that ends in text[new_from:] (earlier text held none), as (start, stop)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        at = text.find(stop, max(0, new_from - len(stop) + 1))
        if at >= 0 and (best is None or at < best[0]):
            best = (at, stop)
    return best
