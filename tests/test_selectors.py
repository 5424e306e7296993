"""Selectors on hand-built pools where the right choice is known: self-consistency, best-of-N, RPC."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tteval.strategies.best_of_n import aggregate_steps, best_of_n, weighted_best_of_n
from tteval.strategies.pool import Pool
from tteval.strategies.rpc import perplexity_consistency, ppl_select, prune_rule, reasoning_pruning, rpc_confidence
from tteval.strategies.self_consistency import majority_vote, weighted_vote
from tteval.errors import TtevalError

ALL = np.arange


def pool(answers, gold=0, **kw):
    return Pool(answers=answers, correct=[a == gold for a in answers], **kw)


def test_majority_picks_largest_class_and_splits_ties():
    assert majority_vote(pool([0, 0, 1]), ALL(3)) == 1.0
    assert majority_vote(pool([0, 0, 1, 1]), ALL(4)) == 0.5
    assert majority_vote(pool([-1, -1, -1, 0]), ALL(4)) == 1.0  # invalid answers cannot win
    assert majority_vote(pool([-1, -1]), ALL(2)) == 0.0
    assert majority_vote(pool([1, 1, 0]), np.array([2])) == 1.0  # the subset is respected


def test_weighted_vote_can_overrule_the_majority():
    p = pool([0, 1, 1])
    assert majority_vote(p, ALL(3)) == 0.0
    assert weighted_vote(p, ALL(3), np.array([0.9, 0.2, 0.3])) == 1.0
    assert weighted_best_of_n(p, ALL(3), np.array([0.9, 0.2, 0.3])) == 1.0


def test_best_of_n_takes_highest_reward_and_splits_ties():
    p = pool([0, 1, 0])
    assert best_of_n(p, ALL(3), np.array([0.2, 0.9, 0.1])) == 0.0
    assert best_of_n(p, ALL(3), np.array([0.9, 0.9, 0.1])) == 0.5


def test_step_aggregation():
    s = [0.9, 0.5, 0.8]
    assert aggregate_steps(s, "last") == 0.8 and aggregate_steps(s, "min") == 0.5
    assert aggregate_steps(s, "prod") == pytest.approx(0.36) and aggregate_steps(s, "mean") == pytest.approx(2.2 / 3)
    with pytest.raises(TtevalError):
        aggregate_steps(s, "median")


def test_pool_validates_lengths():
    with pytest.raises(TtevalError, match="mean_logprob"):
        Pool(answers=[0, 1], correct=[True, False], mean_logprob=[0.0])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=10), st.randoms())
def test_selectors_do_not_depend_on_candidate_order(answers, rnd):
    rewards = np.linspace(0.1, 0.9, len(answers))
    perm = list(range(len(answers)))
    rnd.shuffle(perm)
    a, b = pool(answers), pool([answers[i] for i in perm])
    assert majority_vote(a, ALL(len(answers))) == majority_vote(b, ALL(len(answers)))
    assert best_of_n(a, ALL(len(answers)), rewards) == best_of_n(b, ALL(len(answers)), rewards[perm])


def logp(p):
    return np.log(np.asarray(p, dtype=float))


def test_rpc_framework_figure_toy():
    # after pruning: green {0.45, 0.55}, pentagon {0.85}, yellow {0.80, 0.80 with identical text}
    p = pool([0, 0, 1, 2, 2], gold=0, mean_logprob=logp([0.45, 0.55, 0.85, 0.80, 0.80]),
             completions=["g1", "g2", "p", "y", "y"])  # fmt: skip
    conf = rpc_confidence(p, ALL(5), prune=False)
    assert conf[0] == pytest.approx(1.00 / 2.65) and conf[1] == pytest.approx(0.85 / 2.65)
    assert conf[2] == pytest.approx(0.80 / 2.65)
    assert perplexity_consistency(p, ALL(5), prune=False) == 1.0
    no_dedup = rpc_confidence(p, ALL(5), prune=False, dedup=False)
    assert no_dedup[2] == pytest.approx(1.60 / 3.45)


def test_rpc_prefers_more_probability_mass_when_votes_tie():
    p = pool([0, 0, 1, 1], gold=1, mean_logprob=logp([0.3, 0.35, 0.7, 0.75]), completions=list("abcd"))
    assert majority_vote(p, ALL(4)) == 0.5
    assert perplexity_consistency(p, ALL(4), prune=False) == 1.0


def test_pruning_drops_the_low_probability_cluster():
    rng = np.random.default_rng(0)
    probs = np.concatenate([rng.uniform(0.85, 0.95, 12), rng.uniform(0.15, 0.25, 6)])
    keep = reasoning_pruning(probs)
    assert keep[:12].all() and not keep[12:].any()


def test_pruning_lets_the_high_probability_answer_win():
    probs = np.array([0.9] * 5 + [0.2] * 25)
    p = pool([0] * 5 + [1] * 25, gold=0, mean_logprob=logp(probs), completions=[str(i) for i in range(30)])
    assert majority_vote(p, ALL(30)) == 0.0
    assert perplexity_consistency(p, ALL(30), prune=False) == 0.0  # 25 x 0.2 = 5.0 > 5 x 0.9 = 4.5
    assert perplexity_consistency(p, ALL(30), prune=True) == 1.0


def test_nothing_is_pruned_in_degenerate_pools():
    assert reasoning_pruning(np.array([0.4])).all()
    assert reasoning_pruning(np.full(6, 0.5)).all()
    keep = reasoning_pruning(np.array([1.0, 1.0, 1e-12, 0.5, 0.99]))
    assert keep.dtype == bool and keep[0] and keep[1]


def test_a_low_component_path_above_the_mean_is_kept():
    p = np.array([0.9, 0.8, 0.1, 0.7])  # mean 0.625
    low = np.array([0.0, 0.0, 1.0, 1.0])  # the last two are better explained by the low component
    high = np.array([1.0, 1.0, 0.0, 0.0])
    assert prune_rule(p, low, high).tolist() == [False, False, True, False]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-1, 3), min_size=1, max_size=10))
def test_pc_without_pruning_and_equal_probabilities_is_self_consistency(answers):
    p = pool(answers, mean_logprob=np.full(len(answers), -0.5), completions=[str(i) for i in range(len(answers))])
    assert perplexity_consistency(p, ALL(len(answers)), prune=False) == majority_vote(p, ALL(len(answers)))


def test_ppl_picks_the_most_probable_path():
    p = pool([1, 0, 1], mean_logprob=logp([0.2, 0.9, 0.3]))
    assert ppl_select(p, ALL(3)) == 1.0
