"""Unbiased estimators of strategy@k from one pool of n >= k samples per problem, and intervals over problems.

Everything here is a pure function on numpy arrays. Per-problem functions take one problem's arrays and return
that problem's value (or its curve over several k); a task-level number is the mean over problems, and
`summarize` gives it with a boundary-aware interval. Formulas and sources are in each docstring; the notes are
/work/shared/peers/ALGORITHMS.md sections 4 and 5.

Conventions: k > n is an error (no unbiased estimate exists from n < k samples); an expectation "over k-subsets"
means over the C(n, k) subsets of the pool drawn uniformly without replacement; ties are split evenly.

Modules: `coverage` (pass@k), `majority` (maj@k, `class_credit`), `best_of` (best-of-k), `efficiency` (eff@k,
ENAMEL's score), `resampling` (any selector at k, the weighted vote), `sequential` (PassUntil), `intervals`
(Wilson, bootstrap, `summarize`); `order` and `_checks` are their shared parts.
"""

from tteval.estimators.best_of import best_of_k, best_of_k_curve, best_of_k_many
from tteval.estimators.coverage import pass_at_k, pass_at_k_curve
from tteval.estimators.efficiency import (
    eff_at_k, eff_at_k_curve, eff_at_k_many, efficiency_score, efficiency_time_limit, hodges_lehmann, level_time,
)
from tteval.estimators.intervals import bootstrap_ci, summarize, wilson_interval
from tteval.estimators.majority import answer_classes, class_credit, maj_at_k, maj_at_k_curve, maj_at_k_many
from tteval.estimators.resampling import resampled_at_k, weighted_maj_at_k, weighted_vote_credit
from tteval.estimators.sequential import PassUntilResult, pass_until, pass_until_from_outcomes, pass_until_result

__all__ = [
    "answer_classes",
    "PassUntilResult", "best_of_k", "best_of_k_curve", "best_of_k_many", "bootstrap_ci", "class_credit", "eff_at_k",
    "eff_at_k_curve", "eff_at_k_many", "efficiency_score", "efficiency_time_limit", "hodges_lehmann", "level_time",
    "maj_at_k", "maj_at_k_curve", "maj_at_k_many", "pass_at_k", "pass_at_k_curve", "pass_until",
    "pass_until_from_outcomes", "pass_until_result", "resampled_at_k", "summarize", "weighted_maj_at_k",
    "weighted_vote_credit", "wilson_interval",
]
