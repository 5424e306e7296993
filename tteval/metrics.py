"""Task-level metrics of a candidate pool: pass@k, maj@k and every selector's curve over k, with intervals."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Sequence

import numpy as np

from tteval import estimators as est


def budgets(n: int) -> list[int]:
    """The k values reported for a pool of size n: powers of two up to n, and n itself."""
    ks = [1 << i for i in range(n.bit_length()) if (1 << i) <= n]
    return ks if ks[-1] == n else ks + [n]


def group_by_problem(samples: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Samples per task id, each problem's list in sample_index order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        groups.setdefault(s["task_id"], []).append(s)
    for g in groups.values():
        g.sort(key=lambda s: s.get("sample_index", 0))
    return dict(sorted(groups.items()))  # problem order must not depend on file order (sharded, resumed runs)


def _point(values: np.ndarray, seed: int, **extra: Any) -> dict[str, Any]:
    summary = est.summarize(values, seed=seed)
    return {**summary, **extra}


def compute_metrics(
    samples: Sequence[dict[str, Any]], task: str, n: int | None = None, seed: int = 0, config: Any = None
) -> dict[str, Any]:
    """Curves for every estimator the pool supports, each point {k, value, lower, upper, tokens}.

    `config` (the run's RunConfig) marks a PassUntil run, whose samples are sequential, not a fixed pool."""
    groups = group_by_problem(samples)
    if not groups:
        return {"task": task, "num_problems": 0, "n": 0, "curves": {}, "summary": {}}
    if config is not None and config.strategy == "pass-until":
        return _pass_until_metrics(task, groups, config.until_successes, int(config.n), seed)
    sizes = np.array([len(g) for g in groups.values()])
    n_min = int(sizes.min())
    ks = budgets(n_min)
    correct = [np.array([bool(s.get("correct")) for s in g]) for g in groups.values()]
    tokens = np.array([np.mean([s.get("num_tokens") or 0 for s in g]) for g in groups.values()])
    mean_tokens = float(tokens.mean())
    curves: dict[str, list[dict[str, Any]]] = {}
    classes = [np.array([int(s.get("answer_class", -1)) for s in g]) for g in groups.values()]
    searcher = all("selected" in s for g in groups.values() for s in g)
    if searcher:  # final particles are not i.i.d. samples: only the search's own selections are meaningful
        curves.update(_pf_curves(groups, classes, correct, n_min, seed))
        return _result(task, groups, n_min, n, mean_tokens, {}, curves)

    c = np.array([x.sum() for x in correct])
    curves["pass@k"] = [_point(est.pass_at_k(sizes, c, k), seed, k=k, tokens=k * mean_tokens) for k in ks]

    maj = np.array([est.maj_at_k_curve(a, y, ks) for a, y in zip(classes, correct)])
    curves["maj@k"] = [_point(maj[:, i], seed, k=k, tokens=k * mean_tokens) for i, k in enumerate(ks)]

    scorers = sorted({name for g in groups.values() for s in g for name in (s.get("scores") or {})})
    for name in scorers:
        rewards = [np.array([float((s.get("scores") or {}).get(name, 0.0)) for s in g]) for g in groups.values()]
        bon = np.array([est.best_of_k_curve(r, y, ks) for r, y in zip(rewards, correct)])
        curves[f"bon@k[{name}]"] = [_point(bon[:, i], seed, k=k, tokens=k * mean_tokens) for i, k in enumerate(ks)]

    eff = _efficiency_scores(groups)
    if eff is not None:
        vals = np.array([est.eff_at_k_curve(e, ks) for e in eff])
        curves["eff@k"] = [_point(vals[:, i], seed, k=k, tokens=k * mean_tokens) for i, k in enumerate(ks)]

    if all(s.get("logprob") is not None and s.get("num_tokens") for g in groups.values() for s in g):
        curves.update(_rpc_curves(groups, classes, correct, ks, mean_tokens, seed))
    compute: dict[str, Any] = {}
    if all(s.get("verifier_chain_scores") is not None for g in groups.values() for s in g):
        curves.update(_genrm_curves(groups, correct, ks, mean_tokens, seed, compute))

    return _result(task, groups, n_min, n, mean_tokens, compute, curves)


def _result(task, groups, n_min, n, mean_tokens, compute, curves) -> dict[str, Any]:
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
    }


def _rpc_curves(groups, classes, correct, ks, mean_tokens, seed, reps: int = 16) -> dict[str, list[dict[str, Any]]]:
    """PPL and RPC (perplexity consistency + reasoning pruning) at each k, by seeded resampling of k-subsets."""
    from tteval.strategies.pool import Pool
    from tteval.strategies.rpc import perplexity_consistency, ppl_select

    pools = []
    for g, a, y in zip(groups.values(), classes, correct):
        mlp = np.array([s["logprob"] / s["num_tokens"] for s in g])
        pools.append(Pool(answers=a, correct=y, mean_logprob=mlp, completions=[s.get("completion", "") for s in g]))
    out: dict[str, list[dict[str, Any]]] = {"ppl@k": [], "rpc@k": []}
    for k in ks:
        for name, fn in (("ppl@k", ppl_select), ("rpc@k", perplexity_consistency)):
            vals, ses = [], []
            for pi, pool in enumerate(pools):
                v, se = est.resampled_at_k(lambda idx, p=pool: fn(p, idx), len(pool.answers), k, reps=reps, seed=seed + pi)
                vals.append(v)
                ses.append(se)
            mc_se = float(np.sqrt(np.sum(np.square(ses))) / len(ses))
            out[name].append(_point(np.array(vals), seed, k=k, tokens=k * mean_tokens, mc_se=mc_se))
    return out


def _genrm_curves(groups, correct, ks, mean_tokens, seed, compute: dict) -> dict[str, list[dict[str, Any]]]:
    """GenRM best-of-k over the (S, V) grid: a solution's score is the mean of its first V verdicts.

    Compute is counted in solution-equivalents C = S (1 + lambda V), lambda = measured tokens per verification
    over tokens per solution (Singhi et al. 2025); self-consistency at S solutions costs C = S.
    """
    chains = [[s["verifier_chain_scores"] for s in g] for g in groups.values()]
    v_max = min(len(c) for cs in chains for c in cs)
    ver_tokens = np.mean([s.get("verifier_tokens", 0) / max(len(s["verifier_chain_scores"]), 1)
                          for g in groups.values() for s in g])  # fmt: skip
    lam = float(ver_tokens / mean_tokens) if mean_tokens else 0.0
    compute.update(verifications=v_max, verifier_tokens_per_verification=float(ver_tokens), **{"lambda": lam})
    out = {}
    for v in budgets(v_max) if v_max else []:
        rewards = []
        for cs in chains:
            row = []
            for c in cs:
                known = [x for x in c[:v] if x is not None]
                row.append(float(np.mean(known)) if known else 0.0)
            rewards.append(np.array(row))
        vals = np.array([est.best_of_k_curve(r, y, ks) for r, y in zip(rewards, correct)])
        out[f"genrm@k[V={v}]"] = [
            _point(vals[:, i], seed, k=k, tokens=k * (mean_tokens + v * ver_tokens), compute=k * (1 + lam * v))
            for i, k in enumerate(ks)
        ]
    return out


def _pf_curves(groups, classes, correct, n, seed) -> dict[str, list[dict[str, Any]]]:
    """Particle filtering: accuracy of the selected particle (argmax reward) and of a reward-weighted vote."""
    sel, vote, tokens = [], [], []
    for g, a, y in zip(groups.values(), classes, correct):
        chosen = [i for i, s in enumerate(g) if s.get("selected")]
        sel.append(float(y[chosen[0]]) if chosen else 0.0)
        w = np.array([float((s.get("scores") or {}).get("prm", 0.0)) for s in g])
        totals: dict[int, float] = {}
        for cls, wi in zip(a, w):
            if cls >= 0:
                totals[int(cls)] = totals.get(int(cls), 0.0) + wi
        if totals:
            best = max(totals.values())
            winners = [c for c, t in totals.items() if t == best]
            vote.append(np.mean([float(y[list(a).index(c)]) for c in winners]))
        else:
            vote.append(0.0)
        tokens.append(g[0].get("problem_policy_tokens", 0) + g[0].get("problem_verifier_tokens", 0))
    t = float(np.mean(tokens))
    k = n * max(int(g[0].get("pf_iterations", 1)) for g in groups.values())  # particle Gibbs: N x T generations
    return {
        "pf@k": [_point(np.array(sel), seed, k=k, tokens=t)],
        "pf-vote@k": [_point(np.array(vote), seed, k=k, tokens=t)],
    }


def _pass_until_metrics(task: str, groups: dict[str, list[dict[str, Any]]], r: int, cap: int, seed: int) -> dict[str, Any]:
    """PassUntil (sample until r successes or the cap): per-problem (r-1)/(K-1), averaged over uncensored problems.

    A problem that hit the cap first is censored: it is reported (count, each one's Clopper-Pearson upper bound),
    never imputed. `value` averages the uncensored problems; with every problem censored it is 0 and `upper` is
    the mean upper bound (about 3/cap each, the rule of three)."""
    results = {tid: est.pass_until_from_outcomes([bool(s.get("correct")) for s in g], r) for tid, g in groups.items()}
    values = np.array([x.value for x in results.values() if not x.censored], dtype=float)
    bounds = [x.upper_bound for x in results.values() if x.censored]
    tokens = float(np.mean([sum(s.get("num_tokens") or 0 for s in g) for g in groups.values()]))
    trials = float(np.mean([len(g) for g in groups.values()]))
    extra = {"k": cap, "tokens": tokens, "censored": len(bounds), "mean_samples": trials}
    if values.size:
        point = _point(values, seed, **extra)
    else:
        point = {"value": 0.0, "lower": 0.0, "upper": float(np.mean(bounds)), "n": 0, "interval": "censored", **extra}
    if bounds:  # what the censored problems could add at most: each at its upper bound
        point["upper_if_censored_at_bound"] = float((values.sum() + sum(bounds)) / len(results))
    problems = [{"task_id": tid, **{k: v for k, v in asdict(x).items() if k != "successes_needed"}} for tid, x in results.items()]
    curves = {"pass-until": [point]}
    out = _result(task, groups, cap, cap, tokens / max(trials, 1e-9), {}, curves)
    out["pass_until"] = {"successes_needed": r, "cap": cap, "problems": problems}
    return out


EFF_TIME_FACTOR = 2.0  # ENAMEL's alpha: the time limit is alpha x the reference's time


def _efficiency_scores(groups: dict[str, list[dict[str, Any]]]) -> list[np.ndarray] | None:
    """ENAMEL efficiency scores of code samples, one timed level (the task's tests), or None without timings.

    e = max(0, T - t) / (T - T*) for a passing sample with sandbox runtime t, T* the reference solution's runtime
    measured the same way and T = 2 T* (ENAMEL's alpha = 2); failing samples and timeouts score 0 (a timeout at
    the only level is a failure). Faster than the reference scores above 1 (not clipped, as in ENAMEL)."""
    out = []
    for g in groups.values():
        details = [s.get("grading") or {} for s in g]
        ref = details[0].get("reference_runtime_s")
        if not isinstance(ref, (int, float)) or not ref > 0:
            return None
        limit = EFF_TIME_FACTOR * ref
        scores = []
        for s, d in zip(g, details):
            t = d.get("runtime_s")
            ok = bool(s.get("correct")) and isinstance(t, (int, float))
            scores.append(est.efficiency_score([t if ok else None], [ref], limit, hardness=(1,), failed=not ok))
        out.append(np.array(scores))
    return out
