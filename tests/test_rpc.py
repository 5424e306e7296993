"""RPC (Reasoning Pruning + Perplexity Consistency) and the PPL baseline, against hand-built pools whose answer is
known, the toy example of the RPC framework figure (ALGORITHMS.md §1.3) and the pitfalls listed in §1.4.
Every pruning decision here comes from the real Weibull-mixture fit (scipy L-BFGS-B)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tteval.errors import TtevalError
from tteval.selectors.pool import Pool
from tteval.selectors.rpc import (
    fit_weibull_mixture,
    mixture_nll,
    pc_scores,
    perplexity_consistency,
    ppl_select,
    prune_rule,
    reasoning_pruning,
    rpc_confidence,
    weibull_mean,
)
from tteval.selectors.self_consistency import majority_vote

pytestmark = pytest.mark.filterwarnings("error")  # overflow/underflow in the fit must not leak out as warnings

GREEN, PENTAGON, YELLOW, RED = 0, 1, 2, 3


def rpc_pool(answers, probs, gold, texts=None) -> Pool:
    """A pool with path probabilities `probs` (mean_logprob = log p) and distinct texts unless given."""
    texts = texts if texts is not None else [f"path {i}" for i in range(len(answers))]
    return Pool(answers=answers, correct=[a == gold for a in answers], mean_logprob=np.log(probs), completions=texts)


def figure_pool() -> Pool:
    """The RPC framework figure: green {0.45, 0.55}, pentagon {0.85}, yellow {0.80, 0.80 with identical text} and
    three low-probability red paths, which the fit prunes. Red has the most votes; green is correct."""
    return rpc_pool(
        [GREEN, GREEN, PENTAGON, YELLOW, YELLOW, RED, RED, RED],
        [0.45, 0.55, 0.85, 0.80, 0.80, 0.10, 0.12, 0.15],
        gold=GREEN,
        texts=["g1", "g2", "p", "y", "y", "r1", "r2", "r3"],
    )


def test_the_framework_figure_toy_with_the_real_fit():
    p = figure_pool()
    keep = reasoning_pruning(np.exp(p.mean_logprob))
    assert keep.tolist() == [True] * 5 + [False] * 3  # exactly the red paths go
    scores = pc_scores(p)
    assert scores == {GREEN: pytest.approx(1.00), PENTAGON: pytest.approx(0.85), YELLOW: pytest.approx(0.80), RED: 0.0}
    conf = rpc_confidence(p)
    assert conf[GREEN] == pytest.approx(1.00 / 2.65) and conf[PENTAGON] == pytest.approx(0.85 / 2.65)
    assert conf[YELLOW] == pytest.approx(0.80 / 2.65) and conf[RED] == 0.0
    assert [round(100 * conf[c], 1) for c in (GREEN, PENTAGON, YELLOW)] == [37.7, 32.1, 30.2]
    assert sum(conf.values()) == pytest.approx(1.0)
    assert perplexity_consistency(p) == 1.0
    assert majority_vote(p) == 0.0  # red's three votes win self-consistency


def test_without_pruning_the_red_paths_add_mass_but_green_still_wins():
    p = figure_pool()
    scores = pc_scores(p, prune=False)
    assert scores[RED] == pytest.approx(0.37)
    assert rpc_confidence(p, prune=False)[GREEN] == pytest.approx(1.00 / 3.02)
    assert perplexity_consistency(p, prune=False) == 1.0


def test_rpc_prefers_the_answer_with_more_probability_mass_when_votes_tie():
    p = rpc_pool([0, 0, 1, 1], [0.30, 0.35, 0.70, 0.75], gold=1)
    assert majority_vote(p) == 0.5
    assert perplexity_consistency(p, prune=False) == 1.0
    assert perplexity_consistency(p) == 1.0
    q = rpc_pool([0, 0, 1, 1], [0.30, 0.35, 0.70, 0.75], gold=0)
    assert perplexity_consistency(q) == 0.0


def test_pruning_drops_the_low_probability_cluster():
    rng = np.random.default_rng(0)
    probs = np.concatenate([rng.uniform(0.85, 0.95, 12), rng.uniform(0.15, 0.25, 6)])
    keep = reasoning_pruning(probs)
    assert keep[:12].all() and not keep[12:].any()
    assert reasoning_pruning(np.array([0.9] * 12 + [0.2] * 6)).tolist() == [True] * 12 + [False] * 6


def test_pruning_lets_the_confident_minority_win():
    # 25 x 0.2 = 5.0 outweighs 5 x 0.9 = 4.5 without pruning; pruning removes the 0.2 paths
    probs = np.array([0.9] * 5 + [0.2] * 25)
    p = rpc_pool([0] * 5 + [1] * 25, probs, gold=0)
    assert majority_vote(p) == 0.0
    assert perplexity_consistency(p, prune=False) == 0.0
    assert perplexity_consistency(p) == 1.0
    assert rpc_confidence(p) == {0: 1.0, 1: 0.0}  # the pruned class is still there, with score 0


def test_a_low_component_path_above_the_mean_is_kept():
    # a tight high component at 0.95 and a broad low one: 0.7 belongs to the low component but lies above the
    # mean (6.6 / 11 = 0.6), so it stays; 0.5 is low and below the mean, so it goes
    probs = np.array([0.95] * 4 + [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    posterior_high = fit_weibull_mixture(probs).posterior_high(probs)
    keep = reasoning_pruning(probs)
    assert posterior_high[-1] < 0.5 and probs[-1] > probs.mean() and keep[-1]
    assert posterior_high[-3] < 0.5 and probs[-3] < probs.mean() and not keep[-3]
    assert keep[:4].all()


def test_the_prune_rule_needs_both_conditions():
    p = np.array([0.9, 0.8, 0.1, 0.7])  # mean 0.625
    posterior_high = np.array([1.0, 0.0, 0.0, 0.0])  # only the first is explained by the high component
    # 0.8 and 0.7 are low-component but above the mean: kept; 0.1 is both: pruned
    assert prune_rule(p, posterior_high).tolist() == [False, False, True, False]
    assert prune_rule(p, np.ones(4)).tolist() == [False] * 4  # below the mean but high-component: kept
    assert prune_rule(p, np.full(4, np.nan)).tolist() == [False] * 4  # undefined posterior: kept


def test_nothing_is_pruned_for_one_path_or_equal_probabilities():
    assert reasoning_pruning(np.array([0.4])).tolist() == [True]
    assert reasoning_pruning(np.array([0.3, 0.3])).tolist() == [True, True]
    assert reasoning_pruning(np.full(7, 0.123456789)).all()
    assert reasoning_pruning(np.ones(5)).all()


def test_two_distinct_paths_prune_the_lower_one_without_changing_the_answer():
    # the original fits the mixture for K = 2 as well; the lower path is pruned, which leaves the choice (the more
    # probable path's answer) unchanged and only sharpens the confidence
    assert reasoning_pruning(np.array([0.2, 0.9])).tolist() == [False, True]
    for gold in (0, 1):
        p = rpc_pool([0, 1], [0.2, 0.9], gold=gold)
        assert perplexity_consistency(p) == perplexity_consistency(p, prune=False) == ppl_select(p) == float(gold == 1)
    assert rpc_confidence(rpc_pool([0, 1], [0.2, 0.9], gold=1)) == {0: 0.0, 1: 1.0}


def test_one_path_rpc_equals_ppl_and_self_consistency():
    p = rpc_pool([0, 1, -1, 0, 2], [0.3, 0.9, 0.8, 0.5, 0.6], gold=0)
    for i in range(len(p)):
        ix = np.array([i])
        assert perplexity_consistency(p, ix) == ppl_select(p, ix) == majority_vote(p, ix) == float(p.correct[i])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.integers(-1, 3), min_size=1, max_size=12),
    st.integers(0, 3),
    st.floats(-5.0, 0.0, allow_nan=False),
    st.booleans(),
)
def test_pc_with_equal_probabilities_is_self_consistency(answers, gold, logprob, prune):
    texts = [f"path {i}" for i in range(len(answers))]
    mlp = np.full(len(answers), logprob)
    p = Pool(answers=answers, correct=[a == gold for a in answers], mean_logprob=mlp, completions=texts)
    sc = majority_vote(p)
    # tteval 0.1's rule keeps invalid answers out unless no valid class scores, as self-consistency does
    assert perplexity_consistency(p, prune=prune, invalid="last-resort") == sc
    assert perplexity_consistency(p, prune=prune, dedup=False, invalid="last-resort") == sc
    if -1 not in answers:  # the authors' rule differs only where the invalid class competes
        assert perplexity_consistency(p, prune=prune) == sc


def test_dedup_counts_identical_completions_once():
    # class 1: two byte-identical paths at 0.8; class 0: two different paths 0.45 + 0.55
    p = rpc_pool([0, 0, 1, 1], [0.45, 0.55, 0.8, 0.8], gold=0, texts=["a", "b", "same", "same"])
    assert pc_scores(p, prune=False) == {0: pytest.approx(1.0), 1: pytest.approx(0.8)}
    assert pc_scores(p, prune=False, dedup=False) == {0: pytest.approx(1.0), 1: pytest.approx(1.6)}
    assert perplexity_consistency(p, prune=False) == 1.0  # RPC: 1.0 > 0.8
    assert perplexity_consistency(p, prune=False, dedup=False) == 0.0  # the fork's PC: 1.6 > 1.0
    assert rpc_confidence(p, prune=False, dedup=False)[1] == pytest.approx(1.6 / 2.6)
    with pytest.raises(TtevalError, match="completions"):
        perplexity_consistency(Pool(answers=[0], correct=[True], mean_logprob=[-0.1]))
    assert perplexity_consistency(Pool(answers=[0], correct=[True], mean_logprob=[-0.1]), dedup=False) == 1.0


def test_bridging_internal_probability_invalid_answers_compete_as_in_compute_rpc():
    # the issue's example, as the authors' compute_rpc.py scores it: "[Invalid]" is an ordinary answer, its two
    # paths outweigh A's one (no path is pruned here), it wins, and the problem earns 0 (tteval 0.1 gave 1.0)
    p = rpc_pool([-1, -1, 0], [0.8, 0.9, 0.95], gold=0)
    assert reasoning_pruning(np.exp(p.mean_logprob)).all()
    assert perplexity_consistency(p) == 0.0
    assert perplexity_consistency(p, invalid="last-resort") == 1.0  # tteval 0.1's rule, kept as an option
    # an exact tie between the invalid class and a correct one splits the credit, as the authors' 1/#tied
    assert perplexity_consistency(rpc_pool([-1, 0], [0.5, 0.5], gold=0)) == 0.5


def test_invalid_answers_win_only_without_a_positive_valid_score_under_the_last_resort_rule():
    # invalid paths carry the most mass but a valid class has a positive score: the valid class wins
    p = rpc_pool([-1, -1, -1, 0], [0.9, 0.9, 0.9, 0.3], gold=0)
    assert perplexity_consistency(p, prune=False, invalid="last-resort") == 1.0
    assert perplexity_consistency(p, prune=False) == 0.0  # the authors' rule: the invalid class wins
    # every valid path is pruned while invalid ones are kept: the invalid class wins and earns 0
    probs = np.array([0.9] * 12 + [0.2] * 6)
    q = rpc_pool([-1] * 12 + [0] * 6, probs, gold=0)
    assert perplexity_consistency(q, prune=False, invalid="last-resort") == 1.0
    assert perplexity_consistency(q, invalid="last-resort") == 0.0
    assert rpc_confidence(q) == {-1: 1.0, 0: 0.0}


def test_pruning_and_rpc_do_not_depend_on_path_order():
    p = figure_pool()
    rng = np.random.default_rng(1)
    keep = reasoning_pruning(np.exp(p.mean_logprob))
    for _ in range(5):
        perm = rng.permutation(len(p))
        q = p.take(perm)
        assert reasoning_pruning(np.exp(q.mean_logprob)).tolist() == keep[perm].tolist()
        assert perplexity_consistency(q) == perplexity_consistency(p)
        assert rpc_confidence(q) == rpc_confidence(p)


def test_extreme_probabilities_do_not_break_the_fit():
    # p = 1.0 exactly, p underflowing to 0 (mean logprob -800) and a tiny p: finite fit, a boolean mask, no warning
    for probs in (
        np.array([1.0, 1.0, 0.5, 0.21]),
        np.array([1.0, 0.999, 0.98, 0.31, 0.3]),
        np.exp(np.array([-800.0, -460.0, -0.7, -0.1, 0.0])),
        np.array([1e-12, 1e-11, 0.93, 0.94, 0.95]),
    ):
        mix = fit_weibull_mixture(probs)
        assert np.isfinite([mix.w_high, mix.k_high, mix.lam_high, mix.k_low, mix.lam_low]).all()
        assert 0.2 <= mix.w_high <= 0.8
        keep = reasoning_pruning(probs)
        assert keep.dtype == bool and keep.shape == probs.shape
        assert keep[np.argmax(probs)]  # the most probable path is never below the mean
    assert reasoning_pruning(np.array([1.0, 1.0, 0.5, 0.21])).tolist() == [True, True, True, False]
    theta_extremes = ([0.2, 0.01, 0.01, 0.01, 0.01], [0.8, 1e4, 1e-2, 500.0, 1e6], [0.5, 0.01, 1e9, 3.0, 0.5])
    for theta in theta_extremes:
        assert np.isfinite(mixture_nll(np.array(theta), np.array([1e-300, 0.5, 1.0])))


def test_components_are_relabelled_by_their_mean():
    mix = fit_weibull_mixture(np.array([0.9] * 12 + [0.2] * 6))
    assert weibull_mean(mix.k_high, mix.lam_high) > weibull_mean(mix.k_low, mix.lam_low)
    assert weibull_mean(mix.k_high, mix.lam_high) == pytest.approx(0.9, abs=0.01)
    assert mix.w_high == pytest.approx(12 / 18, abs=0.01)


def test_ppl_picks_the_most_probable_path_and_splits_ties():
    p = rpc_pool([1, 0, 1], [0.2, 0.9, 0.3], gold=0)
    assert ppl_select(p) == 1.0
    q = rpc_pool([1, 0, 1], [0.9, 0.9, 0.3], gold=0)
    assert ppl_select(q) == 0.5
    with pytest.raises(TtevalError, match="mean log-probability"):
        ppl_select(Pool(answers=[0], correct=[True]))


def test_reasoning_pruning_validates_its_input():
    with pytest.raises(TtevalError, match="\\[0, 1\\]"):
        reasoning_pruning(np.array([0.5, 1.5]))
    assert reasoning_pruning(np.array([])).tolist() == []


def test_the_mixture_fit_uses_an_exact_gradient():
    from scipy.optimize import approx_fprime

    from tteval.selectors.rpc import mixture_nll, mixture_nll_grad

    rng = np.random.default_rng(3)
    for _ in range(5):
        x = np.sort(rng.uniform(0.05, 0.95, 6))
        theta = np.array([rng.uniform(0.2, 0.8), *rng.uniform(0.3, 3.0, 4)])
        value, grad = mixture_nll_grad(theta, x)
        assert value == pytest.approx(mixture_nll(theta, x), rel=1e-12)
        np.testing.assert_allclose(grad, approx_fprime(theta, lambda t: mixture_nll(t, x), 1e-7), rtol=1e-4, atol=1e-4)
    # a clipped density (x at the floor with k < 1 diverges) contributes no gradient, never NaN
    _, grad = mixture_nll_grad(np.array([0.5, 0.5, 1.0, 0.5, 1.0]), np.array([1e-300, 0.5]))
    assert np.all(np.isfinite(grad))


@settings(max_examples=200, deadline=None)
@given(
    answers=st.lists(st.integers(-1, 2), min_size=2, max_size=2),
    probs=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=2),
    gold=st.integers(0, 2),
)
def test_rpc_of_a_pair_skips_the_fit_only_where_it_cannot_change_the_choice(answers, probs, gold):
    from tteval.selectors.self_consistency import credit, winner_classes

    p = rpc_pool(answers, probs, gold)
    scores = pc_scores(p, prune=True)  # always fits the mixture (when the two p differ)
    classes = np.array(list(scores), dtype=np.int64)
    for rule in ("compete", "last-resort"):
        full = credit(p, np.arange(2), winner_classes(classes, np.array(list(scores.values())), rule))
        assert perplexity_consistency(p, invalid=rule) == full


@settings(max_examples=300, deadline=None)
@given(
    answers=st.lists(st.integers(-1, 3), min_size=2, max_size=10),
    probs=st.data(),
    dedup=st.booleans(),
    gold=st.integers(0, 3),
)
def test_rpc_skips_the_fit_only_where_no_pruning_can_change_the_winner(answers, probs, dedup, gold):
    """The shortcut (no fit when one class wins whatever is pruned) gives exactly the full computation's value."""
    from tteval.selectors.self_consistency import credit, winner_classes

    k = len(answers)
    ps = probs.draw(st.lists(st.sampled_from([0.05, 0.2, 0.3, 0.5, 0.55, 0.7, 0.9, 1.0]) | st.floats(0.001, 1.0),
                             min_size=k, max_size=k))  # fmt: skip
    texts = [f"path {i % 3}" if dedup else f"path {i}" for i in range(k)]  # repeated texts exercise de-duplication
    p = rpc_pool(answers, ps, gold, texts=texts)
    ix = np.arange(k)
    scores = pc_scores(p, ix, prune=True, dedup=dedup)  # the full computation: fit, prune, sum
    classes = np.array(list(scores), dtype=np.int64)
    full = credit(p, ix, winner_classes(classes, np.array(list(scores.values())), "compete"))
    assert perplexity_consistency(p, ix, dedup=dedup) == full


def test_rpc_shortcut_skips_the_fit_for_a_clear_winner():
    from tteval.selectors import rpc

    rpc._fit_sorted.cache_clear()
    clear = rpc_pool([0, 0, 0, 1], [0.9, 0.8, 0.85, 0.1], gold=0)
    assert perplexity_consistency(clear) == 1.0
    assert rpc._fit_sorted.cache_info().misses == 0
    close = rpc_pool([0, 1, 1, 1], [0.9, 0.4, 0.35, 0.3], gold=0)  # 1's low paths could be pruned: fit needed
    perplexity_consistency(close)
    assert rpc._fit_sorted.cache_info().misses == 1
