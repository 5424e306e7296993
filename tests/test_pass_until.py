"""`tteval run --strategy pass-until`: rounds until r successes or the cap, its metrics, and resume by whole rounds."""

import json
from pathlib import Path

import pytest
from helpers import tteval

from tteval.metrics import compute_metrics
from tteval.config import RunConfig
from tteval.strategies.registry import strategy_for

EASY_TASK = """\
name: say_four
kind: math
source: {local: say_four.jsonl}
prompt: {system: "Answer with the number only.", user: "{question}"}
math: {gold: "{answer}", extract: gsm8k}
"""


def pu_config(**kw) -> RunConfig:
    return RunConfig.of(strategy="pass-until", n=kw.pop("n", 8), until_successes=kw.pop("r", 2), **kw)


def finished(config: RunConfig, records) -> bool:
    return strategy_for(config).finished(config, records)


def kept(config: RunConfig, records) -> int:
    return strategy_for(config).kept_on_resume(config, records)


def rec(task_id, i, correct):
    return {"task_id": task_id, "sample_index": i, "correct": correct, "num_tokens": 10}


def test_a_problem_is_finished_at_the_rth_success_or_the_cap():
    c = pu_config(n=8, r=2, round_size=4)
    assert not finished(c, [rec("a", i, i == 1) for i in range(4)])
    assert finished(c, [rec("a", i, i in (1, 3)) for i in range(4)])
    assert finished(c, [rec("a", i, False) for i in range(8)])
    assert finished(RunConfig.of(n=4), [rec("a", i, False) for i in range(4)])


def test_resume_keeps_whole_rounds_only():
    c = pu_config(n=10, r=2, round_size=4)
    assert [kept(c, [rec("a", i, False) for i in range(m)]) for m in (0, 3, 4, 7, 8, 10)] == [0, 0, 4, 4, 8, 10]
    assert kept(RunConfig.of(n=4), [rec("a", i, False) for i in range(3)]) == 0


def test_identity_of_older_runs_is_unchanged_by_the_new_options():
    old = RunConfig().legacy_identity()  # identity 1: older run folders keep their ids
    assert "pf_iterations" not in old and "until_successes" not in old
    assert RunConfig.of(strategy="pass-until", until_successes=3).legacy_identity()["until_successes"] == 3
    # identity 2 hashes a strategy's knobs only when that strategy runs
    assert RunConfig.of(strategy="pass-until", until_successes=3).identity()["strategy"]["until_successes"] == 3
    assert RunConfig().identity()["strategy"] == {"name": "sample"}


def test_metrics_use_the_rth_success_and_report_censored_problems():
    samples = (
        [rec("a", i, i in (2, 5, 6)) for i in range(8)]  # 2nd success at trial 6: (2-1)/(6-1) = 0.2
        + [rec("b", i, i in (0, 1)) for i in range(4)]  # trials 2: 1.0
        + [rec("c", i, False) for i in range(8)]  # censored at the cap
    )
    m = compute_metrics(samples, task="t", n=8, config=pu_config(n=8, r=2))
    (point,) = m["curves"]["pass-until"]
    assert point["value"] == pytest.approx(0.6) and point["censored"] == 1 and point["k"] == 8
    assert 0 <= point["lower"] <= point["value"] <= point["upper"] <= 1
    assert point["upper_if_censored_at_bound"] > (0.2 + 1.0) / 3
    by_id = {p["task_id"]: p for p in m["pass_until"]["problems"]}
    assert by_id["a"]["trials"] == 6 and by_id["a"]["value"] == pytest.approx(0.2)
    assert by_id["c"]["censored"] and by_id["c"]["value"] is None and 0 < by_id["c"]["upper_bound"] < 0.5
    assert set(m["curves"]) == {"pass-until"}  # no pool estimators on sequentially stopped samples


def test_all_censored_is_zero_with_the_rule_of_three_bound():
    m = compute_metrics([rec("a", i, False) for i in range(100)], task="t", n=100, config=pu_config(n=100, r=2))
    (point,) = m["curves"]["pass-until"]
    assert point["value"] == 0 and point["censored"] == 1 and point["upper"] == pytest.approx(0.0295, abs=1e-3)


def run_pass_until(tasks_dir: Path, out: Path, backend: str):
    args = ["run", "--backend", backend, "--task", "say_four", "--tasks-dir", str(tasks_dir), "--strategy", "pass-until", "-n", "6",
            "--round-size", "2", "--until-successes", "2", "--max-tokens", "8", "--batch-problems", "1", "--limit", "3",
            "--out", str(out), "--no-cache"]  # fmt: skip
    r = tteval(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = [d for d in out.iterdir() if d.is_dir()]
    return run, r


def test_pass_until_run_and_resume(tmp_path, fake_backend):
    """On the in-memory fake backend: the rounds, the stopping rule and resume are tteval's, not the model's."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "say_four.yaml").write_text(EASY_TASK)
    rows = [{"question": "What is 2 + 2?", "answer": "4"}, {"question": "Write the number 4.", "answer": "4"},
            {"question": "What is 917 * 351?", "answer": "321867"}]  # fmt: skip
    (tasks / "say_four.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run, _ = run_pass_until(tasks, tmp_path / "full", fake_backend)
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    metrics = json.loads((run / "metrics.json").read_text())
    for p in metrics["pass_until"]["problems"]:
        mine = sorted((s for s in samples if s["task_id"] == p["task_id"]), key=lambda s: s["sample_index"])
        assert [s["sample_index"] for s in mine] == list(range(len(mine))) and len(mine) % 2 == 0
        hits = [i for i, s in enumerate(mine) if s["correct"]]
        if p["censored"]:  # the cap came first: all 6 samples, fewer than 2 correct
            assert len(mine) == 6 and len(hits) < 2
        else:  # stopped at the round holding the 2nd success; the estimate uses that exact trial
            assert len(hits) >= 2 and hits[1] + 1 == p["trials"] and len(mine) == (hits[1] // 2 + 1) * 2
            assert p["value"] == pytest.approx(1 / (p["trials"] - 1))
    # cut the file back into the middle of a round of the last problem: the resumed run equals the full one
    cut = tmp_path / "cut" / run.name
    cut.mkdir(parents=True)
    (cut / "run.json").write_text((run / "run.json").read_text())
    keep = [s for s in samples if not (s["task_id"] == samples[-1]["task_id"] and s["sample_index"] >= 3)]
    (cut / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in keep))
    resumed, r = run_pass_until(tasks, tmp_path / "cut", fake_backend)
    assert "resuming" in r.stderr
    again = [json.loads(line) for line in (resumed / "samples.jsonl").read_text().splitlines()]
    key = lambda s: (s["task_id"], s["sample_index"])  # noqa: E731
    assert sorted(again, key=key) == sorted(samples, key=key)
    assert json.loads((resumed / "metrics.json").read_text())["curves"] == metrics["curves"]
