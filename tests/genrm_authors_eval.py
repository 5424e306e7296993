"""Test-only re-implementation of the GenRM authors' evaluation of a pool (sc-genrm-scaling,
`llmonk/evaluate/plot_success_rate.py` `compute_metrics_for_problem` and `eval_utils.py`), written from reading it,
to check tteval's numbers against theirs on their released GPQA pool.

Per problem, their code reseeds Python's `random` (and numpy) with 33, then draws in a fixed order: majority
voting at each S (25 random subsets, 1 at S = N; a score-weighted vote with invalid answers at -1, the first-drawn
answer winning ties), then best-of-S at each (V, S) over the verified solutions (scores = mean of the known
verdicts among the first V, 0 when none, 0 for an invalid answer; 100 random shuffles to break ties, each scored by
the rank formula sum_i c_(i) C(N-i-1, S-1) / (C(N, S) + 1e-9)). Coverage is HumanEval's pass@k. Reproducing the
draws in the same order reproduces their numbers exactly.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from scipy.special import binom

# The plot points the authors committed beside the pool (`plot_points_success_rate_vs_budget_logprobs=hybrid.pickle`,
# commit a0435ed), keyed S (coverage, majority voting) and (S, V) (best-of-N).
COVERAGE = {1: 0.4373779296874999, 2: 0.5547855407234252, 4: 0.6471664586848518, 8: 0.7162236226147385,
            16: 0.764143651117493, 32: 0.7918634510674691, 64: 0.8203098648445825, 128: 0.875}  # fmt: skip
MAJORITY_VOTING = {1: 0.42625, 2: 0.46687500000000004, 4: 0.474375, 8: 0.48437500000000006, 16: 0.48, 32: 0.48125,
                   64: 0.47812499999999997, 128: 0.46875}  # fmt: skip
_BEST = """
1 0.45947265624282074 0.45947265624282074 0.45947265624282074 0.45947265624282074 0.45947265624282074 0.45947265624282074
2 0.4699625651039335 0.4709768725196077 0.4714512028767503 0.47202039930532147 0.47383587549579675 0.475779777405518
4 0.4745839159116012 0.476411488777904 0.4755449492210117 0.4771874687684922 0.480156358449563 0.4840791385238811
8 0.4723902836461348 0.47939154927502214 0.47768145439688037 0.47950224027704147 0.48359288501953845 0.4913059621069466
16 0.47178640743262035 0.4754430509779788 0.4759195213626895 0.481221562693185 0.4859015393694077 0.4973851727857147
32 0.4728353069122328 0.47436292546112946 0.47601124149804985 0.48225849643477986 0.48327339229327004 0.4997919157446549
64 0.4778124995221874 0.4728124995271874 0.4721874995278124 0.48437499951562485 0.47578124952421863 0.5131249994868748
"""
V_GRID = (1, 2, 4, 8, 16, 32)
BEST_OF_K = {(int(row.split()[0]), v): float(x) for row in _BEST.split("\n") if row
             for v, x in zip(V_GRID, row.split()[1:])}  # fmt: skip
S_NO_VERIF = (1, 2, 4, 8, 16, 32, 64, 128)
S_VERIF = (1, 2, 4, 8, 16, 32, 64)


def _invalid(answer: str) -> bool:
    return "invalidanswer" in answer or answer == ""


def _vote(weights: np.ndarray, answers: list[str], ok: dict[str, bool], s: int, reps: int) -> float:
    """Their Monte-Carlo (weighted) vote: success rate over `reps` random s-subsets (1 when s is the pool)."""
    w = np.array(weights, dtype=float)
    w[[_invalid(a) for a in answers]] = 0.0
    draws = [random.sample(range(len(w)), s) for _ in range(1 if s == len(w) else reps)]
    hits = []
    for d in draws:
        totals: dict[str, float] = {}
        for i in d:
            totals[answers[i]] = totals.get(answers[i], 0.0) + w[i]
        totals["[invalidanswer]"] = totals[""] = -1  # invalid answers never win (unless nothing else is there)
        hits.append(ok.get(max(totals, key=totals.get), False))  # max keeps the first-inserted of tied answers
    return float(np.mean(hits))


def _best_of(scores: list[float], answers: list[str], correct: list[bool], s: int, rank_w: dict, shuffles: int) -> float:
    """Their best-of-s: invalid answers scored 0, then `shuffles` random tie-breaking orders, each by rank formula."""
    scores = [0.0 if _invalid(a) else x for x, a in zip(scores, answers)]
    n = len(scores)
    if (n, s) not in rank_w:
        i = np.arange(n - s + 1)
        rank_w[(n, s)] = binom(n - i - 1, s - 1) / (binom(n, s) + 1e-9)
    values = []
    for _ in range(shuffles):
        z = list(zip(correct, scores))
        random.shuffle(z)
        z.sort(key=lambda t: t[1], reverse=True)
        values.append(float(np.dot([c for c, _ in z[: n - s + 1]], rank_w[(n, s)])))
    return float(np.mean(values))


def authors_plot_points(groups: list[list[dict[str, Any]]], seed: int = 33, reps_sc: int = 25,
                        shuffles: int = 100) -> dict[str, dict]:  # fmt: skip
    """{"majority_voting": {S: value}, "best_of_k": {(S, V): value}} as their code computes them for `groups`
    (one list of records per problem, in sample order, in their problem order)."""
    maj: dict[int, list[float]] = {s: [] for s in S_NO_VERIF}
    best: dict[tuple[int, int], list[float]] = {(s, v): [] for s in S_VERIF for v in V_GRID}
    rank_w: dict = {}
    for g in groups:
        random.seed(seed)
        np.random.seed(seed)
        answers = [r["answer"] for r in g]
        correct = [bool(r["correct"]) for r in g]
        ok = dict(zip(answers, correct))
        for s in S_NO_VERIF:
            maj[s].append(_vote(np.ones(len(g)), answers, ok, s, reps_sc))
        verified = [r for r in g if r.get("verifier_chain_scores") is not None]
        for v in V_GRID:
            scores = []
            for r in verified:
                known = [x for x in r["verifier_chain_scores"][:v] if x is not None]
                scores.append(float(np.mean(known)) if known else 0.0)
            for s in S_VERIF:
                best[(s, v)].append(_best_of(scores, answers[: len(verified)], correct[: len(verified)], s, rank_w, shuffles))
    return {"majority_voting": {s: float(np.mean(x)) for s, x in maj.items()},
            "best_of_k": {sv: float(np.mean(x)) for sv, x in best.items()}}  # fmt: skip
