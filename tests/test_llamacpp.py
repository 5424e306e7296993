"""The llama.cpp backend on the real embedded model: batching, seeds, logprobs, stops, chat template."""

import math

import pytest

from tteval.backends.base import Request
from tteval.backends.llamacpp import LlamaCppBackend, resolve_model_path
from tteval.errors import TtevalError

MSGS = (("user", "What is 12 + 30? Answer briefly."),)


@pytest.fixture(scope="module")
def backend():
    b = LlamaCppBackend()
    yield b
    b.close()


def test_default_model_resolves_to_the_packaged_gguf():
    assert resolve_model_path("smollm2").endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    with pytest.raises(TtevalError, match="model file not found"):
        resolve_model_path("/no/such/model.gguf")


def test_n_samples_with_logprobs(backend):
    (out,) = backend.generate([Request(messages=MSGS, n=4, max_tokens=24, seed=1, temperature=1.0)])
    assert len(out) == 4
    for c in out:
        assert 1 <= c.num_tokens <= 24 and c.finish_reason in ("stop", "length")
        assert math.isfinite(c.logprob) and c.logprob == pytest.approx(sum(c.token_logprobs))
        assert len(c.token_logprobs) == c.num_tokens and all(lp <= 0 for lp in c.token_logprobs)
        assert c.prompt_tokens > 10
    assert len({c.text for c in out}) > 1


def test_same_seed_same_samples_and_batch_independence(backend):
    req = Request(messages=MSGS, n=3, max_tokens=20, seed=7, temperature=1.0)
    alone = backend.generate([req])[0]
    again = backend.generate([req])[0]
    other = Request(messages=(("user", "Name a fruit."),), n=2, max_tokens=12, seed=3)
    together = backend.generate([other, req])[1]
    assert [c.text for c in alone] == [c.text for c in again] == [c.text for c in together]


def test_greedy_matches_llama_cpp_python(backend):
    (out,) = backend.generate([Request(messages=MSGS, n=2, max_tokens=20, temperature=0)])
    ref = backend._llm.create_completion(backend.apply_chat_template(MSGS), max_tokens=20, temperature=0)
    assert out[0].text == out[1].text == ref["choices"][0]["text"]


def test_stop_strings_and_top_logprobs(backend):
    (out,) = backend.generate([Request(messages=MSGS, n=1, max_tokens=30, temperature=0, stop=("+",), top_logprobs=5)])
    c = out[0]
    assert "+" not in c.text and c.stop_reason == "+"
    assert len(c.top_logprobs) == c.num_tokens
    first = c.top_logprobs[0]
    assert len(first) <= 5 and max(first.values()) == pytest.approx(c.token_logprobs[0])


def test_chat_template_is_smollm2s(backend):
    text = backend.apply_chat_template((("system", "s"), ("user", "u")))
    assert text == "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"
