"""The llama.cpp backend on the real SmolLM2-135M model: batching, seeding, logprobs, stops, chat template."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from tteval.backends.base import Request
from tteval.backends.llamacpp import DEFAULT_MODEL, LlamaCppBackend
from tteval.backends.model_files import resolve_model_path
from tteval.backends.sampling import inverse_cdf, row_stats, sample_token, top_logprob_ids
from tteval.backends.threads import default_threads
from tteval.errors import TtevalError

QUESTION = "Natalia sold clips to 48 of her friends in April, and half as many in May. How many clips did she sell?"
CHAT = (("user", QUESTION),)
OTHER = (("user", "Write a short poem about the sea."),)


@pytest.fixture(scope="module")
def backend():
    b = LlamaCppBackend(max_parallel=8, n_threads=1)  # one thread: steady on a shared 2-core CI box
    yield b
    b.close()


@pytest.fixture(scope="module")
def small_backend():
    """Three slots only: a request with n > 3 must refill slots and copy a live sibling's prompt cells."""
    b = LlamaCppBackend(max_parallel=3, n_threads=1)
    yield b
    b.close()


def texts(completions):
    return [c.text for c in completions]


# ------------------------------------------------------------------------------------------ model files
def test_default_model_resolves_to_the_packaged_gguf():
    path = resolve_model_path(DEFAULT_MODEL)
    assert Path(path).is_file() and path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert resolve_model_path("") == resolve_model_path("default") == path
    assert resolve_model_path(path) == path  # an existing local file is itself


@pytest.mark.parametrize("missing", ["/nonexistent/model.gguf", "models/missing.gguf", "./missing.gguf"])
def test_missing_local_model_is_a_user_error(missing):
    with pytest.raises(TtevalError, match="model file not found"):
        resolve_model_path(missing)


# ------------------------------------------------------------------------------------------ chat template
def test_chat_template_renders_smollm2_im_start_format(backend):
    rendered = backend.apply_chat_template((("system", "Be brief."), ("user", "Hi?")))
    turns = "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
    assert rendered == "<|im_start|>system\nBe brief.<|im_end|>\n" + turns
    # without a system message the GGUF's template adds SmolLM2's default one
    default = backend.apply_chat_template((("user", "Hi?"),))
    assert default.startswith("<|im_start|>system\n") and default.endswith(turns) and default.count("<|im_start|>") == 3


# ------------------------------------------------------------------------------------------ sampling
def test_n_samples_have_consistent_logprobs_and_usage(backend):
    before = (backend.usage.prompt_tokens, backend.usage.completion_tokens, backend.usage.calls)
    req = Request(messages=CHAT, n=4, temperature=1.0, max_tokens=20, seed=11)
    (out,) = backend.generate([req])
    assert len(out) == 4
    for c in out:
        assert 0 < c.num_tokens <= 20
        assert c.finish_reason in ("stop", "length")
        assert c.finish_reason == "stop" or c.num_tokens == 20
        assert len(c.token_logprobs) == len(c.tokens) == c.num_tokens
        assert math.isfinite(c.logprob) and c.logprob < 0
        assert all(lp <= 0 for lp in c.token_logprobs)
        assert c.logprob == pytest.approx(sum(c.token_logprobs), abs=1e-9)
        assert c.mean_logprob == pytest.approx(c.logprob / c.num_tokens)
        assert c.prompt_tokens == len(backend.tokenize(backend.apply_chat_template(CHAT)))
    assert len(set(texts(out))) >= 3  # different sample indices give different samples at temperature 1
    assert backend.usage.calls == before[2] + 1
    assert backend.usage.prompt_tokens == before[0] + out[0].prompt_tokens  # the prompt is counted once per request
    assert backend.usage.completion_tokens == before[1] + sum(c.num_tokens for c in out)


def test_same_seed_same_samples_and_another_seed_differs(backend):
    req = Request(messages=CHAT, n=3, temperature=1.0, max_tokens=16, seed=5)
    first, second = backend.generate([req])[0], backend.generate([req])[0]
    assert texts(first) == texts(second)
    assert [c.token_logprobs for c in first] == [c.token_logprobs for c in second]
    other = backend.generate([Request(messages=CHAT, n=3, temperature=1.0, max_tokens=16, seed=6)])[0]
    assert texts(other) != texts(first)


def test_a_sample_does_not_depend_on_its_batch(backend, small_backend):
    target = Request(messages=CHAT, n=5, temperature=0.9, top_p=0.95, max_tokens=16, seed=21)
    (alone,) = backend.generate([target])
    crowd = [
        Request(messages=OTHER, n=3, temperature=1.2, max_tokens=12, seed=1),
        target,
        Request(prompt="The capital of France is", n=2, temperature=0.5, max_tokens=10, seed=2),
    ]
    together = backend.generate(crowd)[1]
    # three slots for 5 + 3 + 2 samples: slots are refilled and prompt cells copied from live siblings
    squeezed = small_backend.generate(crowd)[1]
    for got in (together, squeezed):
        assert texts(got) == texts(alone)
        assert [c.token_logprobs for c in got] == [c.token_logprobs for c in alone]
    # a short request frees its slot while the target's first samples still decode: the later samples copy a live
    # sibling's prompt cells (the prompt is decoded once) and drop what that sibling generated
    short = Request(prompt="The capital of France is", n=1, temperature=0.5, max_tokens=4, seed=2)
    small_backend.clear_cache()  # else the cells kept from the last call would serve both prompts
    decoded = small_backend.usage.extra.get("prompt_tokens_decoded", 0)
    short_out, copied = small_backend.generate([short, target])
    newly_decoded = small_backend.usage.extra["prompt_tokens_decoded"] - decoded
    assert newly_decoded == short_out[0].prompt_tokens + copied[0].prompt_tokens
    assert texts(copied) == texts(alone)
    assert [c.token_logprobs for c in copied] == [c.token_logprobs for c in alone]
    # a request's first samples are its samples whatever its n
    (fewer,) = backend.generate([Request(messages=CHAT, n=2, temperature=0.9, top_p=0.95, max_tokens=16, seed=21)])
    assert texts(fewer) == texts(alone)[:2]


def test_greedy_matches_llama_cpp_python_create_completion(backend):
    from llama_cpp import Llama

    prompt = backend.apply_chat_template((("user", "What is the capital of France? Answer in one sentence."),))
    (out,) = backend.generate([Request(prompt=prompt, n=3, temperature=0.0, max_tokens=24, seed=1)])
    assert len(set(texts(out))) == 1 and len({tuple(c.token_logprobs) for c in out}) == 1
    llm = Llama(model_path=resolve_model_path(DEFAULT_MODEL), n_ctx=512, n_threads=1, n_threads_batch=1, verbose=False)
    try:
        ref = llm.create_completion(prompt, max_tokens=24, temperature=0.0)["choices"][0]
    finally:
        llm.close()
    assert out[0].text == ref["text"]
    assert out[0].finish_reason == ref["finish_reason"]


def test_tiny_top_p_is_greedy(backend):
    greedy = backend.generate([Request(messages=CHAT, temperature=0.0, max_tokens=12)])[0][0]
    nucleus = backend.generate([Request(messages=CHAT, n=2, temperature=1.0, top_p=1e-6, max_tokens=12, seed=3)])[0]
    assert texts(nucleus) == [greedy.text] * 2


def test_stop_strings_truncate_before_the_earliest_stop(backend):
    base = Request(messages=CHAT, temperature=0.0, max_tokens=40)
    full = backend.generate([base])[0][0].text
    words = [w for w in full.split() if len(w) > 3]
    assert len(words) >= 3, full
    late, early = words[2], words[1]
    (c,) = backend.generate([Request(messages=CHAT, temperature=0.0, max_tokens=40, stop=(late, early))])[0]
    cut = min(full.index(late), full.index(early))
    assert c.text == full[:cut]
    assert c.finish_reason == "stop" and c.stop_reason == full[cut : cut + len(c.stop_reason)]
    assert c.stop_reason in (late, early)


def test_eos_ends_with_stop_and_counts_the_eos_token(backend):
    req = Request(messages=(("user", "Say hello."),), n=2, temperature=0.0, max_tokens=64)
    for c in backend.generate([req])[0]:
        assert c.finish_reason == "stop" and c.stop_reason is None, c.text
        assert c.tokens[-1] == "<|im_end|>" and "<|im_end|>" not in c.text
        assert c.num_tokens == len(c.tokens) < 64


def test_top_logprobs_hold_the_sampled_token(backend):
    greedy = backend.generate([Request(messages=CHAT, temperature=0.0, max_tokens=10, top_logprobs=3)])[0][0]
    assert len(greedy.top_logprobs) == greedy.num_tokens
    for tok, lp, top in zip(greedy.tokens, greedy.token_logprobs, greedy.top_logprobs):
        values = list(top.values())
        assert 1 <= len(top) <= 3 and values == sorted(values, reverse=True)
        assert next(iter(top)) == tok and top[tok] == pytest.approx(lp, abs=1e-12)  # greedy = the top-1 token
        assert sum(math.exp(v) for v in values) <= 1 + 1e-6
    (hot,) = backend.generate([Request(messages=CHAT, temperature=1.0, max_tokens=10, top_logprobs=5, seed=9)])[0]
    hits = [(top[tok], lp) for tok, lp, top in zip(hot.tokens, hot.token_logprobs, hot.top_logprobs) if tok in top]
    assert hits and all(a == pytest.approx(b, abs=1e-12) for a, b in hits)


def test_logprobs_off_and_edge_counts(backend):
    (quiet,) = backend.generate([Request(prompt="One, two,", n=1, temperature=0.0, max_tokens=4, logprobs=False)])[0]
    assert quiet.token_logprobs is None and quiet.tokens is None and quiet.num_tokens == 4
    none, zero = backend.generate([Request(prompt="x", n=0), Request(prompt="x", n=2, max_tokens=0)])
    assert none == []
    assert [(c.text, c.num_tokens, c.finish_reason) for c in zero] == [("", 0, "length")] * 2


@pytest.mark.parametrize(
    "bad", [dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(max_tokens=-1), dict(stop=("",))]
)
def test_invalid_sampling_parameters_are_user_errors(backend, bad):
    with pytest.raises(TtevalError):
        backend.generate([Request(prompt="x", **bad)])


def test_prompt_longer_than_a_fixed_context_is_a_user_error():
    with LlamaCppBackend(n_ctx=64, max_parallel=1, n_threads=1) as b:
        room = b.n_ctx_seq  # llama.cpp pads the context (to 256 tokens)
        assert room >= 64
        with pytest.raises(TtevalError, match="does not fit"):
            b.generate([Request(prompt="word " * (room + 10), max_tokens=4)])
        # a prompt that fits but leaves little room stops at the context's end
        (c,) = b.generate([Request(prompt="word " * (room - 20), temperature=0.0, max_tokens=500)])[0]
        assert c.finish_reason == "length" and c.num_tokens + c.prompt_tokens <= room


def test_thread_count_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv("TTEVAL_LLAMA_THREADS", "1")
    with LlamaCppBackend(max_parallel=1) as b:
        assert b.n_threads == 1 and not b._auto_threads
    monkeypatch.delenv("TTEVAL_LLAMA_THREADS")
    with LlamaCppBackend(max_parallel=1) as b:  # automatic: the CPUs other processes leave idle, at least one
        assert b._auto_threads and 1 <= b.n_threads <= len(os.sched_getaffinity(0))
        assert default_threads() == len(os.sched_getaffinity(0)) == b.n_threads
    monkeypatch.setenv("TTEVAL_LLAMA_THREADS", "none")
    with pytest.raises(TtevalError, match="TTEVAL_LLAMA_THREADS"):
        LlamaCppBackend(max_parallel=1)


def test_multibyte_text_round_trips_through_token_pieces(backend):
    text = "héllo wörld — 日本語 🙂 ok"
    ids = backend.tokenize(text)
    assert b"".join(backend._vocab.piece(t) for t in ids).decode("utf-8") == text


# ------------------------------------------------------------------------------------------ prefix reuse
# a long shared question (> 64 tokens once templated: prompts decoded whole and reused suffixes take the same kernels)
STORY = (
    "A farmer keeps 17 cows, 23 goats and 41 chickens on a hill farm. Every morning each cow gives 9 litres of milk, "
    "each goat gives 2 litres, and each chicken lays one egg. Milk sells for 1.20 dollars a litre and eggs for 0.25 "
    "dollars each. On Sundays the farmer sells nothing and gives a fifth of the milk to the neighbours."
)
STORY_PROMPT_CHAT = (("user", STORY + " How much money does the farmer make in one week?"),)


def usage_delta(backend, before):
    keys = ("prompt_tokens_decoded", "prompt_tokens_reused")
    return {k: backend.usage.extra.get(k, 0) - before.get(k, 0) for k in keys}


def alone(backend, requests):
    """Each request's completions when it is sent alone, in its own generate call."""
    return [backend.generate([r])[0] for r in requests]


def assert_same(got, want):
    assert [texts(g) for g in got] == [texts(w) for w in want]
    assert [[c.token_logprobs for c in g] for g in got] == [[c.token_logprobs for c in w] for w in want]
    assert [[(c.finish_reason, c.stop_reason, c.num_tokens) for c in g] for g in got] == [
        [(c.finish_reason, c.stop_reason, c.num_tokens) for c in w] for w in want
    ]


def story(backend, *continuations):
    base = backend.apply_chat_template(STORY_PROMPT_CHAT)
    return [base + c for c in continuations]


def test_requests_sharing_a_prefix_decode_it_once(backend):
    prompts = story(backend, "", "The farmer has 17 cows.", "First, the milk:", "First, the milk: 17 cows give")
    lengths = [len(backend.tokenize(p)) for p in prompts]
    assert min(lengths) > 64
    backend.clear_cache()  # cells kept from earlier calls would serve these prompts too
    before = dict(backend.usage.extra)
    out = backend.generate([Request(prompt=p, temperature=0.0, max_tokens=4) for p in prompts])
    delta = usage_delta(backend, before)
    assert len(out) == 4 and all(len(o) == 1 for o in out)
    assert delta["prompt_tokens_reused"] > 0
    assert delta["prompt_tokens_decoded"] < sum(lengths)
    # every prompt is loaded once: each of its tokens is either decoded or reused
    assert delta["prompt_tokens_decoded"] + delta["prompt_tokens_reused"] == sum(lengths)
    # the shared question is decoded once: each later prompt decodes only what the others lack (plus at least its
    # last token, for its logits)
    assert delta["prompt_tokens_decoded"] < lengths[0] + sum(n - lengths[0] + 1 for n in lengths[1:])
    assert [c.prompt_tokens for (c,) in out] == lengths  # usage per completion is unchanged


def test_identical_prompts_decode_nothing_twice(backend):
    prompt = story(backend, "")[0]
    n = len(backend.tokenize(prompt))
    reqs = [Request(prompt=prompt, temperature=1.0, max_tokens=6, seed=s) for s in (1, 2, 3)]
    backend.clear_cache()  # cells kept from earlier calls would serve these prompts too
    before = dict(backend.usage.extra)
    out = backend.generate(reqs)
    assert usage_delta(backend, before) == {"prompt_tokens_decoded": n, "prompt_tokens_reused": 2 * n}
    assert_same(out, alone(backend, reqs))


def test_greedy_with_shared_prefixes_equals_each_request_alone(backend):
    # shares of every shape: identical, a prompt that is a prefix of another (reused up to its last token), one that
    # extends another, suffixes shorter and longer than llama.cpp's 64-token attention tile, and an unrelated one
    long_tail = " Let us work it out step by step, writing down every product and every sum." * 4
    prompts = story(
        backend, "", "The farmer has 17 cows.", "The farmer has 17 cows. They give", "", long_tail, "The"
    ) + ["The capital of France is"]
    reqs = [Request(prompt=p, temperature=0.0, max_tokens=12) for p in prompts]
    backend.clear_cache()  # cells kept from earlier calls would serve these prompts too
    before = dict(backend.usage.extra)
    together = backend.generate(reqs)
    assert usage_delta(backend, before)["prompt_tokens_reused"] > 0
    assert_same(together, alone(backend, reqs))


def test_seeded_samples_with_shared_prefixes_are_reproducible_and_batch_independent(backend, small_backend):
    prompts = story(backend, "", "First, the milk:", "First, the eggs:")
    reqs = [
        Request(prompt=p, n=3, temperature=1.0, top_p=0.95, max_tokens=10, seed=40 + i) for i, p in enumerate(prompts)
    ]
    first = backend.generate(reqs)
    assert_same(backend.generate(reqs), first)  # call to call
    assert_same(backend.generate(reqs[::-1])[::-1], first)  # order of the requests in the call
    assert_same(small_backend.generate(reqs), first)  # three slots: refills, evictions, other donors
    assert_same(alone(backend, reqs), first)  # and each request alone
    assert len({c.text for row in first for c in row}) >= 6  # the samples do differ


def test_mixed_shared_and_unshared_requests_come_back_in_order(backend, small_backend):
    base = backend.apply_chat_template(STORY_PROMPT_CHAT)
    reqs = [
        Request(prompt=base, n=2, temperature=0.8, max_tokens=12, seed=1, stop=("\n",)),
        Request(messages=OTHER, n=1, temperature=0.0, max_tokens=8),
        Request(prompt=base + "The cows give 17 * 9 = 153 litres", n=3, temperature=0.8, max_tokens=10, seed=2),
        Request(prompt="x", n=0),
        Request(prompt=base + "The cows", n=1, temperature=0.0, max_tokens=12, stop=(" litres", "milk")),
        Request(prompt=base + "The cows give 17 * 9 = 153 litres of milk a day, the goats 46.", n=2,
                temperature=0.8, max_tokens=6, seed=3),  # fmt: skip
        Request(prompt=base, n=1, temperature=0.0, max_tokens=0),
        Request(messages=CHAT, n=2, temperature=0.8, max_tokens=8, seed=4),
    ]
    want = alone(backend, reqs)
    for b in (backend, small_backend):
        got = b.generate(reqs)
        assert [len(row) for row in got] == [r.n for r in reqs]
        assert_same(got, want)
        for r, row in zip(reqs, got):
            assert all(c.prompt_tokens == len(b.tokenize(r.prompt or b.apply_chat_template(r.messages))) for c in row)
            assert all(c.num_tokens <= r.max_tokens for c in row)
            for c in row:
                if c.finish_reason == "stop" and c.stop_reason is not None:
                    assert c.stop_reason in r.stop and not any(st in c.text for st in r.stop)


def test_reused_cells_survive_their_source_finishing_and_being_retaken():
    """Two slots, samples of one token: a sample's copy of its sibling's prompt (llama.cpp defers cross-sequence
    copies to the next decode) finishes before any decode, both slots are taken again and cut back while the copy is
    still pending, and a later decode must perform it first; every output still equals its request's alone."""
    with LlamaCppBackend(max_parallel=2, n_threads=1) as b:
        base, extended = story(b, "", "The farmer has 17 cows and 23 goats.")
        reqs = [Request(prompt=base, n=3, temperature=0.0, max_tokens=1)]
        for p, m in ((extended, 1), (base, 2), (extended, 3)):
            reqs.append(Request(prompt=p, temperature=1.0, max_tokens=m, seed=m))
        reqs += [Request(prompt="The capital of France is", temperature=0.0, max_tokens=2)]
        want = alone(b, reqs)
        b.clear_cache()  # cells kept from earlier calls would serve these prompts too
        before = dict(b.usage.extra)
        assert_same(b.generate(reqs), want)
        assert usage_delta(b, before)["prompt_tokens_reused"] > 0


def test_a_donor_that_filled_its_context_is_reused_in_place():
    """One slot and a small fixed context: the first sample writes to the end of its sequence, the second request
    waits for the slot, then cuts the donor's cells back to the shared prefix and decodes only its own tail."""
    with LlamaCppBackend(n_ctx=64, max_parallel=1, n_threads=1) as b:
        room = b.n_ctx_seq
        base = "word " * (room - 40)
        reqs = [Request(prompt=base, temperature=0.0, max_tokens=500),
                Request(prompt=base + "and then", temperature=0.0, max_tokens=500)]  # fmt: skip
        want = alone(b, reqs)
        b.clear_cache()  # cells kept from earlier calls would serve these prompts too
        before = dict(b.usage.extra)
        got = b.generate(reqs)
        assert_same(got, want)
        assert all(c.finish_reason == "length" and c.num_tokens + c.prompt_tokens == room for (c,) in got)
        a, c = (b.tokenize(r.prompt) for r in reqs)
        shared = next(i for i, (x, y) in enumerate(zip(a, c)) if x != y)  # the first prompt's trailing space merges
        assert shared > len(a) - 3
        want_usage = {"prompt_tokens_decoded": len(a) + len(c) - shared, "prompt_tokens_reused": shared}
        assert usage_delta(b, before) == want_usage


# ------------------------------------------------------------------------------------------ pure sampling maths
def test_sample_token_inverse_cdf_and_top_p():
    logits = np.log(np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32))
    stats = row_stats(logits)
    assert stats.logz == pytest.approx(0.0, abs=1e-6)
    # cumulative 0.1, 0.3, 0.6, 1.0
    assert [sample_token(logits, stats, 1.0, 1.0, u) for u in (0.05, 0.25, 0.55, 0.99)] == [0, 1, 2, 3]
    assert sample_token(logits, stats, 0.0, 1.0, 0.0) == 3
    # top_p=0.5 keeps {3, 2} (0.4 + 0.3 >= 0.5), renormalised over 0.7
    assert [sample_token(logits, stats, 1.0, 0.5, u) for u in (0.5, 0.6)] == [3, 2]
    assert sample_token(logits, stats, 1.0, 0.4, 0.99) == 3
    top = top_logprob_ids(logits, stats, 2)
    assert [t for t, _ in top] == [3, 2] and top[0][1] == pytest.approx(math.log(0.4), abs=1e-6)


def test_sample_token_frequencies_follow_the_tempered_distribution():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=50).astype(np.float32)
    stats = row_stats(logits)
    temp = 0.7
    draws = [sample_token(logits, stats, temp, 1.0, u) for u in rng.random(20000)]
    p = np.exp(logits.astype(np.float64) / temp)
    p /= p.sum()
    freq = np.bincount(draws, minlength=50) / len(draws)
    assert np.abs(freq - p).max() < 0.02


def test_blockwise_inverse_cdf_equals_a_full_cumulative_sum():
    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(1, 2000))
        w = (rng.random(n) * (rng.random(n) < 0.3)).astype(np.float32)  # many zero-weight tokens
        w[rng.integers(n)] += 1.0
        u = float(rng.random())
        cdf = np.cumsum(w, dtype=np.float64)
        expected = min(int(np.searchsorted(cdf, u * cdf[-1], side="right")), n - 1)
        got = inverse_cdf(w, u)
        assert got == expected and w[got] > 0
    assert inverse_cdf(np.array([0, 0, 2, 0], dtype=np.float32), 0.0) == 2


def test_the_thread_count_changes_no_sample():
    """Automatic threads follow the machine's load, so one thread and two must give the same samples bit for bit."""
    reqs = [Request(messages=CHAT, n=3, temperature=0.8, max_tokens=12, seed=5, logprobs=True),
            Request(messages=OTHER, n=2, temperature=0.8, max_tokens=12, seed=6, logprobs=True)]  # fmt: skip
    outs = []
    for threads in (1, 2):
        with LlamaCppBackend(max_parallel=4, n_threads=threads) as b:
            outs.append([[(c.text, c.token_logprobs) for c in row] for row in b.generate(reqs)])
    assert outs[0] == outs[1]


def test_the_thread_tuner_sees_every_decode_step_and_its_switches_change_no_sample(monkeypatch):
    """Automatic threads: the tuner times each decode step; probing after every step (the count changing mid-call)
    gives the samples of one fixed thread bit for bit."""
    from tteval.backends import threads

    monkeypatch.delenv("TTEVAL_LLAMA_THREADS", raising=False)
    monkeypatch.setattr(threads, "PROBE_FIRST", 1)
    reqs = [Request(messages=CHAT, n=3, temperature=0.8, max_tokens=16, seed=5, logprobs=True)]
    with LlamaCppBackend(max_parallel=4, n_threads=1) as b:
        want = [[(c.text, c.token_logprobs) for c in row] for row in b.generate(reqs)]
    with LlamaCppBackend(max_parallel=4) as b:
        b._tuner.interval = 1  # probes after steps 3, ~6, ~11, ... (after a switch, at every step)
        got = [[(c.text, c.token_logprobs) for c in row] for row in b.generate(reqs)]
        assert b._tuner.steps == b.usage.extra["decode_steps"] >= 12  # the first token comes from the prompt
        assert b._tuner.probes >= 2 or b._tuner.cpus == 1
    assert got == want


def test_kv_cells_are_kept_between_calls_and_reused_bit_for_bit():
    """A call whose prompt continues an earlier sample (a particle's next step) reuses that sample's cells, the
    generated tokens included, and samples exactly what a backend with an empty cache samples."""
    with LlamaCppBackend(max_parallel=4, n_threads=1) as warm:
        prompt = warm.apply_chat_template(CHAT)
        n_prompt = len(warm.tokenize(prompt))
        (first,) = warm.generate([Request(prompt=prompt, temperature=0.8, max_tokens=24, seed=1)])[0]
        assert first.num_tokens == 24
        follow = Request(prompt=prompt + first.text + "\n\nSo", n=2, temperature=0.8, max_tokens=12, seed=2,
                         logprobs=True)  # fmt: skip
        before = dict(warm.usage.extra)
        got = warm.generate([follow])[0]
        reused = warm.usage.extra["prompt_tokens_reused"] - before.get("prompt_tokens_reused", 0)
        decoded = warm.usage.extra["prompt_tokens_decoded"] - before["prompt_tokens_decoded"]
        assert reused > n_prompt + 16 and decoded < 8  # the earlier sample's tokens were not decoded again
    with LlamaCppBackend(max_parallel=4, n_threads=1) as cold:
        want = cold.generate([follow])[0]
        assert cold.usage.extra.get("prompt_tokens_reused", 0) == 0
    assert [(c.text, c.token_logprobs) for c in got] == [(c.text, c.token_logprobs) for c in want]


def test_libgomp_barrier_spinning_is_bounded_unless_the_user_chose():
    """llama.cpp's OpenMP threads spin GOMP_SPINCOUNT times at each barrier; the default (300,000) made two threads
    beside busy processes ~20x slower. libgomp reads it when loaded, so it must be set before llama_cpp's import."""
    import subprocess
    import sys

    code = ("import os; from tteval.backends.llama_glue import llama_cpp; llama_cpp(); "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    from tteval.backends.llama_glue import GOMP_SPINCOUNT

    run = lambda extra: subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True,
                                       text=True, check=True).stdout.split()  # fmt: skip
    assert run({}) == [GOMP_SPINCOUNT, "None"]
    assert run({"OMP_WAIT_POLICY": "active"}) == ["None", "active"]
    assert run({"GOMP_SPINCOUNT": "5"}) == ["5", "None"]


def test_step_rows_order_sequences_and_pad_one_id_gaps():
    """A decode step's rows go in sequence order; a one-id gap gets a dummy row at its stream's next position unless
    that stream is full; wider gaps stay (a pass costs about two rows); `passes` counts runs of consecutive ids."""
    from types import SimpleNamespace

    from tteval.backends.kv_slots import step_rows

    def sample(seq, n_prompt, fed):
        return SimpleNamespace(seq_id=seq, token_ids=list(range(7, 7 + fed)),
                               prompt=SimpleNamespace(tokens=[1] * n_prompt))

    live = [sample(7, 10, 2), sample(0, 4, 1), sample(2, 6, 3), sample(4, 5, 1), sample(1, 4, 2)]
    rows, pads, passes = step_rows(live, {3: 20}.__getitem__, 64)  # 5 and 6 form a two-id gap: not padded
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4, 7] and pads == {3: 20} and passes == 2
    assert rows[0] == (0, 7, 4, True) and rows[2] == (2, 9, 8, True) and rows[3] == (3, 0, 20, False)
    rows, pads, passes = step_rows([live[1], live[2]], {1: 64}.__getitem__, 64)  # stream 1 is full: the gap stays
    assert pads == {} and [r[0] for r in rows] == [0, 2] and passes == 2


def test_a_padded_gap_leaves_its_stream_as_it_was():
    """A sample that ends between two live ones leaves a one-id gap, filled by a dummy row each step; its stream
    then holds exactly its prompt and fed token, and what the call samples is what each request samples alone."""
    with LlamaCppBackend(max_parallel=3, n_threads=1) as b:
        prompts = sorted((b.apply_chat_template([("user", q)]) for q in ("Name a fruit.", "Name a colour.",
                          "Name a city.")), key=b.tokenize)  # fmt: skip
        reqs = [Request(prompt=p, temperature=0.8, max_tokens=2 if i == 1 else 20, seed=i)
                for i, p in enumerate(prompts)]  # fmt: skip
        together = b.generate(reqs)
        assert together[1][0].num_tokens == 2 and min(together[0][0].num_tokens, together[2][0].num_tokens) > 4
        assert b.usage.extra["decode_pad_rows"] >= 2
        assert b._kv.seq_pos_max(1) == len(b.tokenize(prompts[1]))  # its prompt and one fed token: no dummy cell
    for r, (got,) in zip(reqs, together):
        with LlamaCppBackend(max_parallel=3, n_threads=1) as alone:
            (want,) = alone.generate([r])[0]
        assert (got.text, got.token_logprobs) == (want.text, want.token_logprobs)
