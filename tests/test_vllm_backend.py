"""The vLLM backend, built from vLLM's own classes (opt-in: `make test-vllm`, or `pytest -m vllm` where vllm imports).

No GPU is needed: the request mapping and the output parsing run on vLLM's real SamplingParams, RequestOutput,
CompletionOutput, Logprob and FlatLogprobs. The engine itself (vllm.LLM, which needs a GPU) is the one thing
replaced, by `RecordingEngine`: same `generate` / `get_tokenizer` signature, answers built from vLLM's types,
and a real Hugging Face tokenizer built in memory.
"""

from __future__ import annotations

import math
import sys

import pytest

from tteval.backends.base import Request
from tteval.backends.vllm import VLLMBackend, parse_request_output, to_sampling_params
from tteval.errors import TtevalError

try:
    import vllm
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast  # a vLLM dependency
    from vllm.logprobs import FlatLogprobs, Logprob
    from vllm.outputs import CompletionOutput, RequestOutput
except ImportError:
    vllm = None


def requires_vllm(test):
    """Mark a test as needing vLLM (selected by `-m vllm`), skipped where vllm does not import."""
    return pytest.mark.vllm(pytest.mark.skipif(vllm is None, reason="vLLM is opt-in: run `make test-vllm`")(test))


def test_without_vllm_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail, as on a machine without it
    with pytest.raises(TtevalError, match=r"needs vLLM: pip install 'tteval\[vllm\]' \(GPU required\)"):
        VLLMBackend("any/model")


WORDS = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "hello", "world", "yes", "no", "maybe", "2", "+", "="]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tokenizer() -> PreTrainedTokenizerFast:
    """A real HF fast tokenizer (word level) that adds BOS like Llama's and has a chat template."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  additional_special_tokens=["<|user|>", "<|assistant|>"])  # fmt: skip
    tok.chat_template = CHAT_TEMPLATE
    return tok


def sample(index: int, token_ids: list[int], chosen: list[float], alternatives: list[dict[int, float]],
           finish_reason: str = "length", stop_reason=None, flat: bool = False) -> CompletionOutput:  # fmt: skip
    """A CompletionOutput whose logprobs hold, per position, the sampled token (rank 9) and ranked alternatives."""
    positions = []
    for tid, lp, alts in zip(token_ids, chosen, alternatives):
        pos = {a: Logprob(logprob=v, rank=r, decoded_token=WORDS[a]) for r, (a, v) in enumerate(alts.items(), 1)}
        pos.setdefault(tid, Logprob(logprob=lp, rank=9, decoded_token=WORDS[tid]))
        positions.append(pos)
    logprobs = FlatLogprobs() if flat else []
    logprobs.extend(positions)
    return CompletionOutput(index=index, text=" ".join(WORDS[t] for t in token_ids), token_ids=token_ids,
                            cumulative_logprob=sum(chosen), logprobs=logprobs, finish_reason=finish_reason,
                            stop_reason=stop_reason)  # fmt: skip


def request_output(outputs: list[CompletionOutput], prompt_ids=(1, 5, 6), cached: int = 0) -> RequestOutput:
    return RequestOutput(request_id="r", prompt="hello world", prompt_token_ids=list(prompt_ids),
                         prompt_logprobs=None, outputs=outputs, finished=True, num_cached_tokens=cached)  # fmt: skip


# ------------------------------------------------------------------------------------------ parsing
@requires_vllm
@pytest.mark.parametrize("flat", [False, True], ids=["list-of-dicts", "FlatLogprobs"])
def test_parse_request_output_reads_vllms_types(flat):
    first = sample(0, [7, 8], [-0.5, -0.25], [{7: -0.5, 9: -1.5}, {9: -0.1, 10: -0.2}], "stop", "=", flat)
    second = sample(1, [5, 2], [-1.0, -2.0], [{5: -1.0, 6: -3.0}, {2: -2.0, 5: -4.0}], "stop", 2, flat)
    out = parse_request_output(request_output([second, first]), top_logprobs=2)  # sample order restored
    a, b = out
    assert (a.text, a.num_tokens, a.tokens, a.token_logprobs) == ("yes no", 2, ["yes", "no"], [-0.5, -0.25])
    assert a.logprob == pytest.approx(-0.75) and a.prompt_tokens == 3
    assert a.finish_reason == "stop" and a.stop_reason == "="
    # top-2 by rank; the sampled "no" (rank 9) at position 2 is not among them
    assert a.top_logprobs == [{"yes": -0.5, "maybe": -1.5}, {"maybe": -0.1, "2": -0.2}]
    assert b.stop_reason is None  # ended by a stop token id (EOS), not a string
    assert b.logprob == pytest.approx(-3.0)
    assert parse_request_output(request_output([first]))[0].top_logprobs is None  # not asked for


@requires_vllm
def test_parse_without_logprobs_and_with_length_finish():
    plain = CompletionOutput(index=0, text="hello world hello", token_ids=[5, 6, 5], cumulative_logprob=None,
                             logprobs=None, finish_reason="length")  # fmt: skip
    only_cumulative = CompletionOutput(index=1, text="yes", token_ids=[7], cumulative_logprob=-0.3, logprobs=None,
                                       finish_reason="stop")  # fmt: skip
    p, q = parse_request_output(request_output([plain, only_cumulative]))
    assert (p.num_tokens, p.finish_reason, p.logprob, p.tokens, p.token_logprobs) == (3, "length", None, None, None)
    assert p.mean_logprob is None
    assert q.logprob == pytest.approx(-0.3) and q.token_logprobs is None


# ------------------------------------------------------------------------------------------ sampling params
@requires_vllm
def test_to_sampling_params_maps_every_field():
    sp = to_sampling_params(Request(prompt="p", n=8, temperature=0.6, top_p=0.95, max_tokens=64, stop=("\n\n", "##"),
                                    seed=11, logprobs=True, top_logprobs=3))  # fmt: skip
    assert isinstance(sp, vllm.SamplingParams)
    assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.seed, sp.logprobs) == (8, 0.6, 0.95, 64, 11, 3)
    assert sp.stop == ["\n\n", "##"]
    chosen_only = to_sampling_params(Request(prompt="p", logprobs=True))
    assert chosen_only.logprobs == 0 and not chosen_only.stop and chosen_only.seed is None
    assert to_sampling_params(Request(prompt="p", logprobs=False)).logprobs is None
    assert to_sampling_params(Request(prompt="p", n=4, temperature=0.0)).n == 1  # vLLM refuses greedy n > 1


@requires_vllm
def test_invalid_sampling_parameters_are_one_line_errors():
    with pytest.raises(TtevalError, match="vLLM rejected the sampling parameters: .*temperature"):
        to_sampling_params(Request(prompt="p", temperature=3.0))
    with pytest.raises(TtevalError, match="top_p"):
        to_sampling_params(Request(prompt="p", top_p=0.0))
    with pytest.raises(TtevalError, match="max_tokens"):
        to_sampling_params(Request(prompt="p", max_tokens=0))
    engine = RecordingEngine()
    with pytest.raises(TtevalError, match="n must be >= 0"):
        VLLMBackend("tiny", engine=engine).generate([Request(prompt="hello", n=-1)])
    assert engine.calls == []


# ------------------------------------------------------------------------------------------ generate
class RecordingEngine:
    """Stands in for vllm.LLM (the GPU boundary): records generate() calls, answers with vLLM's own types.

    Sample i of a prompt is `max_tokens` tokens (at most 3) of a word cycle shifted by i, so samples differ."""

    def __init__(self) -> None:
        self.tokenizer = make_tokenizer()
        self.calls: list[tuple[list, list]] = []

    def get_tokenizer(self) -> PreTrainedTokenizerFast:
        return self.tokenizer

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((list(prompts), list(sampling_params)))
        outputs = []
        for p, sp in zip(prompts, sampling_params):
            ids = p["prompt_token_ids"] if isinstance(p, dict) else self.tokenizer.encode(p)
            samples = []
            for i in range(sp.n):
                toks = [5 + (i + t) % 5 for t in range(min(sp.max_tokens, 3))]
                alts = [{5 + (i + t + 1) % 5: -0.05 * (t + 1)} for t in range(len(toks))]
                samples.append(sample(i, toks, [-0.1 * (i + 1)] * len(toks), alts,
                                      "length" if len(toks) == sp.max_tokens else "stop"))  # fmt: skip
            outputs.append(request_output(samples, ids, cached=1))
        return outputs


@requires_vllm
def test_one_engine_call_for_all_requests_of_a_round():
    engine = RecordingEngine()
    backend = VLLMBackend("tiny", engine=engine)
    requests = [
        Request(prompt="hello world", n=4, temperature=0.8, max_tokens=3, seed=1),
        Request(messages=(("user", "hello"),), n=2, temperature=1.0, max_tokens=2, top_logprobs=1),
        Request(prompt="2 + 2 =", n=3, temperature=0.0, max_tokens=1),  # greedy: decoded once, repeated
        Request(prompt="maybe", n=0),
        Request(messages=(("user", "yes"), ("assistant", "no"), ("user", "maybe")), n=1, max_tokens=3),
    ]
    out = backend.generate(requests)
    assert len(engine.calls) == 1
    prompts, params = engine.calls[0]
    assert len(prompts) == 4  # the n=0 request is not sent
    assert [sp.n for sp in params] == [4, 2, 1, 1]
    # chat rendered with the tokenizer's template; its BOS is not doubled
    assert prompts[1] == {"prompt_token_ids": engine.tokenizer.encode("<|user|> hello <|assistant|>")}
    assert prompts[1]["prompt_token_ids"].count(1) == 1
    assert [len(o) for o in out] == [4, 2, 3, 0, 1]
    assert len({c.text for c in out[0]}) == 4
    assert len({c.text for c in out[2]}) == 1 and out[2][0] is not out[2][1]
    assert all(c.top_logprobs is not None and len(c.top_logprobs) == c.num_tokens for c in out[1])
    for c in out[0] + out[1]:
        assert c.num_tokens == len(c.token_logprobs) and math.isfinite(c.logprob)
        assert c.logprob == pytest.approx(sum(c.token_logprobs))
    assert out[0][0].finish_reason == "length" and out[0][0].prompt_tokens == 3  # <s> hello world
    assert backend.usage.calls == 1 and backend.usage.extra == {"engine_calls": 1, "cached_prompt_tokens": 4}
    assert backend.usage.completion_tokens == 4 * 3 + 2 * 2 + 1 + 3  # the greedy copies cost nothing
    backend.generate(requests[:1])
    assert len(engine.calls) == 2 and backend.usage.calls == 2


@requires_vllm
def test_raw_prompts_keep_a_single_bos():
    engine = RecordingEngine()
    backend = VLLMBackend("tiny", engine=engine)
    rendered = backend.apply_chat_template((("user", "hello"),))
    assert rendered == "<s><|user|> hello <|assistant|>"
    assert backend.engine_prompt(rendered) == {"prompt_token_ids": [1, 3, 5, 4]}
    assert backend.engine_prompt("hello world") == "hello world"  # the engine adds BOS itself


@requires_vllm
def test_chat_template_errors_are_one_line():
    backend = VLLMBackend("tiny", engine=RecordingEngine())
    with pytest.raises(TtevalError, match="chat template of tiny rejected the messages: no system role"):
        backend.generate([Request(messages=(("system", "s"), ("user", "hello")))])


@requires_vllm
def test_no_gpu_is_one_clear_error():
    from vllm.platforms import current_platform

    if not current_platform.is_unspecified():
        pytest.skip("a GPU platform is present: the engine would start")
    with pytest.raises(TtevalError, match="vLLM found no GPU"):
        VLLMBackend("tiny")
