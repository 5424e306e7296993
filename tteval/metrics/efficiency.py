"""eff@k over a pool: ENAMEL's protocol where every sample carries its record, else tteval 0.1's process-time variant."""

from __future__ import annotations

import numpy as np

import tteval.estimators as est
from tteval.metrics.problems import Points, Problems
from tteval.records import SampleRecord


def eff_curves(pr: Problems) -> dict[str, Points]:
    """eff@k (or the process-time variant) at every budget, when the samples support either."""
    eff, eff_name, eff_note = _efficiency_scores(pr.groups)
    if eff is None:
        return {}
    pr.compute[eff_name] = eff_note
    return {eff_name: pr.curve(np.array([est.eff_at_k_curve(e, pr.ks) for e in eff]))}


EFF_TIME_FACTOR = 2.0  # ENAMEL's alpha: the time limit is alpha x the reference's time
ENAMEL_NOTE = ("ENAMEL's eff@k (q-rz/enamel calc_eff_at_k): four input levels, hardness (0, 3, 3, 4), the call timed "
               "in the sandbox, 6 repeats with Hodges-Lehmann, T = 2 x the re-timed reference's max + 0.01 s")
PROCESS_NOTE = ("not ENAMEL's eff@k: one level (the task's unit tests), the sandbox process's CPU (else wall) time with interpreter "
                "start-up, the reference timed once, T = 2 T*; start-up dominates, so it sits near pass@k")


def _efficiency_scores(groups: dict[str, list[SampleRecord]]) -> tuple[list[np.ndarray] | None, str, dict]:
    """Per-problem efficiency scores, the curve's name and a note for metrics.json: `eff@k` from ENAMEL's protocol
    when every sample carries its record (`grading.efficiency`, tteval.graders.efficiency); else, for unit-test
    code tasks with timings, tteval 0.1's one-level process-runtime variant as `eff@k[process]`; else None.

    The variant: e = max(0, T - t) / (T - T*) for a passing sample with sandbox time t, T* the reference's time
    measured the same way and T = 2 T*; failing samples and timeouts score 0. Times are CPU seconds where the
    grading recorded them (load-independent), else wall seconds (run folders graded before CPU time was recorded)."""
    records = [[s.efficiency() for s in g] for g in groups.values()]
    if all(isinstance(r, dict) and r.get("protocol") == "enamel" for rs in records for r in rs):
        clocks = sorted({str(r.get("clock", "wall")) for rs in records for r in rs})
        note = ENAMEL_NOTE if clocks == ["wall"] else ENAMEL_NOTE + f"; clock {'/'.join(clocks)} (not ENAMEL's wall clock)"
        return [np.array([float(r["score"]) for r in rs]) for rs in records], "eff@k", {"note": note, "clock": clocks}
    out = []
    for g in groups.values():
        clock = g[0].clock()
        ref = g[0].reference_time(clock)
        if not isinstance(ref, (int, float)) or not ref > 0:
            return None, "", {}
        limit = EFF_TIME_FACTOR * ref
        scores = []
        for s in g:
            t = s.sandbox_time(clock)
            ok = bool(s.correct) and isinstance(t, (int, float))
            scores.append(est.efficiency_score([t if ok else None], [ref], limit, hardness=(1,), failed=not ok))
        out.append(np.array(scores))
    return out, "eff@k[process]", {"note": PROCESS_NOTE}
