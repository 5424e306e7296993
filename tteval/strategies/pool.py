"""One problem's candidate pool, as the selectors see it: answer classes, correctness, probabilities, rewards."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tteval.errors import TtevalError


@dataclass
class Pool:
    """Candidates of one problem; `answers` are class ids from the verifier (-1: no answer)."""

    answers: np.ndarray
    correct: np.ndarray
    mean_logprob: np.ndarray | None = None
    completions: list[str] | None = None
    rewards: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.answers = np.asarray(self.answers, dtype=int)
        self.correct = np.asarray(self.correct, dtype=bool)
        n = len(self.answers)
        sizes = {"correct": len(self.correct)}
        if self.mean_logprob is not None:
            self.mean_logprob = np.asarray(self.mean_logprob, dtype=float)
            sizes["mean_logprob"] = len(self.mean_logprob)
        if self.completions is not None:
            sizes["completions"] = len(self.completions)
        sizes.update({f"rewards[{k}]": len(v) for k, v in self.rewards.items()})
        bad = [name for name, size in sizes.items() if size != n]
        if bad:
            raise TtevalError(f"pool fields {', '.join(bad)} do not match the {n} answers")


def class_credit(pool: Pool, winners: list[int]) -> float:
    """Expected correctness when one of the tied winning classes is picked uniformly (0 for no winner)."""
    if not winners:
        return 0.0
    return float(np.mean([pool.correct[pool.answers == c].any() for c in winners]))


def vote(pool: Pool, idx: np.ndarray, weights: np.ndarray) -> float:
    """Credit of the answer class with the largest summed weight among `idx`; invalid answers never vote."""
    totals: dict[int, float] = {}
    for i in idx:
        a = int(pool.answers[i])
        if a >= 0:
            totals[a] = totals.get(a, 0.0) + float(weights[i])
    if not totals:
        return 0.0
    best = max(totals.values())
    return class_credit(pool, [a for a, t in totals.items() if t == best])
