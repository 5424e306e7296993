"""The README's worked example: GenRM's released GPQA pool through `tteval score --graded`, against the numbers the
authors' own evaluation gives (When To Solve, When To Verify; data/genrm_gpqa/PROVENANCE.md)."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

import genrm_authors_eval as authors
from helpers import tteval
from tteval import estimators as est
from tteval.score_file import answer_classes

ROOT = Path(__file__).resolve().parents[1]
POOL = ROOT / "data" / "genrm_gpqa" / "pool_graded.jsonl.gz"
EXAMPLE = ROOT / "results" / "example-genrm-gpqa" / "run"


def problems() -> list[list[dict]]:
    """The pool's records per problem, in sample order and in the authors' problem order."""
    groups: dict[str, list[dict]] = {}
    for line in gzip.open(POOL, "rt", encoding="utf-8"):
        r = json.loads(line)
        groups.setdefault(r["task_id"], []).append(r)
    order = sorted(groups, key=lambda t: int(t.split("/")[1]))
    return [sorted(groups[t], key=lambda r: r["sample_index"]) for t in order]


@pytest.fixture(scope="module")
def metrics(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpqa") / "run"
    r = tteval("score", str(POOL), "--graded", "--model", "Llama-3.3-70B-Instruct", "--out", str(out), cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "metrics.json").read_text())


def curve(metrics: dict, name: str) -> dict[int, float]:
    return {p["k"]: p["value"] for p in metrics["curves"][name]}


@pytest.mark.slow
def test_when_to_solve_when_to_verify_authors_evaluation_is_reproduced_on_the_released_pool():
    # their Monte-Carlo vote (25 subsets, seed 33) and 100-shuffle best-of-N, redone on the released pool, give the
    # plot points they committed beside it, to the last bit: the pool and our reading of their code are faithful
    got = authors.authors_plot_points(problems())
    for s, value in authors.MAJORITY_VOTING.items():
        assert got["majority_voting"][s] == pytest.approx(value, abs=1e-12)
    for sv, value in authors.BEST_OF_K.items():
        assert got["best_of_k"][sv] == pytest.approx(value, abs=1e-12)


def test_when_to_solve_when_to_verify_gpqa_pool_matches_the_authors_figures(metrics):
    # coverage: the same unbiased pass@k as theirs, over all 128 solutions
    for k, value in authors.COVERAGE.items():
        assert curve(metrics, "pass@k")[k] == pytest.approx(value, abs=1e-12)
    # majority voting: tteval's exact expectation over all k-subsets; theirs averages 25 random subsets (exact only
    # at k = 128, one subset), so they differ by their Monte-Carlo error (at most 0.011 here, at k = 1)
    maj = curve(metrics, "maj@k")
    assert maj[128] == pytest.approx(authors.MAJORITY_VOTING[128], abs=1e-12)
    assert all(abs(maj[k] - v) < 0.015 for k, v in authors.MAJORITY_VOTING.items())
    assert maj[1] == pytest.approx(authors.COVERAGE[1], abs=1e-12)  # one vote is one sample
    # GenRM best-of-S at V verifications, over the first 64 (verified) solutions: tteval's exact tie-aware formula;
    # theirs averages 100 random tie-breaking orders (and adds 1e-9 to a denominator): within 0.006, exact at S = 1
    for (s, v), value in authors.BEST_OF_K.items():
        assert curve(metrics, f"genrm@k[V={v}]")[s] == pytest.approx(value, abs=0.0075 if s > 1 else 1e-9)
    assert metrics["compute"]["genrm"]["verified_samples"] == 64 and metrics["compute"]["genrm"]["of_samples"] == 128
    # the paper's compute C = S (1 + lambda V), lambda = 1 for GenRM-Base when token counts are unknown (as here)
    assert metrics["compute"]["lambda"] == 1.0
    assert [p["compute"] for p in metrics["curves"]["genrm@k[V=4]"]] == [s * 5 for s in (1, 2, 4, 8, 16, 32, 64)]
    # every estimate lies in [0, 1] (the exact maj@k reached 1 + 6.7e-16 in 13 cells before it was clipped)
    assert all(0.0 <= p[f] <= 1.0 for pts in metrics["curves"].values() for p in pts for f in ("value", "lower", "upper"))
    for g in problems():
        classes = answer_classes([r["answer"] for r in g])
        assert est.maj_at_k_curve(classes, [r["correct"] for r in g], [1, 2, 4, 8, 16, 32, 64, 128]).max() <= 1.0


def test_the_committed_gpqa_example_is_what_the_command_writes(metrics):
    committed = json.loads((EXAMPLE / "metrics.json").read_text())
    assert committed["curves"].keys() == metrics["curves"].keys()
    for name, points in metrics["curves"].items():
        for a, b in zip(points, committed["curves"][name]):
            assert a["k"] == b["k"] and np.allclose([a["value"], a["lower"], a["upper"]], [b["value"], b["lower"], b["upper"]],
                                                    rtol=0, atol=1e-12)  # fmt: skip
    meta = json.loads((EXAMPLE / "run.json").read_text())
    assert meta["config"]["input_sha256"] and meta["config"]["graded"] is True


def test_the_compute_plot_keeps_every_curve_above_light_bands():
    # the paper's figure type: coverage, majority voting and GenRM at each V against C = S(1 + lambda V); with eight
    # curves in one panel their 95% bands, stacked, stay light and are drawn under every curve
    from tteval.collect import collect_runs
    from tteval.plots import scaling_figure

    df = collect_runs(EXAMPLE)
    fig = scaling_figure(df, "compute", strategies=["pass@k", "maj@k", "genrm@k*"])
    (ax,) = [a for a in fig.axes if a.get_title()]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["genrm@k[V=1]", "genrm@k[V=2]", "genrm@k[V=4]", "genrm@k[V=8]", "genrm@k[V=16]",
                           "genrm@k[V=32]", "maj@k", "pass@k"]  # fmt: skip
    assert list(lines["genrm@k[V=32]"].get_xdata()) == [33 * s for s in (1, 2, 4, 8, 16, 32, 64)]
    assert list(lines["maj@k"].get_xdata()) == [1, 2, 4, 8, 16, 32, 64, 128]
    bands = ax.collections
    assert len(bands) == 8 and 1 - np.prod([1 - b.get_alpha() for b in bands]) <= 0.25
    assert max(b.get_zorder() for b in bands) < min(line.get_zorder() for line in lines.values())
