"""One problem's candidate pool, as the selectors see it: answer classes, correctness, probabilities, rewards.

Selectors are pure functions `f(pool, idx, ...) -> credit`: the expected correctness (in [0, 1]) of the answer they
pick from the candidates `pool[idx]`, with ties broken uniformly at random (credit split 1/#tied), so they plug
into `tteval.estimators.resampled_at_k(lambda idx: f(pool, idx), len(pool), k)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tteval.errors import TtevalError
from tteval.estimators import class_credit as _class_credit

INVALID = -1  # answer class of a candidate with no (parsable) answer

IndexLike = np.ndarray | Sequence[int] | None


@dataclass(frozen=True, eq=False)
class Pool:
    """Candidates of one problem. `answers` are answer-class ids computed upstream (math equivalence or code
    behaviour; -1 = invalid / no answer, a class that earns no credit in votes even if graded correct; a class's
    credit is `tteval.estimators.class_credit`, the mean correctness of its members);
    `mean_logprob` is each candidate's length-normalised log-probability; `rewards` maps a scorer's name to one
    value per candidate; `correct` is the grader's verdict per candidate."""

    answers: np.ndarray
    correct: np.ndarray
    mean_logprob: np.ndarray | None = None
    completions: list[str] | None = None
    rewards: dict[str, np.ndarray] = field(default_factory=dict)
    num_tokens: np.ndarray | None = None

    def __post_init__(self) -> None:
        answers = _int_vector(self.answers, "answers")
        n = len(answers)
        if n and answers.min() < INVALID:
            raise TtevalError(f"answer classes must be >= 0, or -1 for no answer; got {int(answers.min())}")
        correct = np.asarray(self.correct)
        not_boolean = correct.size and (correct.dtype.kind not in "bui" or not np.isin(correct, (0, 1)).all())
        if correct.ndim != 1 or not_boolean:
            raise TtevalError("pool.correct must be a 1-D array of booleans")
        correct = correct.astype(bool)
        _check_len("correct", len(correct), n)
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen dataclass)
        set_("answers", answers)
        set_("correct", correct)
        if self.mean_logprob is not None:
            mlp = _float_vector(self.mean_logprob, "mean_logprob")
            _check_len("mean_logprob", len(mlp), n)
            if np.any(mlp > 1e-6):
                raise TtevalError("mean_logprob must be <= 0 (a mean log-probability per token)")
            set_("mean_logprob", np.minimum(mlp, 0.0))
        if self.completions is not None:
            if isinstance(self.completions, str) or not all(isinstance(c, str) for c in self.completions):
                raise TtevalError("pool.completions must be a list of strings")
            set_("completions", list(self.completions))
            _check_len("completions", len(self.completions), n)
        rewards = {}
        for name, values in dict(self.rewards).items():
            r = _float_vector(values, f"rewards[{name!r}]")
            _check_len(f"rewards[{name!r}]", len(r), n)
            rewards[str(name)] = r
        set_("rewards", rewards)
        if self.num_tokens is not None:
            tokens = _int_vector(self.num_tokens, "num_tokens")
            _check_len("num_tokens", len(tokens), n)
            set_("num_tokens", tokens)
        # the credit of each candidate's class, computed once: every class-picking selector's credit comes from it
        set_("_class_credit", _class_credit(answers, correct) if n else np.zeros(0))

    def __len__(self) -> int:
        return len(self.answers)

    def take(self, idx: IndexLike) -> Pool:
        """A new pool of the candidates `idx`, in that order (a subset or a permutation)."""
        ix = indices(self, idx)
        return Pool(
            answers=self.answers[ix],
            correct=self.correct[ix],
            mean_logprob=None if self.mean_logprob is None else self.mean_logprob[ix],
            completions=None if self.completions is None else [self.completions[i] for i in ix],
            rewards={name: r[ix] for name, r in self.rewards.items()},
            num_tokens=None if self.num_tokens is None else self.num_tokens[ix],
        )

    def reward(self, name_or_values: str | Sequence[float] | np.ndarray) -> np.ndarray:
        """A per-candidate reward vector: a scorer's name in `rewards`, or values given directly (finite floats)."""
        if isinstance(name_or_values, str):
            if name_or_values not in self.rewards:
                known = ", ".join(sorted(self.rewards)) or "none"
                raise TtevalError(f"no reward named '{name_or_values}' in this pool (known: {known})")
            return self.rewards[name_or_values]
        r = _float_vector(name_or_values, "rewards")
        _check_len("rewards", len(r), len(self))
        return r


def indices(pool: Pool, idx: IndexLike) -> np.ndarray:
    """`idx` as a validated, non-empty integer index array into `pool` (None = the whole pool)."""
    if idx is None:
        ix = np.arange(len(pool))
    else:
        ix = np.asarray(idx)
        if ix.ndim != 1 or (ix.size and ix.dtype.kind not in "iu"):
            raise TtevalError("a candidate subset must be a 1-D array of integer indices")
    if ix.size == 0:
        raise TtevalError("a selector needs at least one candidate")
    if ix.min() < 0 or ix.max() >= len(pool):
        raise TtevalError(f"candidate index out of range for a pool of {len(pool)}")
    return ix.astype(np.intp, copy=False)


def class_credit(pool: Pool) -> dict[int, float]:
    """Each answer class's credit: the mean correctness of its members (`tteval.estimators.class_credit`, the one
    definition); the -1 class (no answer) earns 0."""
    out = {int(c): float(v) for c, v in zip(pool.answers, pool._class_credit)}  # type: ignore[attr-defined]
    return dict(sorted(out.items()))


def candidate_class_credit(pool: Pool) -> np.ndarray:
    """Per candidate, the credit a selector earns by picking its answer class."""
    return pool._class_credit  # type: ignore[attr-defined]


def _check_len(name: str, got: int, n: int) -> None:
    if got != n:
        raise TtevalError(f"pool.{name} has {got} entries but there are {n} answers")


def _int_vector(values: object, name: str) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iub"):
        raise TtevalError(f"pool.{name} must be a 1-D array of integers")
    return a.astype(np.int64, copy=False)


def _float_vector(values: object, name: str) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TtevalError(f"pool.{name} must be a 1-D array of numbers") from None
    if a.ndim != 1:
        raise TtevalError(f"pool.{name} must be a 1-D array of numbers")
    if not np.isfinite(a).all():
        raise TtevalError(f"pool.{name} has a NaN or infinite value")
    return a
