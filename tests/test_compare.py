"""`tteval compare`: the paired statistics against scipy and closed forms, and the real command on run folders."""

import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import helpers
from scipy import stats

from tteval.compare import compare_runs, mcnemar_exact, paired_bootstrap, parse_metric, problem_outcome, wilcoxon_p
from tteval.errors import TtevalError

tteval = partial(helpers.tteval, columns=250)  # wide enough for the comparison table on one line


def write_run(folder: Path, task: str, outcomes: dict[str, list], answers: dict[str, list] | None = None) -> Path:
    """A run folder: per problem, one sample per outcome (True/False), with answers voting by answer_class."""
    folder.mkdir(parents=True)
    lines = []
    for tid, corrects in outcomes.items():
        for i, ok in enumerate(corrects):
            ans = (answers or {}).get(tid, [None] * len(corrects))[i] or ("right" if ok else f"wrong{i}")
            lines.append({"task_id": tid, "sample_index": i, "completion": "", "answer": ans, "correct": ok,
                          "scores": {"genrm": 0.9 if ok else 0.1}})  # fmt: skip
    (folder / "run.json").write_text(json.dumps({"run_id": folder.name, "status": "complete",
                                                 "config": {"task": task, "model": "m", "n": 1}}))  # fmt: skip
    (folder / "samples.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


# ------------------------------------------------------------------------------------------ statistics


def test_mcnemar_exact_is_the_two_sided_binomial_test_of_discordant_pairs():
    a = [1] * 5 + [1] * 1 + [0] * 9 + [0] * 5  # 5 both right, 1 only A, 9 only B, 5 both wrong
    b = [1] * 5 + [0] * 1 + [1] * 9 + [0] * 5
    p, only_a, only_b = mcnemar_exact(a, b)
    assert (only_a, only_b) == (1, 9)
    assert p == pytest.approx(22 / 1024)  # 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert p == pytest.approx(stats.binomtest(1, 10, 0.5).pvalue)
    assert mcnemar_exact([1, 0, 1], [1, 0, 1])[0] == 1.0  # no discordant problem
    assert mcnemar_exact([1, 0], [0, 1])[0] == 1.0  # one each way: P = 1
    with pytest.raises(ValueError):
        mcnemar_exact([0.5], [1])


def test_paired_bootstrap_is_seeded_and_centred_on_the_mean_difference():
    rng = np.random.default_rng(1)
    a = rng.random(400)
    b = a + 0.05 + 0.1 * rng.standard_normal(400)
    diff, lo, hi = paired_bootstrap(a, b, seed=3)
    assert diff == pytest.approx(float(np.mean(b - a)))
    assert (diff, lo, hi) == paired_bootstrap(a, b, seed=3)  # deterministic
    se = float(np.std(b - a, ddof=1) / math.sqrt(400))
    assert lo == pytest.approx(diff - 1.96 * se, abs=0.25 * se) and hi == pytest.approx(diff + 1.96 * se, abs=0.25 * se)
    # pairing matters: the same values unpaired would give a much wider interval
    assert hi - lo < 0.5 * 2 * 1.96 * math.sqrt((np.var(a) + np.var(b)) / 400)
    assert paired_bootstrap([0.5, 0.5], [0.5, 0.5]) == (0.0, 0.0, 0.0)
    d, lo1, hi1 = paired_bootstrap([0.0], [1.0])
    assert d == 1.0 and math.isnan(lo1) and math.isnan(hi1)  # one problem: no interval


def test_wilcoxon_matches_scipy_and_is_none_without_differences():
    a = [0.25, 0.5, 0.75, 0.0, 1.0, 0.5, 0.25]
    b = [0.5, 0.75, 0.75, 0.25, 1.0, 1.0, 0.5]
    assert wilcoxon_p(a, b) == pytest.approx(stats.wilcoxon(np.subtract(b, a)).pvalue)
    assert wilcoxon_p(a, a) is None


def test_parse_metric_and_per_problem_outcomes():
    assert parse_metric("maj@8").name == "maj@8" and parse_metric("bon@4[genrm]").scorer == "genrm"
    for bad in ("acc", "pass@0", "bon@4", "maj@k", "pass@1[x]", "genrm@4", "genrm@4[V=0]", "genrm@4[x]"):
        with pytest.raises(TtevalError, match="unknown metric"):
            parse_metric(bad)
    group = [{"answer_class": c, "correct": ok} for c, ok in ((0, True), (0, True), (1, False), (-1, False))]
    assert problem_outcome(group, parse_metric("pass@1")) == pytest.approx(0.5)
    assert problem_outcome(group, parse_metric("pass@2")) == pytest.approx(1 - 1 / 6)
    assert problem_outcome(group, parse_metric("maj@4")) == 1.0
    assert problem_outcome(group, parse_metric("maj@8")) is None  # fewer samples than k


# ------------------------------------------------------------------------------------------ the command


@pytest.fixture
def runs(tmp_path):
    """Greedy-like runs (one sample per problem) on 20 problems: B fixes 9 of A's failures and breaks 1."""
    a = {f"gsm8k/{i}": [i < 6] for i in range(20)}
    b = {f"gsm8k/{i}": [i < 5 or 6 <= i < 15] for i in range(20)}
    return write_run(tmp_path / "A", "gsm8k", a), write_run(tmp_path / "B", "gsm8k", b)


def test_cli_compare_binary_outcomes_json_and_table(runs):
    a, b = runs
    r = tteval("compare", str(a), str(b), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["shared"] == 20 and got["task"] == "gsm8k"
    (res,) = got["results"]
    assert res["metric"] == "pass@1" and res["test"] == "McNemar exact"
    assert (res["mean_a"], res["mean_b"], res["diff"]) == pytest.approx((0.30, 0.70, 0.40))
    assert (res["only_a"], res["only_b"]) == (1, 9) and res["p_value"] == pytest.approx(22 / 1024)
    assert res["lower"] < 0.40 < res["upper"] and res["lower"] > 0  # the gain is real at 95%
    assert json.loads(tteval("compare", str(a), str(b), "--json").stdout) == got  # seeded: same interval every time
    r = tteval("compare", str(a), str(b))
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.strip().startswith("│ pass@1"))
    assert "30.0" in row and "70.0" in row and "+40.0 [" in row and "9 / 1" in row and "0.021" in row


def test_cli_compare_graded_outcomes_use_wilcoxon(tmp_path):
    rng = np.random.default_rng(0)
    a_ok = {f"t/{i}": [bool(x) for x in rng.random(4) < 0.3] for i in range(15)}
    b_ok = {f"t/{i}": [bool(x) for x in rng.random(4) < 0.7] for i in range(15)}
    a, b = write_run(tmp_path / "a", "t", a_ok), write_run(tmp_path / "b", "t", b_ok)
    r = tteval("compare", str(a), str(b), "--metric", "pass@1", "--metric", "maj@3", "--json")
    assert r.returncode == 0, r.stderr
    pass1, maj3 = json.loads(r.stdout)["results"]
    x = [np.mean(a_ok[t]) for t in sorted(a_ok)]
    y = [np.mean(b_ok[t]) for t in sorted(b_ok)]
    assert pass1["test"] == "Wilcoxon signed-rank" and pass1["diff"] == pytest.approx(np.mean(y) - np.mean(x))
    assert pass1["p_value"] == pytest.approx(stats.wilcoxon(np.subtract(y, x)).pvalue)
    assert maj3["metric"] == "maj@3" and maj3["problems"] == 15
    api = compare_runs(a, b, ["pass@1"])  # the Python API gives what the command prints
    assert api.results[0].p_value == pytest.approx(pass1["p_value"])
    from tteval import compare_runs as public

    assert public(a, b).results[0].diff == pytest.approx(pass1["diff"])


def test_cli_compare_errors_are_one_line(runs, tmp_path):
    a, b = runs
    other = write_run(tmp_path / "M", "math500", {"math500/1": [True]})
    disjoint = write_run(tmp_path / "D", "gsm8k", {"gsm8k/99": [True]})
    cases = [
        ((str(a), str(other)), "different tasks (gsm8k and math500)"),
        ((str(a), str(disjoint)), "share no problem"),
        ((str(a), str(b), "--metric", "accuracy"), "unknown metric 'accuracy'"),
        ((str(a), str(b), "--metric", "maj@4"), "maj@4 does not apply to run A"),
        ((str(a), str(tmp_path / "nowhere")), "no such run folder"),
    ]
    for args, message in cases:
        r = tteval("compare", *args)
        errors = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(errors) == 1 and message in errors[0], (args, r.stderr)


def test_per_problem_outcomes_average_to_the_runs_own_curves():
    """On the committed GenRM GPQA run: each metric's mean over problems equals the run's metrics.json point."""
    run = Path(__file__).resolve().parents[1] / "results" / "example-genrm-gpqa" / "run"
    curves = json.loads((run / "metrics.json").read_text())["curves"]
    point = lambda name, k: next(p["value"] for p in curves[name] if p["k"] == k)  # noqa: E731
    r = tteval("compare", str(run), str(run), "-m", "pass@16", "-m", "maj@4", "-m", "genrm@64[V=32]", "-m",
               "genrm@4[V=4]", "--json", "--reps", "200")  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = {x["metric"]: x for x in json.loads(r.stdout)["results"]}
    assert got["pass@16"]["mean_a"] == pytest.approx(point("pass@k", 16))
    assert got["maj@4"]["mean_a"] == pytest.approx(point("maj@k", 4))
    assert got["genrm@64[V=32]"]["mean_a"] == pytest.approx(point("genrm@k[V=32]", 64))  # 50.9%, README's table
    assert got["genrm@4[V=4]"]["mean_b"] == pytest.approx(point("genrm@k[V=4]", 4))
    assert all(x["diff"] == 0 and x["p_value"] is None and x["better"] == x["worse"] == 0 for x in got.values())
