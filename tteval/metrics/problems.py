"""A run's samples as the curves see them: grouped by problem once, one `Pool` per problem, and the `Curve` type."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

import numpy as np

import tteval.estimators as est
from tteval.records import SampleRecord, group_by_problem
from tteval.selectors.pool import INVALID, Pool

Points = list[dict[str, Any]]


def budgets(n: int) -> list[int]:
    """The k values reported for a pool of size n: powers of two up to n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return ks if ks[-1] == n else ks + [n]


def point(values: np.ndarray, seed: int, **extra: Any) -> dict[str, Any]:
    """One curve point: the mean of per-problem values with its interval (`estimators.summarize`), plus `extra`."""
    summary = est.summarize(values, seed=seed)
    return {**summary, **extra}


@dataclass(eq=False)
class Problems:
    """A run's samples grouped by problem once (problems by task id, samples by index), one `Pool` per problem
    (answer classes, correctness, token counts; log-probabilities and texts when every sample has them), and the
    shared quantities every curve uses. `compute` collects the notes curves leave for metrics.json."""

    groups: dict[str, list[SampleRecord]]
    seed: int = 0
    genrm_lambda: float | None = None

    def __post_init__(self) -> None:
        self.compute: dict[str, Any] = {}

    @classmethod
    def of(cls, samples: Sequence[Mapping[str, Any]], seed: int = 0, genrm_lambda: float | None = None) -> Problems:
        return cls(group_by_problem(SampleRecord.from_dict(s) for s in samples), seed, genrm_lambda)

    def samples(self) -> list[SampleRecord]:
        """Every sample, problem by problem."""
        return [s for g in self.groups.values() for s in g]

    @cached_property
    def pools(self) -> list[Pool]:
        """One `Pool` per problem, in problem order (built once, shared by every curve)."""
        with_logprob = all(s.logprob is not None and s.num_tokens for s in self.samples())
        return [
            Pool(answers=[max(int(s.answer_class), INVALID) for s in g],
                 correct=np.array([bool(s.correct) for s in g], dtype=bool),
                 mean_logprob=np.array([s.logprob / s.num_tokens for s in g]) if with_logprob else None,
                 completions=[s.completion or "" for s in g],
                 num_tokens=np.array([int(s.num_tokens or 0) for s in g], dtype=np.int64))
            for g in self.groups.values()
        ]  # fmt: skip

    @property
    def classes(self) -> list[np.ndarray]:
        return [p.answers for p in self.pools]

    @property
    def correct(self) -> list[np.ndarray]:
        return [p.correct for p in self.pools]

    @cached_property
    def n_min(self) -> int:
        return min(len(g) for g in self.groups.values())

    @property
    def ks(self) -> list[int]:
        return budgets(self.n_min)

    @cached_property
    def mean_tokens(self) -> float:
        """Mean generated tokens per sample: the mean over problems of each problem's mean (missing counts as 0)."""
        return float(np.array([np.mean([s.num_tokens or 0 for s in g]) for g in self.groups.values()]).mean())

    def curve(self, values: np.ndarray, ks: Sequence[int] | None = None) -> Points:
        """Points of a (problems, len(ks)) array of per-problem values, k samples costing k x mean tokens."""
        return [point(values[:, i], self.seed, k=k, tokens=k * self.mean_tokens) for i, k in enumerate(ks or self.ks)]


@dataclass(frozen=True)
class Curve:
    """A family of curves: the `SampleRecord` fields it reads, when the samples support it, and how it is computed
    (returning {curve name: points}; notes for metrics.json go into `problems.compute`)."""

    name: str
    needs: tuple[str, ...]
    applies: Callable[[Problems], bool]
    compute: Callable[[Problems], dict[str, Points]]


def result(task, groups, n_min, n, mean_tokens, compute, curves) -> dict[str, Any]:
    if not any(s.num_tokens for g in groups.values() for s in g):  # a pool graded elsewhere, without counts
        mean_tokens = None
        for pts in curves.values():
            for p in pts:
                p["tokens"] = None  # unknown, not zero: no FLOPs are made up from it
    summary = {f"{name}@{p['k']}".replace("@k", ""): p["value"] for name, pts in curves.items() for p in (pts[0], pts[-1])}
    return {
        "task": task,
        "num_problems": len(groups),
        "n": n_min,
        "n_requested": n,
        "mean_tokens_per_sample": mean_tokens,
        "compute": compute,
        "curves": curves,
        "summary": summary,
        "failed": failures(groups),
    }


def failures(groups: dict[str, list[SampleRecord]]) -> dict[str, Any]:
    """Candidates that failed (no model answer: a FAILED_FINISH_REASONS finish; graded incorrect) and scores a
    verifier could not give (`score_failed`; reward 0), counted, with their reasons."""
    from collections import Counter

    from tteval.backends.base import FAILED_FINISH_REASONS

    samples = Counter(s.finish_reason for g in groups.values() for s in g if s.finish_reason in FAILED_FINISH_REASONS)
    scores = Counter(str(s.score_failed) for g in groups.values() for s in g if s.score_failed)
    return {"samples": sum(samples.values()), "samples_by_reason": dict(sorted(samples.items())),
            "scores": sum(scores.values()), "scores_by_reason": dict(sorted(scores.items()))}  # fmt: skip
