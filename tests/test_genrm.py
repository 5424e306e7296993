"""GenRM as its authors score it (sc-genrm-scaling): P(Yes) at the sampled verdict token, invalid answers at 0,
partial verification, and the scorer on the real CPU model."""

import math

import pytest

from tteval.backends.base import Completion
from tteval.metrics import compute_metrics
from tteval.verifiers.genrm import (
    GenRMScorer, chain_score, chain_yes_no, logprob_score, normalized_p_yes, text_verdict,
)  # fmt: skip

EOT = "<|im_end|>"


def chain(text: str, tokens: list[str], tops: list[dict[str, float]]) -> Completion:
    """A sampled chain as a backend returns it: tokens with their logprobs and top alternatives (probabilities
    given here, stored as logprobs); the sampled token's own probability is its entry in `tops`."""
    lps = [math.log(t.get(tok, 0.5)) for tok, t in zip(tokens, tops)]
    top_lps = [{k: math.log(v) for k, v in t.items()} for t in tops]
    return Completion(text, len(tokens), "stop", sum(lps), lps, tokens, top_lps)


def verdict_chain(verdict_tops: dict[str, float], sampled: str = " Yes") -> Completion:
    text = f"The steps are right.\nVerification: Is the answer correct (Yes/No)?{sampled}"
    tokens = ["The", " steps", "?", sampled, EOT]
    tops = [{"The": 0.9}, {" steps": 0.8}, {"?": 0.99}, verdict_tops, {EOT: 0.99}]
    return chain(text, tokens, tops)


def test_when_to_solve_when_to_verify_p_yes_is_read_at_the_sampled_verdict_unnormalised():
    # the examples: the authors read p(Yes) at the verdict token (position -2, before end-of-text), as is,
    # and 1 - p(No) when only "No" came back; tteval 0.1 normalised yes / (yes + no) from a separate greedy call
    both = verdict_chain({" Yes": 0.6, " No": 0.2})
    assert chain_yes_no(both) == (pytest.approx(0.6), pytest.approx(0.2))
    assert chain_score(both, "logprob") == pytest.approx(0.6)
    assert normalized_p_yes({k: math.log(v) for k, v in {" Yes": 0.6, " No": 0.2}.items()}) == pytest.approx(0.75)
    only_no = verdict_chain({" No": 0.3}, sampled=" No")
    assert logprob_score(*chain_yes_no(only_no)) == pytest.approx(0.7)
    assert chain_score(only_no, "hybrid") == pytest.approx(0.7)
    assert normalized_p_yes({" No": math.log(0.3)}) == 0.0


def test_when_to_solve_when_to_verify_verdict_positions_and_modes():
    # position 0 (a direct verifier) is looked at first, then -2, then -3 (a trailing "**" token)
    direct = chain("Yes", ["Yes", EOT], [{"Yes": 0.8, "No": 0.1}, {EOT: 1.0}])
    assert chain_yes_no(direct) == (pytest.approx(0.8), pytest.approx(0.1))
    starred = chain("... (Yes/No)? **Yes**", ["?", " **", "Yes", "**", EOT],
                    [{"?": 1.0}, {" **": 1.0}, {"Yes": 0.9}, {"**": 1.0}, {EOT: 1.0}])  # fmt: skip
    assert chain_score(starred, "logprob") == pytest.approx(0.9)
    # a chain with no Yes/No token where the authors look: logprob mode has no verdict, hybrid reads the text
    wordy = chain("Verification: Is the answer correct (Yes/No)? Yes, it is.", ["Yes", ",", " it", " is", "."],
                  [{"Yes": 0.7}, {",": 1.0}, {" it": 1.0}, {" is": 1.0}, {".": 1.0}])  # fmt: skip
    assert chain_yes_no(wordy) == (pytest.approx(0.7), None)  # position 0 holds it here
    cut = chain("I think the answer is", ["I", " think", " the", " answer", " is"], [{"I": 1.0}] + [{"x": 0.5}] * 4)
    assert chain_score(cut, "logprob") is None and chain_score(cut, "hybrid") is None
    written = chain("Check.\nVerification: Is the answer correct (Yes/No)? No", ["Check", ".", "No"],
                    [{"Check": 1.0}, {".": 1.0}, {"Maybe": 0.6}])  # fmt: skip
    assert chain_score(written, "logprob") is None
    assert chain_score(written, "hybrid") == 0.0 == chain_score(written, "binary")
    # hybrid tests the logprob score for truth, as the authors do: p(No) = 1 gives 0, which falls back to the text
    certain_no = verdict_chain({" No": 1.0}, sampled=" No")
    assert chain_score(certain_no, "logprob") == 0.0 and chain_score(certain_no, "hybrid") == 0.0
    assert chain_score(verdict_chain({" Yes": 0.6}), "binary") == 1.0


@pytest.mark.parametrize(
    "text, verdict",
    [
        ("...\nVerification: Is the answer correct (Yes/No)? Yes", 1.0),
        ("...\nVerification: Is the answer correct (Yes/No)? **No**", 0.0),
        ("Is the solution correct? $\\boxed{\\text{Yes}}$", 1.0),
        ("Is the answer correct (Yes/No)? Yes\nbut then the chain went on", None),  # the authors read the last line
        ("Solution status: [INCORRECT]", 0.0),
        ("Assessment: correct", 1.0),
        ("no verdict at all", None),
    ],
)
def test_when_to_solve_when_to_verify_written_verdicts(text, verdict):
    assert text_verdict(text) == verdict


def sample(task: str, i: int, answer, correct: bool, chains, cls: int) -> dict:
    return {"task_id": task, "sample_index": i, "answer": answer, "correct": correct, "answer_class": cls,
            "verifier_chain_scores": chains}  # fmt: skip


def test_when_to_solve_when_to_verify_invalid_answers_score_zero_before_best_of_n():
    # the example: answers [invalid, '42', '7'], scores [0.9, 0.6, 0.3], gold 42: the authors set the invalid
    # answer's score to 0 (set_invalid_to_zero), so best-of-2 is 2/3 (tteval 0.1 used the raw score: 1/3)
    pool = [sample("q", 0, None, False, [0.9], -1), sample("q", 1, "42", True, [0.6], 0),
            sample("q", 2, "7", False, [0.3], 1)]  # fmt: skip
    m = compute_metrics(pool, "t")
    bon = {p["k"]: p["value"] for p in m["curves"]["genrm@k[V=1]"]}
    assert bon[2] == pytest.approx(2 / 3) and bon[1] == pytest.approx(1 / 3) and bon[3] == 1.0
    # the same rule for a `scores` entry named genrm, and the weighted vote never lets the invalid answer win
    scored = [{**s, "scores": {"genrm": s["verifier_chain_scores"][0]}} for s in pool]
    m = compute_metrics([{k: v for k, v in s.items() if k != "verifier_chain_scores"} for s in scored], "t")
    assert m["curves"]["bon@k[genrm]"][1]["value"] == pytest.approx(2 / 3)
    wsc = compute_metrics(pool, "t")["curves"]["wsc@k[V=1]"]
    assert wsc[-1]["value"] == 1.0  # all three: '42' (0.6) beats '7' (0.3), the invalid answer does not vote


def test_when_to_solve_when_to_verify_partial_verification_and_missing_verdicts():
    # the paper verifies the first half of the pool and votes over all of it: GenRM uses the verified samples and
    # metrics.json says so; a null chain gave no verdict (dropped from the mean), a solution with none scores 0
    pool = []
    for t in ("a", "b"):
        pool += [sample(t, 0, "1", True, [None, 1.0], 0), sample(t, 1, "2", False, [0.2, None], 1),
                 sample(t, 2, "1", True, None, 0), sample(t, 3, "3", False, None, 2)]  # fmt: skip
    m = compute_metrics(pool, "t")
    assert [p["k"] for p in m["curves"]["maj@k"]] == [1, 2, 4] and [p["k"] for p in m["curves"]["genrm@k[V=1]"]] == [1, 2]
    note = m["compute"]["genrm"]
    assert note["verified_samples"] == 2 and note["of_samples"] == 4 and "verified samples only" in note["note"]
    v1 = {p["k"]: p["value"] for p in m["curves"]["genrm@k[V=1]"]}
    assert v1 == {1: 0.5, 2: 0.0}  # V=1: the first solution's only chain is null (score 0), the wrong one's 0.2 wins
    assert m["curves"]["genrm@k[V=2]"][-1]["value"] == 1.0  # V=2: 1.0 against 0.2
    assert m["compute"]["lambda"] == 1.0 and "default" in m["compute"]["lambda_source"]


def test_genrm_on_the_cpu_model_scores_chains_seeded_by_their_key(cpu_backend):
    items = [("What is 2 + 2?", "2 + 2 = 4. The answer is 4."), ("What is 3 * 3?", "3 * 3 = 6. The answer is 6.")]
    scorer = GenRMScorer(cpu_backend, verifications=2, max_tokens=24, seed=3)
    both = scorer.score(items, keys=["q1#0", "q2#0"])
    assert len(both) == 2 and all(len(r.chain_scores) == 2 and 0.0 <= r.score <= 1.0 and r.tokens > 0 for r in both)
    assert all(s is None or 0.0 <= s <= 1.0 for r in both for s in r.chain_scores)
    (alone,) = scorer.score(items[1:], keys=["q2#0"])  # the same item, key and seed in a smaller call
    assert alone == both[1]
    normalized = GenRMScorer(cpu_backend, verifications=1, max_tokens=16, seed=3, mode="normalized").score(items[:1], ["q1#0"])
    assert normalized[0].chain_scores[0] is not None  # the forced verdict always gives a P(Yes)


def test_when_to_solve_when_to_verify_default_score_mode_is_hybrid_and_part_of_the_run_id():
    # the authors' GPQA (and Qwen, QwQ) configs use hybrid; particle filtering's process reward keeps the forced,
    # normalised verdict (a partial solution has no verdict of its own); GenRM runs of tteval 0.1 get new run ids
    from tteval.config import RunConfig

    genrm = RunConfig.of(verifier="genrm")
    assert genrm.genrm_mode() == "hybrid" and genrm.identity()["verifier"]["genrm_score"] == "hybrid"
    assert genrm.legacy_identity()["genrm_score"] == "hybrid"
    assert RunConfig.of(strategy="particle-filter").genrm_mode() == "normalized"
    assert RunConfig.of(verifier="genrm", genrm_score="binary").run_id() != genrm.run_id()
    plain = RunConfig()
    assert plain.genrm_mode() is None and "genrm_score" not in plain.legacy_identity()  # other runs keep their ids
    assert "verifier" not in plain.identity()  # a run without a scorer hashes no verifier settings
