"""Every exact estimator against brute-force enumeration of all k-subsets; pass@k with exact rationals."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tteval import estimators as est
from tteval.errors import TtevalError


def subsets(n, k):
    return list(itertools.combinations(range(n), k))


def brute_majority(answers, correct, idx):
    counts = {}
    for i in idx:
        if answers[i] >= 0:
            counts[answers[i]] = counts.get(answers[i], 0) + 1
    if not counts:
        return 0.0
    best = max(counts.values())
    winners = [a for a, c in counts.items() if c == best]
    return sum(correct[answers.index(a)] for a in winners) / len(winners)


def brute_best(rewards, correct, idx):
    best = max(rewards[i] for i in idx)
    tied = [i for i in idx if rewards[i] == best]
    return sum(correct[i] for i in tied) / len(tied)


pools = st.integers(1, 9).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(-1, 3), min_size=n, max_size=n),
        st.lists(st.sampled_from([0.1, 0.5, 0.9]), min_size=n, max_size=n),
        st.integers(1, n),
        st.integers(0, 3),
    )
)


@settings(max_examples=150, deadline=None)
@given(pools)
def test_maj_and_best_of_k_equal_brute_force(pool):
    answers, rewards, k, gold = pool
    n = len(answers)
    correct = [a == gold for a in answers]
    idx = subsets(n, k)
    want_maj = sum(brute_majority(answers, correct, s) for s in idx) / len(idx)
    want_bon = sum(brute_best(rewards, correct, s) for s in idx) / len(idx)
    assert est.maj_at_k(answers, correct, k) == pytest.approx(want_maj, abs=1e-12)
    assert est.best_of_k(rewards, correct, k) == pytest.approx(want_bon, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_equals_exact_rational(nck):
    n, c, k = nck
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert float(est.pass_at_k(n, c, k)) == pytest.approx(float(exact), abs=1e-14)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 2, allow_nan=False), min_size=1, max_size=9), st.data())
def test_eff_at_k_is_mean_of_subset_maxima(scores, data):
    k = data.draw(st.integers(1, len(scores)))
    idx = subsets(len(scores), k)
    want = sum(max(scores[i] for i in s) for s in idx) / len(idx)
    assert est.eff_at_k(scores, k) == pytest.approx(want, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=12), st.data())
def test_eff_at_k_on_binary_scores_is_pass_at_k(outcomes, data):
    k = data.draw(st.integers(1, len(outcomes)))
    assert est.eff_at_k([float(o) for o in outcomes], k) == pytest.approx(float(est.pass_at_k(len(outcomes), sum(outcomes), k)))


def test_reference_toy_values():
    assert float(est.pass_at_k(5, 2, 2)) == pytest.approx(0.7)
    assert est.eff_at_k([0.2, 0.5, 0.9], 2) == pytest.approx(0.7667, abs=1e-4)
    assert est.eff_at_k([0.2, 0.5, 0.9], 1) == pytest.approx(0.5333, abs=1e-4)
    assert est.eff_at_k([0.2, 0.5, 0.9], 3) == pytest.approx(0.9)
    np.testing.assert_allclose(est.best_of_k_curve([0.9, 0.9, 0.1], [1, 0, 1], [1, 2, 3]), [2 / 3, 1 / 2, 1 / 2])
    assert est.maj_at_k([0, 0, 1], [True, True, False], 2) == pytest.approx(2 / 3)


def test_pass_at_k_stable_for_thousands_of_samples():
    n, c, k = 2000, 7, 100
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert float(est.pass_at_k(n, c, k)) == pytest.approx(float(exact), abs=1e-12)


def test_k_larger_than_n_is_an_error():
    with pytest.raises(TtevalError, match="exceeds"):
        est.pass_at_k(3, 1, 4)
    with pytest.raises(TtevalError):
        est.maj_at_k([0, 1], [True, False], 3)


def test_invalid_answers_never_win():
    assert est.maj_at_k([-1, -1, -1], [False] * 3, 2) == 0.0
    assert est.maj_at_k([-1, -1, 0], [False, False, True], 3) == 1.0


def test_resampling_agrees_with_exact_majority():
    rng = np.random.default_rng(1)
    answers = list(rng.integers(0, 3, 12))
    correct = [a == 0 for a in answers]
    exact = est.maj_at_k(answers, correct, 4)
    mean, se = est.resampled_at_k(lambda idx: brute_majority(answers, correct, idx), 12, 4, reps=2000, seed=3)
    assert abs(mean - exact) < 4 * se + 1e-9
    assert est.resampled_at_k(lambda idx: 0.25, 5, 5) == (0.25, 0.0)


def test_weighted_majority_follows_weights():
    value, _ = est.weighted_maj_at_k([0, 1, 1], [0.9, 0.1, 0.1], [True, False, False], 3)
    assert value == 1.0


def test_intervals_do_not_collapse_at_the_boundary_and_are_seeded():
    for values in ([0.0] * 20, [1.0] * 20):
        s = est.summarize(values)
        assert s["lower"] < s["upper"] and s["lower"] <= s["value"] <= s["upper"]
    frac = np.random.default_rng(0).random(50)
    assert est.summarize(frac, seed=4) == est.summarize(frac, seed=4)
    s = est.summarize([0.5] * 10)
    assert s["lower"] < 0.5 < s["upper"]


def test_pass_until_is_unbiased():
    for p in (0.05, 0.3):
        r = 2
        # E[(r-1)/(K-1)] under the negative binomial pmf P(K) = C(K-1, r-1) p^r (1-p)^(K-r), summed far out
        expect = sum(math.comb(K - 1, r - 1) * p**r * (1 - p) ** (K - r) * est.pass_until(r, K) for K in range(r, 4000))
        assert expect == pytest.approx(p, rel=1e-6)
    naive = sum(0.05 * 0.95 ** (K - 1) / K for K in range(1, 4000))
    assert naive > 0.05 * 1.5  # the 1/K estimator after the first success is biased upward
    assert est.pass_until_result(1, 1000).censored


def test_efficiency_score_right_censors_after_a_timeout():
    full = est.efficiency_score([0.01, 0.1, 0.1, 0.1], [0.01, 0.1, 0.1, 0.1], time_limit=0.2)
    cut = est.efficiency_score([0.01, 0.1, None, None], [0.01, 0.1, 0.1, 0.1], time_limit=0.2)
    assert full == pytest.approx(1.0) and cut == pytest.approx(0.3)
    assert est.hodges_lehmann([1.0, 2.0, 10.0]) == pytest.approx(3.75)  # median of 1, 1.5, 2, 5.5, 6, 10
