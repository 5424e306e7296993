"""Curves of a pool of i.i.d. candidates (selectors): pass@k, maj@k, best-of-k per scorer, PPL/RPC, GenRM."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

import tteval.estimators as est
from tteval.metrics.problems import Points, Problems, budgets, point


def pass_curves(pr: Problems) -> dict[str, Points]:
    """Unbiased pass@k (coverage, an oracle) at every budget."""
    sizes = np.array([len(p) for p in pr.pools])
    c = np.array([p.correct.sum() for p in pr.pools])
    return {"pass@k": [point(est.pass_at_k(sizes, c, k), pr.seed, k=k, tokens=k * pr.mean_tokens) for k in pr.ks]}


def maj_curves(pr: Problems) -> dict[str, Points]:
    """Exact maj@k (self-consistency) at every budget."""
    return {"maj@k": pr.curve(np.array([est.maj_at_k_curve(p.answers, p.correct, pr.ks) for p in pr.pools]))}


def scorers(pr: Problems) -> list[str]:
    """The names of the scorers any sample carries a reward from."""
    return sorted({name for s in pr.samples() for name in (s.scores or {})})


def all_bon_curves(pr: Problems) -> dict[str, Points]:
    """Best-of-k for each scorer, in name order."""
    out: dict[str, Points] = {}
    for name in scorers(pr):
        out.update(_bon_curves(name, pr))
    return out


def has_logprobs(pr: Problems) -> bool:
    """Whether every sample has a log-probability and a token count (what PPL and RPC need)."""
    return all(s.logprob is not None and s.num_tokens for s in pr.samples())


def has_chains(pr: Problems) -> bool:
    """Whether any sample carries GenRM verification chains."""
    return any(isinstance(s.verifier_chain_scores, list) for s in pr.samples())


def rpc_curves(pr: Problems, reps: int = 16) -> dict[str, Points]:
    """PPL and RPC (perplexity consistency + reasoning pruning) at each k, by seeded resampling of k-subsets."""
    from tteval.selectors.rpc import perplexity_consistency, ppl_select

    pools, seed, mean_tokens = pr.pools, pr.seed, pr.mean_tokens
    # de-duplicating identical reasoning paths needs their texts: pools graded elsewhere may come without them
    dedup = all(s.completion for s in pr.samples())
    rpc = lambda p, idx: perplexity_consistency(p, idx, dedup=dedup)  # noqa: E731
    out: dict[str, Points] = {"ppl@k": [], "rpc@k": []}
    for k in pr.ks:
        for name, fn in (("ppl@k", ppl_select), ("rpc@k", rpc)):
            vals, ses = [], []
            for pi, pool in enumerate(pools):
                v, se = est.resampled_at_k(lambda idx, p=pool: fn(p, idx), len(pool.answers), k, reps=reps, seed=seed + pi)
                vals.append(v)
                ses.append(se)
            mc_se = float(np.sqrt(np.sum(np.square(ses))) / len(ses))
            out[name].append(point(np.array(vals), seed, k=k, tokens=k * mean_tokens, mc_se=mc_se))
    return out


def _verified(groups, has) -> tuple[list[np.ndarray], int, int]:
    """Per problem, the indices of the samples `has` accepts (a verifier scored them); and how many problems have
    any and the fewest such samples of those problems."""
    idx = [np.array([i for i, s in enumerate(g) if has(s)], dtype=np.int64) for g in groups.values()]
    sizes = [len(i) for i in idx if len(i)]
    return idx, len(sizes), min(sizes) if sizes else 0


def _coverage_note(idx: list[np.ndarray], groups, n_problems: int, n_min: int) -> dict[str, Any]:
    """What a verifier curve covers, for metrics.json: verified samples (of how many) and problems."""
    total = min(len(g) for g in groups.values())
    note = {"verified_samples": n_min, "of_samples": total, "problems": n_problems, "of_problems": len(groups)}
    if n_min < total or n_problems < len(groups):
        note["note"] = (f"computed over the verified samples only: {n_min} of {total} per problem, "
                        f"{n_problems} of {len(groups)} problems; pass@k and maj@k use every sample")  # fmt: skip
    return note


def _bon_curves(name: str, pr: Problems) -> dict[str, Points]:
    """Best-of-k by a scorer's reward over the samples it scored; GenRM's reward of an invalid answer is 0, as
    its authors set it (`set_invalid_to_zero`)."""
    groups, classes, correct = pr.groups, pr.classes, pr.correct
    idx, n_problems, n_ver = _verified(groups, lambda s: name in (s.scores or {}))
    if not n_problems:
        return {}
    ks, vals = budgets(n_ver), []
    for g, a, y, ix in zip(groups.values(), classes, correct, idx):
        if len(ix):
            r = np.array([float(g[i]["scores"][name]) for i in ix])
            if name == "genrm":
                r = np.where(a[ix] == -1, 0.0, r)
            vals.append(est.best_of_k_curve(r, y[ix], ks))
    pr.compute[f"bon@k[{name}]"] = _coverage_note(idx, groups, n_problems, n_ver)
    return {f"bon@k[{name}]": pr.curve(np.array(vals), ks)}


def genrm_scores(chains: Sequence[Sequence[float | None]], answers: np.ndarray, v: int) -> np.ndarray:
    """GenRM solution scores as the authors compute them: the mean of the known verdicts (P(Yes)) among each
    solution's first `v` chains, 0 when none is known, and 0 for a solution without a valid answer."""
    out = np.zeros(len(chains))
    for i, c in enumerate(chains):
        known = [float(x) for x in c[:v] if x is not None]
        out[i] = math.fsum(known) / len(known) if known else 0.0
    return np.where(np.asarray(answers) == -1, 0.0, out)


def genrm_curves(pr: Problems, lam: float | None = None, reps: int = 200) -> dict[str, Points]:
    """GenRM over the (S, V) grid (Singhi et al. 2025, `sc-genrm-scaling`): best-of-S by the solution score
    (`genrm@k[V=v]`) and the score-weighted vote (`wsc@k[V=v]`), over the samples that carry verification chains
    (the paper verifies the first 64 of 128 solutions and votes over all 128; metrics.json says which).

    Compute is counted in solution-equivalents C = S (1 + lambda V); lambda = measured tokens per verification
    over tokens per solution when the samples record both, else `lam`, else 1 (the authors' value for GenRM-Base;
    2 for a fine-tuned GenRM). Self-consistency at S solutions costs C = S.
    """
    groups, classes, correct, mean_tokens, seed, compute = pr.groups, pr.classes, pr.correct, pr.mean_tokens, pr.seed, pr.compute
    has = lambda s: isinstance(s.verifier_chain_scores, list)  # noqa: E731
    idx, n_problems, n_ver = _verified(groups, has)
    verified = [s for g in groups.values() for s in g if has(s)]
    v_max = min(len(s.verifier_chain_scores) for s in verified)
    ver_tokens = float(np.mean([s.verifier_tokens or 0 for s in verified])) / max(v_max, 1)
    if lam is not None:
        lam_source = "given"
    elif ver_tokens > 0 and mean_tokens > 0:
        lam, lam_source = ver_tokens / mean_tokens, "measured"
    else:
        lam, lam_source = 1.0, "default (GenRM-Base, as the authors; token counts unknown)"
    compute.update(verifications=v_max, verifier_tokens_per_verification=ver_tokens, **{"lambda": float(lam)})
    compute["lambda_source"] = lam_source
    compute["genrm"] = _coverage_note(idx, groups, n_problems, n_ver)
    ks, out = budgets(n_ver), {}
    for v in budgets(v_max) if v_max else []:
        bon, wsc, ses = [], [], []
        for pi, (g, a, y, ix) in enumerate(zip(groups.values(), classes, correct, idx)):
            if not len(ix):
                continue
            r = genrm_scores([g[i].verifier_chain_scores for i in ix], a[ix], v)
            bon.append(est.best_of_k_curve(r, y[ix], ks))
            row = [est.weighted_maj_at_k(a[ix], r, y[ix], k, reps=reps, seed=seed + pi) for k in ks]
            wsc.append([m for m, _ in row])
            ses.append([se for _, se in row])
        bon, wsc, ses = np.array(bon), np.array(wsc), np.array(ses)
        cost = [dict(k=k, tokens=k * (mean_tokens + v * ver_tokens), compute=k * (1 + lam * v)) for k in ks]
        out[f"genrm@k[V={v}]"] = [point(bon[:, i], seed, **cost[i]) for i in range(len(ks))]
        out[f"wsc@k[V={v}]"] = [
            point(wsc[:, i], seed, **cost[i], mc_se=float(np.sqrt(np.sum(np.square(ses[:, i]))) / len(ses)))
            for i in range(len(ks))
        ]
    return out
