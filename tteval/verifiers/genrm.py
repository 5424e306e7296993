"""Generative verifier (GenRM): a model checks a solution step by step and ends with a Yes/No verdict.

Singhi et al., "When To Solve, When To Verify" (COLM 2025), as the authors' code scores a chain
(`llmonk/verify/generate_verifications.py`, `llmonk/evaluate/eval_utils.py`). Each of V verification chains is
sampled whole (temperature 0.7, top-p 0.95), through the verdict line "Verification: Is the answer correct
(Yes/No)? X" that the prompt asks for, with the sampled token and its top alternative at every position (vLLM's
logprobs=1). A chain's score, by `mode`:

* "logprob": P(Yes) read at the verdict position of the sampled chain, unnormalised: the first of positions 0 (a
  direct verifier), -2 (the verdict before the end-of-text token) and -3 (before a trailing "**") where a "Yes" or
  "No" token is among the returned tokens gives p(Yes), else 1 - p(No); missing when neither is there;
* "binary": the written verdict, 1 for yes and 0 for no (`text_verdict`), missing when there is none;
* "hybrid" (the default; the authors' GPQA, Qwen-7B and QwQ configs): the logprob score when it is a positive
  number, else the written verdict (the authors test it for truth, so a P(Yes) of exactly 0 falls back too);
* "normalized" (tteval 0.1): the chain stops before the verdict line, which is then appended and scored by one
  greedy call as p(Yes) / (p(Yes) + p(No)) over its top-20 alternatives, falling back to the written verdict.
  Every chain gets a verdict, which suits particle filtering's process reward on partial solutions.

A solution's score is the mean over its chains, ignoring missing ones, and 0 when all are missing (the authors'
`get_solution_score`). Every chain's sampling seed derives from (run seed, the item's key): the same solution gets
the same chains whatever else is scored in the same call.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Sequence

from tteval.backends.base import Backend, Completion, Request
from tteval.errors import TtevalError
from tteval.paths import shipped_dir
from tteval.verifiers.reward import ScoreResult  # defined there; still importable from here

MODES = ("hybrid", "logprob", "binary", "normalized")
VERDICT = "\nVerification: Is the answer correct (Yes/No)?"
VERDICT_POSITIONS = (0, -2, -3)  # the authors' extract_P_yes: a direct verdict, else the end of the chain
VERIFY_TOP_P = 0.95  # the authors' verification sampling (VerifyScriptConfig)
_YES, _NO = ("Yes", " Yes"), ("No", " No")  # the token texts the authors match, exactly
# The authors' verdict line: "Is the answer (or solution) correct (yes/no)?" then the rest of the LAST line.
_VERDICT_LINE = re.compile(r"is the (?:answer|solution) correct(?:\s*\(yes/no\))?\??\**\s*([^\n]+)$", re.IGNORECASE)
_LATEX_ARG = re.compile(r"\\[a-zA-Z]+\s*{([^{}]+)}")
_LATEX_REST = re.compile(r"\\[a-zA-Z]+|[{}()^$\\]|\*\*")
# Their fallback for "solution status: [correct]" style verdicts, "incorrect" looked for first.
_STATUS = tuple(
    (value, re.compile(rf"(?:solution\s+status|status|assessment)\s*:?\s*[\[(]?\s*{word}\s*[\])]?"))
    for word, value in (("incorrect", 0.0), ("correct", 1.0))
)


def load_template(name: str = "genrm_base.txt") -> str:
    return (shipped_dir("verifiers") / name).read_text(encoding="utf-8")


def text_verdict(chain: str) -> float | None:
    """The written verdict as the authors parse it (`extract_final_verification`): on the chain's last line,
    the text after "Is the answer correct (Yes/No)?", stripped of LaTeX and markdown, is 1.0 if it contains
    "yes", else 0.0 if it contains "no"; otherwise a "status/assessment: (in)correct" phrase anywhere; else None."""
    m = _VERDICT_LINE.search(chain.strip())
    if m:
        rest = _LATEX_REST.sub("", _LATEX_ARG.sub(r"\1", m.group(1))).lower().strip()
        if "yes" in rest:
            return 1.0
        if "no" in rest:
            return 0.0
    low = chain.lower()
    return next((value for value, pattern in _STATUS if pattern.search(low)), None)


def chain_yes_no(c: Completion) -> tuple[float | None, float | None]:
    """(p(Yes), p(No)) at the verdict position of a sampled chain, as the authors read them: at each of positions
    0, -2, -3 in turn, the returned tokens (the sampled one and its top alternatives) are searched for "Yes"/" Yes"
    and "No"/" No"; the first position with either gives both (None where absent). A position past the chain's
    length ends the search (their index error)."""
    tokens, lps, tops = c.tokens or [], c.token_logprobs or [], c.top_logprobs or []
    for pos in VERDICT_POSITIONS:
        if not -len(tokens) <= pos < len(tokens):
            break
        seen = dict(tops[pos]) if len(tops) == len(tokens) else {}
        seen[tokens[pos]] = lps[pos]
        yes = [math.exp(lp) for tok, lp in seen.items() if tok in _YES]
        no = [math.exp(lp) for tok, lp in seen.items() if tok in _NO]
        if yes or no:
            return (yes[-1] if yes else None), (no[-1] if no else None)
    return None, None


def logprob_score(p_yes: float | None, p_no: float | None) -> float | None:
    """The authors' score from the verdict token: p(Yes) when known, else 1 - p(No), else None (unnormalised)."""
    if p_yes is not None:
        return p_yes
    return None if p_no is None else 1.0 - p_no


def chain_score(c: Completion, mode: str) -> float | None:
    """One sampled chain's score in mode "logprob", "binary" or "hybrid" (see the module docstring)."""
    if mode == "binary":
        return text_verdict(c.text)
    s = logprob_score(*chain_yes_no(c))
    if mode == "logprob" or s:  # hybrid: a positive logprob score, else the written verdict
        return s
    return text_verdict(c.text)


def normalized_p_yes(top: dict[str, float] | None) -> float | None:
    """tteval 0.1's P(Yes): p(Yes) / (p(Yes) + p(No)) over the top alternatives of a verdict position."""
    if not top:
        return None
    yes = sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() == "yes")
    no = sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else None


def item_seed(seed: int, key: str) -> int:
    """The verification seed of one item: (run seed, item key) only, never the item's position in a call."""
    return int.from_bytes(hashlib.sha256(f"{seed}:genrm:{key}".encode()).digest()[:4], "little") & 0x7FFFFFFF


class GenRMScorer:
    """Scores (question, solution) pairs with V verification chains each, in one batched backend call (two in
    the "normalized" mode)."""

    name = "genrm"

    def __init__(self, backend: Backend, verifications: int = 1, max_tokens: int = 128, temperature: float = 0.7,
                 seed: int = 0, template: str | None = None, mode: str = "hybrid"):  # fmt: skip
        if mode not in MODES:
            raise TtevalError(f"unknown GenRM score mode '{mode}'; choose one of: {', '.join(MODES)}")
        self.backend, self.verifications, self.max_tokens = backend, verifications, max_tokens
        self.temperature, self.seed, self.mode = temperature, seed, mode
        self.template = template or load_template()

    def score(self, items: Sequence[tuple[str, str]], keys: Sequence[str] | None = None) -> list[ScoreResult]:
        """One ScoreResult per (question, solution). `keys` name the items (e.g. "task_id#sample_index") and seed
        their chains; without keys an item's text seeds them."""
        if not items:
            return []
        if keys is None:
            keys = [hashlib.sha256(f"{q}\0{s}".encode()).hexdigest() for q, s in items]
        prompts = [
            self.backend.apply_chat_template((("user", self.template.format(question=q, solution=s)),))
            for q, s in items
        ]
        normalized = self.mode == "normalized"
        chains = self.backend.generate(
            [
                Request(prompt=p, n=self.verifications, temperature=self.temperature, max_tokens=self.max_tokens,
                        top_p=1.0 if normalized else VERIFY_TOP_P, stop=(VERDICT.strip(),) if normalized else (),
                        top_logprobs=0 if normalized else 1, seed=item_seed(self.seed, k))  # fmt: skip
                for p, k in zip(prompts, keys)
            ]
        )
        if normalized:
            return self._normalized(prompts, chains)
        results = []
        for cs in chains:
            chain_scores = [chain_score(c, self.mode) for c in cs]
            results.append(_result(chain_scores, sum(c.num_tokens for c in cs)))
        return results

    def _normalized(self, prompts: list[str], chains: list[list[Completion]]) -> list[ScoreResult]:
        """tteval 0.1's scoring: the verdict line appended to each chain, P(Yes) normalised from one greedy call."""
        verdict_requests = [
            Request(prompt=p + c.text.rstrip() + VERDICT, n=1, temperature=0.0, max_tokens=1, top_logprobs=20)
            for p, cs in zip(prompts, chains)
            for c in cs
        ]
        verdicts = iter(self.backend.generate(verdict_requests))
        results = []
        for cs in chains:
            chain_scores: list[float | None] = []
            tokens = 0
            for c in cs:
                v = next(verdicts)[0]
                s = normalized_p_yes(v.top_logprobs[0] if v.top_logprobs else None)
                chain_scores.append(s if s is not None else text_verdict(c.text))
                tokens += c.num_tokens + v.num_tokens
            results.append(_result(chain_scores, tokens))
        return results


def _result(chain_scores: list[float | None], tokens: int) -> ScoreResult:
    """A solution's score: the mean of its known chain scores, 0 when none is known."""
    known = [s for s in chain_scores if s is not None]
    return ScoreResult(math.fsum(known) / len(known) if known else 0.0, chain_scores, tokens)
