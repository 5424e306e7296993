"""The SQLite generation cache in front of the real llama.cpp backend: hits are free and identical."""

import pytest

from tteval.backends.base import Request
from tteval.backends.llamacpp import LlamaCppBackend
from tteval.cache import CachedBackend, cacheable, request_key


@pytest.fixture(scope="module")
def llama():
    b = LlamaCppBackend()
    yield b
    b.close()


def test_second_identical_request_is_served_from_sqlite(llama, tmp_path):
    cached = CachedBackend(llama, tmp_path / "gen.sqlite")
    req = Request(messages=(("user", "Name a colour."),), n=2, max_tokens=12, seed=11)
    first = cached.generate([req])
    tokens = llama.usage.completion_tokens
    second = cached.generate([req])
    assert llama.usage.completion_tokens == tokens  # nothing generated the second time
    assert (cached.hits, cached.misses) == (1, 1)
    assert [c.text for c in second[0]] == [c.text for c in first[0]]
    assert second[0][0].token_logprobs == first[0][0].token_logprobs
    reopened = CachedBackend(llama, tmp_path / "gen.sqlite")  # persisted across processes/objects
    assert [c.text for c in reopened.generate([req])[0]] == [c.text for c in first[0]] and reopened.hits == 1


def test_key_covers_sampling_parameters_and_unseeded_requests_are_not_cached():
    a = Request(prompt="x", n=2, seed=1)
    assert request_key("llamacpp", "m", a) != request_key("llamacpp", "m", Request(prompt="x", n=2, seed=2))
    assert request_key("llamacpp", "m", a) != request_key("vllm", "m", a)
    assert request_key("llamacpp", "m", a) != request_key("llamacpp", "m2", a)
    assert not cacheable(Request(prompt="x", temperature=0.7)) and cacheable(Request(prompt="x", temperature=0))
