"""Every numeric option is bounded: nonsense is one error line before anything runs, nothing is sent or written.

Before, `-n 10^23` went on to the server, `--temperature inf` was an internal error when writing JSON, and
`--pf-softmax-temp nan`, negative `--tensor-parallel` / `--pf-step-tokens` / `--pf-max-steps` /
`--verifier-max-tokens`, an unknown `--prm-aggregation`, `--max-concurrency 10^9` and `score --workers 10^6`
were accepted. The CLI cases run the real command against the scripted server of tests/helpers.py.
"""

from __future__ import annotations

import json
import math

import pytest
from helpers import assert_one_line_error, healthy, run_args, run_dirs, tteval

from tteval.bounds import RUN_BOUNDS, Bound, check
from tteval.errors import TtevalError
from tteval.config import RunConfig

BIG = str(10**23)
RUN_CASES = [
    (["-n", BIG], f"-n must be at most 1000000, got {BIG}"),
    (["--max-tokens", str(10**12)], "--max-tokens must be at most 1048576, got 1000000000000"),
    (["--temperature", "1e308"], "--temperature must be at most 10, got 1e+308"),
    (["--temperature", "inf"], "--temperature must be a finite number in [0, 10], got inf"),
    (["--temperature", "nan"], "--temperature must be a finite number in [0, 10], got nan"),
    (["--top-p", "nan"], "--top-p must be a finite number in (0, 1], got nan"),
    (["--pf-softmax-temp", "nan"], "--pf-softmax-temp must be a finite number in (0, 1000000], got nan"),
    (["--pf-softmax-temp", "0"], "--pf-softmax-temp must be in (0, 1000000], got 0.0"),
    (["--tensor-parallel", "-1"], "--tensor-parallel must be at least 1, got -1"),
    (["--pf-step-tokens", "-1"], "--pf-step-tokens must be at least 1, got -1"),
    (["--pf-max-steps", "-3"], "--pf-max-steps must be at least 1, got -3"),
    (["--verifier-max-tokens", "-1"], "--verifier-max-tokens must be at least 1, got -1"),
    (["--prm-aggregation", "median"], "'median' is not one of 'last', 'min', 'prod', 'mean', 'model'"),
    (["--max-concurrency", str(10**9)], "--max-concurrency must be at most 4096, got 1000000000"),
    (["--timeout", "inf"], "--timeout must be a finite number in (0, 604800], got inf"),
    (["--grader-processes", str(10**6)], "--grader-processes must be at most 256, got 1000000"),
    (["--workers", str(10**6)], "--grader-processes must be at most 256, got 1000000"),  # its former name
    (["--seed", "-1"], "--seed must be at least 0, got -1"),
    (["--ray-actors", "0"], "--ray-actors must be at least 1, got 0"),
]


@pytest.mark.parametrize("extra,message", RUN_CASES, ids=[" ".join(a)[:40] for a, _ in RUN_CASES])
def test_run_options_out_of_bounds_are_one_line_and_nothing_is_sent(server, tmp_path, extra, message):
    srv = server(healthy)
    r = tteval(*run_args(srv.url, tmp_path / "out", "--limit", "1", "-n", "1", *extra))
    assert_one_line_error(r, message)
    assert srv.asked == [] and run_dirs(tmp_path / "out") == []


def test_a_resumed_run_json_is_held_to_the_same_bounds(server, tmp_path):
    srv = server(healthy)
    r = tteval(*run_args(srv.url, tmp_path, "--limit", "1", "-n", "1"))
    assert r.returncode == 0, r.stderr
    (run,) = run_dirs(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    meta["config"]["max_tokens"] = meta["config"]["identity"]["sampling"]["max_tokens"] = 10**12  # edited consistently
    (run / "run.json").write_text(json.dumps(meta))
    assert_one_line_error(tteval("run", "--resume", str(run)), "--max-tokens must be at most 1048576")


@pytest.mark.parametrize(
    "args,message",
    [
        (["sweep", "--task", "gsm8k", "--budgets", BIG, "--no-plots"], "--budgets must be at most 1000000"),
        (["sweep", "--task", "gsm8k", "--max-tokens", str(10**12), "--no-plots"], "--max-tokens must be at most 1048576"),
        (["sweep", "--task", "gsm8k", "--temperature", "inf", "--no-plots"], "--temperature must be a finite number"),
        (["score", "x.jsonl", "--task", "gsm8k", "--grader-processes", str(10**6)],
         "--grader-processes must be at most 256, got 1000000"),
    ],
)
def test_sweep_and_score_options_out_of_bounds_are_one_line(tmp_path, args, message):
    args = [str(tmp_path / a) if a == "x.jsonl" else a for a in args]
    (tmp_path / "x.jsonl").write_text('{"task_id": "gsm8k/0", "completion": "1"}\n')
    r = tteval(*args, "--out", str(tmp_path / "out"))
    assert_one_line_error(r, message)
    assert not (tmp_path / "out").exists()


def test_score_refuses_a_sample_index_of_ten_to_the_thirty(tmp_path):
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"task_id": "gsm8k/0", "completion": "1", "sample_index": 10**30}) + "\n")
    r = tteval("score", str(samples), "--task", "gsm8k")
    assert_one_line_error(r, f"{samples}:1: field 'sample_index' must be a whole number in [0, 1000000)")


# ------------------------------------------------------------------------------------------ the table itself
def _outside(b: Bound) -> list:
    below = b.lo if b.lo_open else (b.lo - 1 if b.integer else b.lo - 0.5)
    above = b.hi + 1 if b.integer else b.hi * 2
    return [below, above] + ([] if b.integer else [math.nan, math.inf, -math.inf]) + ([1.5, True] if b.integer else [True])


@pytest.mark.parametrize("name", sorted(RUN_BOUNDS))
def test_every_bounded_field_refuses_what_is_outside_and_takes_its_ends(name):
    b = RUN_BOUNDS[name]
    for value in _outside(b):
        with pytest.raises(TtevalError, match=f"^{b.flag} must be "):
            check(b, value)
        with pytest.raises(TtevalError, match=f"^{b.flag} must be "):
            RunConfig.of(**{name: value}).validate()
    ends = [b.hi] if b.lo_open else [b.lo, b.hi]
    for value in ends:
        check(b, value)
    RunConfig.of(**{name: b.hi}).validate()
