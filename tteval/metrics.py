"""Task-level metrics of a candidate pool: pass@k, maj@k and every selector's curve over k, with intervals."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Sequence

import numpy as np

from tteval import estimators as est
from tteval.strategies.registry import strategy_for


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
    samples: Sequence[dict[str, Any]], task: str, n: int | None = None, seed: int = 0, config: Any = None,
    genrm_lambda: float | None = None,
) -> dict[str, Any]:
    """Curves for every estimator the pool supports, each point {k, value, lower, upper, tokens}.

    `config` (the run's RunConfig) marks a PassUntil run, whose samples are sequential, not a fixed pool.
    `genrm_lambda` fixes GenRM's lambda (tokens per verification / tokens per solution) instead of measuring it."""
    groups = group_by_problem(samples)
    if not groups:
        return {"task": task, "num_problems": 0, "n": 0, "curves": {}, "summary": {}}
    if config is not None and strategy_for(config).curves == "pass_until":
        return _pass_until_metrics(task, groups, config.strategy.until_successes, int(config.sampling.n), seed)
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

    compute: dict[str, Any] = {}
    scorers = sorted({name for g in groups.values() for s in g for name in (s.get("scores") or {})})
    for name in scorers:
        curves.update(_bon_curves(name, groups, classes, correct, mean_tokens, seed, compute))

    eff, eff_name, eff_note = _efficiency_scores(groups)
    if eff is not None:
        vals = np.array([est.eff_at_k_curve(e, ks) for e in eff])
        curves[eff_name] = [_point(vals[:, i], seed, k=k, tokens=k * mean_tokens) for i, k in enumerate(ks)]
        compute[eff_name] = eff_note

    if all(s.get("logprob") is not None and s.get("num_tokens") for g in groups.values() for s in g):
        curves.update(_rpc_curves(groups, classes, correct, ks, mean_tokens, seed))
    if any(isinstance(s.get("verifier_chain_scores"), list) for g in groups.values() for s in g):
        curves.update(genrm_curves(groups, classes, correct, mean_tokens, seed, compute, genrm_lambda))

    return _result(task, groups, n_min, n, mean_tokens, compute, curves)


def _result(task, groups, n_min, n, mean_tokens, compute, curves) -> dict[str, Any]:
    if not any(s.get("num_tokens") for g in groups.values() for s in g):  # a pool graded elsewhere, without counts
        mean_tokens = None
        for pts in curves.values():
            for p in pts:
                p["tokens"] = None  # unknown, not zero: no FLOPs are made up from it
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
        "failed": failures(groups),
    }


def _rpc_curves(groups, classes, correct, ks, mean_tokens, seed, reps: int = 16) -> dict[str, list[dict[str, Any]]]:
    """PPL and RPC (perplexity consistency + reasoning pruning) at each k, by seeded resampling of k-subsets."""
    from tteval.strategies.pool import Pool
    from tteval.strategies.rpc import perplexity_consistency, ppl_select

    pools = []
    for g, a, y in zip(groups.values(), classes, correct):
        mlp = np.array([s["logprob"] / s["num_tokens"] for s in g])
        pools.append(Pool(answers=a, correct=y, mean_logprob=mlp, completions=[s.get("completion", "") for s in g]))
    # de-duplicating identical reasoning paths needs their texts: pools graded elsewhere may come without them
    dedup = all(s.get("completion") for g in groups.values() for s in g)
    rpc = lambda p, idx: perplexity_consistency(p, idx, dedup=dedup)  # noqa: E731
    out: dict[str, list[dict[str, Any]]] = {"ppl@k": [], "rpc@k": []}
    for k in ks:
        for name, fn in (("ppl@k", ppl_select), ("rpc@k", rpc)):
            vals, ses = [], []
            for pi, pool in enumerate(pools):
                v, se = est.resampled_at_k(lambda idx, p=pool: fn(p, idx), len(pool.answers), k, reps=reps, seed=seed + pi)
                vals.append(v)
                ses.append(se)
            mc_se = float(np.sqrt(np.sum(np.square(ses))) / len(ses))
            out[name].append(_point(np.array(vals), seed, k=k, tokens=k * mean_tokens, mc_se=mc_se))
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


def _bon_curves(name, groups, classes, correct, mean_tokens, seed, compute) -> dict[str, list[dict[str, Any]]]:
    """Best-of-k by a scorer's reward over the samples it scored; GenRM's reward of an invalid answer is 0, as
    its authors set it (`set_invalid_to_zero`)."""
    idx, n_problems, n_ver = _verified(groups, lambda s: name in (s.get("scores") or {}))
    if not n_problems:
        return {}
    ks, vals = budgets(n_ver), []
    for g, a, y, ix in zip(groups.values(), classes, correct, idx):
        if len(ix):
            r = np.array([float(g[i]["scores"][name]) for i in ix])
            if name == "genrm":
                r = np.where(a[ix] == -1, 0.0, r)
            vals.append(est.best_of_k_curve(r, y[ix], ks))
    vals = np.array(vals)
    compute[f"bon@k[{name}]"] = _coverage_note(idx, groups, n_problems, n_ver)
    return {f"bon@k[{name}]": [_point(vals[:, i], seed, k=k, tokens=k * mean_tokens) for i, k in enumerate(ks)]}


def genrm_scores(chains: Sequence[Sequence[float | None]], answers: np.ndarray, v: int) -> np.ndarray:
    """GenRM solution scores as the authors compute them: the mean of the known verdicts (P(Yes)) among each
    solution's first `v` chains, 0 when none is known, and 0 for a solution without a valid answer."""
    out = np.zeros(len(chains))
    for i, c in enumerate(chains):
        known = [float(x) for x in c[:v] if x is not None]
        out[i] = math.fsum(known) / len(known) if known else 0.0
    return np.where(np.asarray(answers) == -1, 0.0, out)


def genrm_curves(groups, classes, correct, mean_tokens, seed, compute: dict, lam: float | None = None,
                 reps: int = 200) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """GenRM over the (S, V) grid (Singhi et al. 2025, `sc-genrm-scaling`): best-of-S by the solution score
    (`genrm@k[V=v]`) and the score-weighted vote (`wsc@k[V=v]`), over the samples that carry verification chains
    (the paper verifies the first 64 of 128 solutions and votes over all 128; metrics.json says which).

    Compute is counted in solution-equivalents C = S (1 + lambda V); lambda = measured tokens per verification
    over tokens per solution when the samples record both, else `lam`, else 1 (the authors' value for GenRM-Base;
    2 for a fine-tuned GenRM). Self-consistency at S solutions costs C = S.
    """
    has = lambda s: isinstance(s.get("verifier_chain_scores"), list)  # noqa: E731
    idx, n_problems, n_ver = _verified(groups, has)
    verified = [s for g in groups.values() for s in g if has(s)]
    v_max = min(len(s["verifier_chain_scores"]) for s in verified)
    ver_tokens = float(np.mean([s.get("verifier_tokens") or 0 for s in verified])) / max(v_max, 1)
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
            r = genrm_scores([g[i]["verifier_chain_scores"] for i in ix], a[ix], v)
            bon.append(est.best_of_k_curve(r, y[ix], ks))
            row = [est.weighted_maj_at_k(a[ix], r, y[ix], k, reps=reps, seed=seed + pi) for k in ks]
            wsc.append([m for m, _ in row])
            ses.append([se for _, se in row])
        bon, wsc, ses = np.array(bon), np.array(wsc), np.array(ses)
        cost = [dict(k=k, tokens=k * (mean_tokens + v * ver_tokens), compute=k * (1 + lam * v)) for k in ks]
        out[f"genrm@k[V={v}]"] = [_point(bon[:, i], seed, **cost[i]) for i in range(len(ks))]
        out[f"wsc@k[V={v}]"] = [
            _point(wsc[:, i], seed, **cost[i], mc_se=float(np.sqrt(np.sum(np.square(ses[:, i]))) / len(ses)))
            for i in range(len(ks))
        ]
    return out


def _pf_curves(groups, classes, correct, n, seed) -> dict[str, list[dict[str, Any]]]:
    """Particle filtering: accuracy of the selected particle (argmax reward) and of a reward-weighted vote."""
    sel, vote, tokens = [], [], []
    for g, a, y in zip(groups.values(), classes, correct):
        chosen = [i for i, s in enumerate(g) if s.get("selected")]
        sel.append(float(y[chosen[0]]) if chosen else 0.0)
        w = np.array([float((s.get("scores") or {}).get("prm", 0.0)) for s in g])
        vote.append(float(est.weighted_vote_credit(a, w, y, np.arange(len(g))[None, :])[0]))
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
ENAMEL_NOTE = ("ENAMEL's eff@k (q-rz/enamel calc_eff_at_k): four input levels, hardness (0, 3, 3, 4), the call timed "
               "in the sandbox, 6 repeats with Hodges-Lehmann, T = 2 x the re-timed reference's max + 0.01 s")
PROCESS_NOTE = ("not ENAMEL's eff@k: one level (the task's unit tests), the sandbox process's CPU (else wall) time with interpreter "
                "start-up, the reference timed once, T = 2 T*; start-up dominates, so it sits near pass@k")


def _efficiency_scores(groups: dict[str, list[dict[str, Any]]]) -> tuple[list[np.ndarray] | None, str, dict]:
    """Per-problem efficiency scores, the curve's name and a note for metrics.json: `eff@k` from ENAMEL's protocol
    when every sample carries its record (`grading.efficiency`, tteval.verifiers.efficiency); else, for unit-test
    code tasks with timings, tteval 0.1's one-level process-runtime variant as `eff@k[process]`; else None.

    The variant: e = max(0, T - t) / (T - T*) for a passing sample with sandbox time t, T* the reference's time
    measured the same way and T = 2 T*; failing samples and timeouts score 0. Times are CPU seconds where the
    grading recorded them (load-independent), else wall seconds (run folders graded before CPU time was recorded)."""
    records = [[(s.get("grading") or {}).get("efficiency") for s in g] for g in groups.values()]
    if all(isinstance(r, dict) and r.get("protocol") == "enamel" for rs in records for r in rs):
        clocks = sorted({str(r.get("clock", "wall")) for rs in records for r in rs})
        note = ENAMEL_NOTE if clocks == ["wall"] else ENAMEL_NOTE + f"; clock {'/'.join(clocks)} (not ENAMEL's wall clock)"
        return [np.array([float(r["score"]) for r in rs]) for rs in records], "eff@k", {"note": note, "clock": clocks}
    out = []
    for g in groups.values():
        details = [s.get("grading") or {} for s in g]
        clock = "cpu_s" if "reference_cpu_s" in details[0] else "runtime_s"
        ref = details[0].get("reference_cpu_s" if clock == "cpu_s" else "reference_runtime_s")
        if not isinstance(ref, (int, float)) or not ref > 0:
            return None, "", {}
        limit = EFF_TIME_FACTOR * ref
        scores = []
        for s, d in zip(g, details):
            t = d.get(clock)
            ok = bool(s.get("correct")) and isinstance(t, (int, float))
            scores.append(est.efficiency_score([t if ok else None], [ref], limit, hardness=(1,), failed=not ok))
        out.append(np.array(scores))
    return out, "eff@k[process]", {"note": PROCESS_NOTE}


def failures(groups: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Candidates that failed (no model answer: a FAILED_FINISH_REASONS finish; graded incorrect) and scores a
    verifier could not give (`score_failed`; reward 0), counted, with their reasons."""
    from collections import Counter

    from tteval.backends.base import FAILED_FINISH_REASONS

    samples = Counter(s["finish_reason"] for g in groups.values() for s in g if s.get("finish_reason") in FAILED_FINISH_REASONS)
    scores = Counter(str(s["score_failed"]) for g in groups.values() for s in g if s.get("score_failed"))
    return {"samples": sum(samples.values()), "samples_by_reason": dict(sorted(samples.items())),
            "scores": sum(scores.values()), "scores_by_reason": dict(sorted(scores.items()))}  # fmt: skip
