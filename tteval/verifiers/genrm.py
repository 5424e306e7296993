"""Generative verifier (GenRM): a model checks a solution step by step; the score is P(Yes) of its verdict.

Singhi et al., "When To Solve, When To Verify" (COLM 2025). Each of V verification chains is sampled with the
verifier prompt; then the verdict line "Verification: Is the answer correct (Yes/No)?" is appended and the
verifier's next-token distribution gives P(Yes) = p(Yes) / (p(Yes) + p(No)) over the top alternatives (the
reference reads p(Yes) at the verdict position in the same way). A chain whose verdict has neither token in the
top alternatives falls back to the text verdict it wrote, else it is missing; a solution's score is the mean over
its chains, ignoring missing ones, and 0 when all are missing (reference behaviour).
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from tteval.backends.base import Backend, Request
from tteval.paths import shipped_dir
from tteval.verifiers.scorer import ScoreResult  # defined there; still importable from here

VERDICT = "\nVerification: Is the answer correct (Yes/No)?"
_TEXT_VERDICT = re.compile(r"correct\s*\(yes/no\)\?\s*\**\s*(yes|no)\b", re.IGNORECASE)


def load_template(name: str = "genrm_base.txt") -> str:
    return (shipped_dir("verifiers") / name).read_text(encoding="utf-8")


def p_yes(top: dict[str, float] | None) -> float | None:
    """P(Yes) normalised over the Yes/No mass among the top alternatives at the verdict position."""
    if not top:
        return None
    yes = sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() == "yes")
    no = sum(math.exp(lp) for tok, lp in top.items() if tok.strip().lower() == "no")
    return yes / (yes + no) if yes + no > 0 else None


def text_verdict(chain: str) -> float | None:
    """1.0 / 0.0 for a written 'Is the answer correct (Yes/No)? Yes|No' verdict (the last one), else None."""
    found = _TEXT_VERDICT.findall(chain)
    return None if not found else float(found[-1].lower() == "yes")


class GenRMScorer:
    """Scores (question, solution) pairs with V verification chains each, in two batched backend calls."""

    name = "genrm"

    def __init__(self, backend: Backend, verifications: int = 1, max_tokens: int = 128, temperature: float = 0.7,
                 seed: int = 0, template: str | None = None):  # fmt: skip
        self.backend, self.verifications, self.max_tokens = backend, verifications, max_tokens
        self.temperature, self.seed = temperature, seed
        self.template = template or load_template()

    def score(self, items: Sequence[tuple[str, str]]) -> list[ScoreResult]:
        """One ScoreResult per (question, solution)."""
        if not items:
            return []
        prompts = [
            self.backend.apply_chat_template((("user", self.template.format(question=q, solution=s)),))
            for q, s in items
        ]
        chains = self.backend.generate(
            [
                Request(prompt=p, n=self.verifications, temperature=self.temperature, max_tokens=self.max_tokens,
                        stop=(VERDICT.strip(),), seed=self.seed + i)  # fmt: skip
                for i, p in enumerate(prompts)
            ]
        )
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
                top = v.top_logprobs[0] if v.top_logprobs else None
                s = p_yes(top)
                chain_scores.append(s if s is not None else text_verdict(c.text))
                tokens += c.num_tokens + v.num_tokens
            known = [s for s in chain_scores if s is not None]
            results.append(ScoreResult(sum(known) / len(known) if known else 0.0, chain_scores, tokens))
        return results
