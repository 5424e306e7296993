"""The in-memory fake backend (tests/fake_backend.py) keeps the Backend protocol's promises, so the pipeline tests
that use it test tteval, not the fake; and `--backend module:factory` plug-ins load, or fail in one line."""

from __future__ import annotations

import json

import pytest
from fake_backend import FakeBackend
from helpers import assert_one_line_error, run_dirs, tteval

from tteval.backends.base import Request
from tteval.backends.plugin import load_factory, make_plugin_backend
from tteval.errors import TtevalError
from tteval.tasks import load_problems, load_task

GSM8K = load_task("gsm8k")
PROBLEMS = load_problems(GSM8K, 12)


def requests(n: int = 4, **kw) -> list[Request]:
    return [Request(messages=GSM8K.messages(p), n=n, seed=1000 + i, **kw) for i, p in enumerate(PROBLEMS)]


def test_samples_depend_only_on_seed_index_and_prompt_not_on_the_batch():
    fake = FakeBackend.for_task(GSM8K, PROBLEMS)
    whole = fake.generate(requests())
    alone = [fake.generate([r])[0] for r in requests()]
    assert [[c.text for c in cs] for cs in whole] == [[c.text for c in cs] for cs in alone]
    assert [[c.logprob for c in cs] for cs in whole] == [[c.logprob for c in cs] for cs in alone]
    assert [c.text for c in fake.generate(requests(n=2))[3]] == [c.text for c in whole[3][:2]]  # a prefix of n=4
    other = fake.generate([Request(messages=GSM8K.messages(PROBLEMS[0]), n=4, seed=7)])[0]
    assert [c.logprob for c in other] != [c.logprob for c in whole[0]]


def test_answers_are_sometimes_right_so_the_metrics_are_not_trivial():
    fake = FakeBackend.for_task(GSM8K, PROBLEMS)
    out = fake.generate(requests(n=8))
    right = [sum(f"\\boxed{{{GSM8K.gold(p)}}}" in c.text for c in cs) for p, cs in zip(PROBLEMS, out)]
    assert 0 < sum(right) < 8 * len(PROBLEMS)
    assert any(0 < r < 8 for r in right)  # a mixed pool: votes and pass@k differ
    assert all(c.finish_reason == "stop" and c.num_tokens == len(c.tokens) and c.logprob < 0 for cs in out for c in cs)
    assert fake.usage.calls == 1 and fake.usage.completion_tokens == sum(c.num_tokens for cs in out for c in cs)


def test_max_tokens_and_stop_strings_end_a_sample_as_an_engine_does():
    fake = FakeBackend.for_task(GSM8K, PROBLEMS)
    (cut,) = fake.generate([Request(messages=GSM8K.messages(PROBLEMS[0]), n=1, seed=1, max_tokens=3)])[0]
    assert (cut.num_tokens, cut.finish_reason, len(cut.token_logprobs)) == (3, "length", 3)
    (step,) = fake.generate([Request(messages=GSM8K.messages(PROBLEMS[0]), n=1, seed=1, stop=("\n\n",))])[0]
    assert step.finish_reason == "stop" and step.stop_reason == "\n\n" and "\n\n" not in step.text
    with pytest.raises(TtevalError, match="top_p"):
        fake.generate([Request(prompt="x", top_p=0.0)])


def test_a_plugin_that_cannot_load_is_one_line(tmp_path, fake_backend):
    with pytest.raises(TtevalError, match="cannot import no_such_module"):
        load_factory("no_such_module:make")
    with pytest.raises(TtevalError, match="has no callable nope"):
        load_factory("fake_backend:nope")
    with pytest.raises(TtevalError, match="not a Backend"):
        make_plugin_backend("json:loads", "{}")
    assert_one_line_error(tteval("run", "--backend", "no_such_module:make", "--out", str(tmp_path)),
                          "--backend 'no_such_module:make': cannot import no_such_module")  # fmt: skip
    r = tteval("run", "--backend", fake_backend, "--model-args", "delay=1", "--out", str(tmp_path))
    assert "delay" in assert_one_line_error(r, "--model-args: ")  # a key the factory does not list
    assert run_dirs(tmp_path) == []


def test_a_run_on_the_fake_plugin_writes_a_run_folder(tmp_path, fake_backend):
    r = tteval("run", "--backend", fake_backend, "--task", "gsm8k", "--limit", "6", "-n", "4", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    (run,) = run_dirs(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    assert meta["config"]["backend"] == "fake_backend:make" and meta["backend"]["name"] == "fake"
    curves = json.loads((run / "metrics.json").read_text())["curves"]
    assert 0 < curves["pass@k"][0]["value"] < 1 and curves["pass@k"][-1]["value"] >= curves["maj@k"][-1]["value"]
