"""The reward-model protocol (`Scorer`: outcome and process reward models alike) and the step helpers of PRMs.

An item is (question, candidate), the candidate whole or partial. A step is text between blank lines, as particle
filtering defines it (a step ends at "\\n\\n").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from tteval.errors import TtevalError

AGGREGATIONS = ("last", "min", "prod", "mean")
_BLANK_LINE = re.compile(r"\n\s*\n")  # a newline, then any whitespace-only lines, then a newline


@dataclass
class ScoreResult:
    """A scorer's reward in [0, 1] for one candidate, with the per-chain or per-step scores and the tokens it cost.

    `failed` says why an item could not be scored (e.g. "length_prompt": longer than the scorer's context); such
    an item gets the lowest reward, 0."""

    score: float
    chain_scores: list[float | None] = field(default_factory=list)
    tokens: int = 0
    step_scores: list[float] | None = None
    failed: str | None = None


class Scorer(Protocol):
    """Scores (question, candidate or partial candidate) pairs: one ScoreResult per item, in item order.

    `keys` name the items (task id and sample or particle path): a scorer that samples seeds each item from its key,
    so an item's score never depends on which other items share the call."""

    name: str

    def score(self, items: Sequence[tuple[str, str]], keys: Sequence[str] | None = None) -> list[ScoreResult]: ...


def split_steps(text: str) -> list[str]:
    """The steps of a solution: split at blank lines (empty or whitespace-only), each step stripped of surrounding
    whitespace, empty steps dropped; single newlines stay inside a step. Whitespace-only text has no steps: []."""
    return [s for s in (part.strip() for part in _BLANK_LINE.split(text)) if s]


def aggregate_steps(step_scores: Sequence[float], how: str = "last") -> float:
    """One reward from per-step rewards: the last, the minimum, the product or the mean.

    An empty list is an error (TtevalError), not a default reward: every scored candidate has at least one step."""
    if how not in AGGREGATIONS:
        raise TtevalError(f"unknown step aggregation {how!r}: use one of {', '.join(AGGREGATIONS)}")
    if not step_scores:
        raise TtevalError(f"no step scores to aggregate ({how}): an empty list; a scored candidate has at least one step")
    scores = [float(s) for s in step_scores]
    if not all(math.isfinite(x) for x in scores):
        raise TtevalError("step scores must be finite numbers")
    if how == "last":
        return scores[-1]
    if how == "min":
        return min(scores)
    if how == "prod":
        return math.prod(scores)
    return math.fsum(scores) / len(scores)
