"""Selectors (self-consistency, weighted vote, best-of-N, PRM step aggregation) on hand-built pools whose right
answer is known, plus brute-force checks of the toy values in ALGORITHMS.md §5.4-5.5."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tteval.errors import TtevalError
from tteval.selectors.best_of_n import aggregate_steps, best_of_n, weighted_best_of_n
from tteval.selectors.pool import Pool, class_credit, indices
from tteval.selectors.rpc import perplexity_consistency, ppl_select
from tteval.selectors.self_consistency import majority_vote, vote_shares, weighted_vote

pytestmark = pytest.mark.filterwarnings("error")


def pool(answers, gold=0, **kw) -> Pool:
    """A pool whose correct answer class is `gold` (class -1 is never correct)."""
    return Pool(answers=answers, correct=[a == gold for a in answers], **kw)


def mean_over_subsets(select, n: int, k: int) -> float:
    """Exact expectation of a selector's credit over all k-subsets, by enumeration."""
    subsets = list(itertools.combinations(range(n), k))
    return math.fsum(select(np.array(s)) for s in subsets) / len(subsets)


# --- self-consistency --------------------------------------------------------------------------------------------


def test_majority_vote_picks_the_largest_class():
    assert majority_vote(pool([0, 0, 0, 1, 1], gold=0)) == 1.0
    assert majority_vote(pool([0, 0, 0, 1, 1], gold=1)) == 0.0
    assert majority_vote(pool([2, 1, 2, 0, 2, 1], gold=2)) == 1.0


def test_majority_vote_splits_ties_evenly():
    assert majority_vote(pool([0, 0, 1, 1], gold=0)) == 0.5
    assert majority_vote(pool([0, 1, 2], gold=2)) == pytest.approx(1 / 3)
    assert majority_vote(pool([0, 1, 2], gold=5)) == 0.0


def test_invalid_answers_never_win():
    assert majority_vote(pool([-1, -1, -1, 1], gold=1)) == 1.0
    assert majority_vote(pool([-1, -1, 0, 0, 1], gold=1)) == 0.0  # the -1s are ignored, class 0 wins
    assert majority_vote(pool([-1, -1], gold=0)) == 0.0  # all invalid: credit 0
    w = np.array([100.0, 100.0, 0.1])
    assert weighted_vote(pool([-1, -1, 3], gold=3), None, w) == 1.0
    # a grader may pass a candidate whose class is -1 (e.g. no behaviour class computed): it still never wins a vote
    p = Pool(answers=[-1, -1], correct=[True, True])
    assert majority_vote(p) == 0.0 and class_credit(p) == {-1: 0.0}


def test_majority_vote_toy_from_the_maj_at_k_notes():
    # ALGORITHMS.md §5.5: answers (a, a, b), gold a, k = 2 -> 2/3 (two of three pairs contain both a's; the
    # {a, b} pairs tie and earn 1/2 each: (1 + 1/2 + 1/2) / 3)
    p = pool([0, 0, 1], gold=0)
    assert mean_over_subsets(lambda ix: majority_vote(p, ix), 3, 2) == pytest.approx(2 / 3)


def test_vote_shares_are_the_vote_fractions():
    assert vote_shares(pool([0, 0, 1, -1])) == {-1: 0.25, 0: 0.5, 1: 0.25}


# --- weighted vote / weighted best-of-N ----------------------------------------------------------------------------


def test_weighted_vote_overrules_the_majority_when_rewards_favour_the_minority():
    p = pool([0, 1, 1], gold=0, rewards={"orm": [0.9, 0.2, 0.3]})
    assert majority_vote(p) == 0.0
    assert weighted_vote(p, None, [0.9, 0.2, 0.3]) == 1.0
    assert weighted_vote(p, None, "orm") == 1.0
    assert weighted_best_of_n(p, None, "orm") == 1.0
    assert weighted_vote(p, None, [0.9, 0.5, 0.5]) == 0.0  # 1.0 for class 1 beats 0.9


def test_weighted_vote_splits_ties_by_votes_and_equal_weights_reduce_to_majority():
    # tied classes share the credit in proportion to their votes: the expectation of GenRM's first-drawn rule
    p = pool([0, 1, 1, 2], gold=1)
    assert weighted_vote(p, None, [0.5, 0.25, 0.25, 0.0]) == pytest.approx(2 / 3)  # 0 and 1 tie at 0.5; 1 has 2 votes
    assert weighted_vote(p, None, np.full(4, 0.7)) == majority_vote(p) == 1.0
    assert weighted_vote(p, None, np.zeros(4)) == pytest.approx(1 / 2)  # every valid class ties at 0: 2 of 4 votes
    assert majority_vote(pool([0, 0, 1, 1], gold=0)) == 0.5  # equal votes: an even split


def test_weighted_vote_rejects_negative_weights_and_unknown_names():
    p = pool([0, 1])
    with pytest.raises(TtevalError, match="non-negative"):
        weighted_vote(p, None, [0.5, -0.1])
    with pytest.raises(TtevalError, match="no reward named 'prm'"):
        weighted_vote(p, None, "prm")


# --- best-of-N -----------------------------------------------------------------------------------------------------


def test_best_of_n_picks_the_highest_reward():
    p = Pool(answers=[0, 1, 0], correct=[False, True, False], rewards={"rm": [0.2, 0.9, 0.1]})
    assert best_of_n(p, None, "rm") == 1.0
    assert best_of_n(p, None, [0.95, 0.9, 0.1]) == 0.0


def test_best_of_n_splits_ties_and_matches_the_exact_toy_values():
    # ALGORITHMS.md §5.4: scores (0.9, 0.9, 0.1), correct (1, 0, 1): k = 1 -> 2/3, k = 2 -> 1/2, k = 3 -> 1/2
    p = Pool(answers=[0, 1, 0], correct=[True, False, True], rewards={"rm": [0.9, 0.9, 0.1]})
    assert best_of_n(p, None, "rm") == 0.5
    for k, want in ((1, 2 / 3), (2, 1 / 2), (3, 1 / 2)):
        assert mean_over_subsets(lambda ix: best_of_n(p, ix, "rm"), 3, k) == pytest.approx(want)


def test_best_of_n_can_demote_invalid_answers():
    p = Pool(answers=[-1, 2], correct=[False, True], rewards={"rm": [0.8, 0.3]})
    assert best_of_n(p, None, "rm") == 0.0
    assert best_of_n(p, None, "rm", invalid_reward=0.0) == 1.0


# --- PRM step aggregation ------------------------------------------------------------------------------------------


def test_step_aggregation_values():
    s = [0.9, 0.5, 0.8]
    assert aggregate_steps(s, "last") == 0.8
    assert aggregate_steps(s) == 0.8  # search-and-learn's default
    assert aggregate_steps(s, "min") == 0.5
    assert aggregate_steps(s, "prod") == pytest.approx(0.36)
    assert aggregate_steps(s, "mean") == pytest.approx(2.2 / 3)
    assert aggregate_steps([0.7], "prod") == 0.7


def test_step_aggregation_rejects_bad_input():
    with pytest.raises(TtevalError, match="unknown step aggregation"):
        aggregate_steps([0.5], "median")
    with pytest.raises(TtevalError, match="empty"):
        aggregate_steps([], "min")
    with pytest.raises(TtevalError, match="finite"):
        aggregate_steps([0.5, float("nan")], "mean")


# --- subsets, order, validation ------------------------------------------------------------------------------------


def test_the_index_subset_is_respected():
    rewards = {"rm": [0.6, 0.5, 0.1, 0.2, 0.99]}
    p = pool([1, 1, 0, 0, 0], gold=1, mean_logprob=np.log([0.5, 0.6, 0.9, 0.9, 0.9]), rewards=rewards)
    assert majority_vote(p) == 0.0
    assert majority_vote(p, [0, 1, 2]) == 1.0
    assert majority_vote(p, np.array([2])) == 0.0
    assert best_of_n(p, None, "rm") == 0.0
    assert best_of_n(p, [0, 1, 2, 3], "rm") == 1.0
    assert weighted_vote(p, [0, 3], "rm") == 1.0
    assert ppl_select(p, [0, 1]) == 1.0 and ppl_select(p) == 0.0


def test_pool_take_permutes_every_field():
    p = Pool(answers=[0, 1, 2], correct=[True, False, False], mean_logprob=[-0.1, -0.2, -0.3],
             completions=["a", "b", "c"], rewards={"rm": [0.1, 0.2, 0.3]}, num_tokens=[5, 6, 7])  # fmt: skip
    q = p.take([2, 0])
    assert q.answers.tolist() == [2, 0] and q.correct.tolist() == [False, True]
    assert q.mean_logprob.tolist() == [-0.3, -0.1] and q.completions == ["c", "a"]
    assert q.rewards["rm"].tolist() == [0.3, 0.1] and q.num_tokens.tolist() == [7, 5]


@st.composite
def pools(draw):
    """Random pools with few classes and coarse rewards/logprobs, so that ties are frequent."""
    n = draw(st.integers(1, 9))
    answers = draw(st.lists(st.integers(-1, 3), min_size=n, max_size=n))
    gold = draw(st.integers(0, 3))
    grid = st.sampled_from([0.0, 0.1, 0.2, 0.3, 0.5, 0.9])
    rewards = draw(st.lists(grid, min_size=n, max_size=n))
    mlp = draw(st.lists(st.sampled_from([-0.1, -0.5, -1.0, -2.0]), min_size=n, max_size=n))
    texts = draw(st.lists(st.sampled_from(["x", "y", "z", "w"]), min_size=n, max_size=n))
    texts = [f"{a}:{t}" for a, t in zip(answers, texts)]  # the same text always carries the same answer
    mlp_by_text = {t: m for t, m in zip(texts, mlp)}  # ...and the same log-probability
    return pool(answers, gold=gold, rewards={"rm": rewards}, completions=texts,
                mean_logprob=[mlp_by_text[t] for t in texts])  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(pools(), st.randoms(use_true_random=False))
def test_selectors_do_not_depend_on_candidate_order(p, rnd):
    perm = list(range(len(p)))
    rnd.shuffle(perm)
    q = p.take(perm)
    assert majority_vote(q) == majority_vote(p)
    assert weighted_vote(q, None, "rm") == weighted_vote(p, None, "rm")
    assert best_of_n(q, None, "rm") == best_of_n(p, None, "rm")
    assert ppl_select(q) == ppl_select(p)
    assert perplexity_consistency(q, prune=False) == perplexity_consistency(p, prune=False)
    assert perplexity_consistency(q, prune=False, dedup=False) == perplexity_consistency(p, prune=False, dedup=False)


@settings(max_examples=60, deadline=None)
@given(pools())
def test_credits_are_probabilities_and_unanimous_correct_pools_score_one(p):
    for value in (majority_vote(p), weighted_vote(p, None, "rm"), best_of_n(p, None, "rm"), ppl_select(p)):
        assert 0.0 <= value <= 1.0
    unanimous = pool([2] * len(p), gold=2, rewards={"rm": p.rewards["rm"]})
    assert majority_vote(unanimous) == weighted_vote(unanimous, None, "rm") == best_of_n(unanimous, None, "rm") == 1.0


def test_pool_validation():
    with pytest.raises(TtevalError, match="mean_logprob has 1 entries but there are 2 answers"):
        Pool(answers=[0, 1], correct=[True, False], mean_logprob=[0.0])
    with pytest.raises(TtevalError, match="correct"):
        Pool(answers=[0, 1], correct=[True])
    with pytest.raises(TtevalError, match="completions"):
        Pool(answers=[0, 1], correct=[True, False], completions=["a"])
    with pytest.raises(TtevalError, match="rewards\\['rm'\\]"):
        Pool(answers=[0, 1], correct=[True, False], rewards={"rm": [0.1, 0.2, 0.3]})
    with pytest.raises(TtevalError, match="num_tokens"):
        Pool(answers=[0, 1], correct=[True, False], num_tokens=[3])
    with pytest.raises(TtevalError, match="NaN"):
        Pool(answers=[0, 1], correct=[True, False], rewards={"rm": [0.1, float("nan")]})
    with pytest.raises(TtevalError, match=">= 0, or -1"):
        Pool(answers=[-2, 1], correct=[False, False])
    with pytest.raises(TtevalError, match="<= 0"):
        Pool(answers=[0], correct=[True], mean_logprob=[0.5])
    p = pool([0, 1])
    with pytest.raises(TtevalError, match="out of range"):
        majority_vote(p, [0, 2])
    with pytest.raises(TtevalError, match="at least one"):
        majority_vote(p, np.array([], dtype=int))
    with pytest.raises(TtevalError, match="integer"):
        majority_vote(p, np.array([0.5]))


def test_class_credit_maps_each_class():
    p = Pool(answers=[3, -1, 0, 3], correct=[True, False, False, True])
    assert class_credit(p) == {-1: 0.0, 0: 0.0, 3: 1.0}
    assert indices(p, None).tolist() == [0, 1, 2, 3]


def test_class_credit_is_the_members_mean_everywhere():
    # one definition (tteval.estimators.class_credit): a class whose members disagree earns their mean correctness,
    # in the selectors, the exact maj@k, the weighted vote and the particle-filter vote alike
    from tteval.estimators import class_credit as est_credit, maj_at_k, weighted_vote_credit

    answers, correct = [0, 0, 0, 1], [True, False, False, False]  # class 0: one of three members graded correct
    assert est_credit(answers, correct).tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    p = Pool(answers=answers, correct=correct)
    assert class_credit(p) == pytest.approx({0: 1 / 3, 1: 0.0})
    assert majority_vote(p) == pytest.approx(1 / 3) == maj_at_k(answers, correct, 4)
    assert weighted_vote(p, None, [1.0] * 4) == pytest.approx(1 / 3)
    assert weighted_vote_credit(answers, [1.0] * 4, correct, np.arange(4)[None, :])[0] == pytest.approx(1 / 3)


def test_selectors_averaged_over_all_subsets_match_the_exact_estimators():
    # enumerating every k-subset of the selector's credit must give tteval.estimators' exact maj@k and bon@k
    from tteval.estimators import best_of_k, maj_at_k

    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(1, 8))
        k = int(rng.integers(1, n + 1))
        answers = rng.integers(-1, 3, n)
        p = pool(answers, gold=int(rng.integers(0, 3)), rewards={"rm": rng.choice([0.1, 0.5, 0.9], n)})
        assert mean_over_subsets(lambda ix: majority_vote(p, ix), n, k) == pytest.approx(maj_at_k(answers, p.correct, k))
        bon = mean_over_subsets(lambda ix: best_of_n(p, ix, "rm"), n, k)
        assert bon == pytest.approx(best_of_k(p.rewards["rm"], p.correct, k))
