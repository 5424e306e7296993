"""The vLLM backend, built from vLLM's own classes (opt-in: `make test-vllm`, or `pytest -m vllm` where vllm imports).

No GPU is needed: the request mapping and the output parsing run on vLLM's real SamplingParams, RequestOutput,
CompletionOutput, Logprob and FlatLogprobs. The engine itself (vllm.LLM, which needs a GPU) is the one thing
replaced, by `RecordingEngine`: same `generate` / `get_tokenizer` / `model_config` / `llm_engine.engine_core`
surface, a real ModelConfig, vLLM's own InputProcessor check on every prompt it is sent (so it raises for the
whole call, as vLLM does, if tteval sends a prompt vLLM refuses), answers built from vLLM's types, and a real
Hugging Face tokenizer built in memory.
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
from types import SimpleNamespace

import pytest

from tteval.backends.base import FAILED_FINISH_REASONS, Request
from tteval.backends.vllm import VLLMBackend, finish_reason, parse_request_output, to_sampling_params
from tteval.backends.vllm_engine import prompt_failure
from tteval.errors import TtevalError

try:
    import vllm
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast  # a vLLM dependency
    from vllm.logprobs import FlatLogprobs, Logprob
    from vllm.exceptions import VLLMValidationError
    from vllm.outputs import CompletionOutput, RequestOutput

    from vllm_configs import model_config, refuses
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


def make_tokenizer(bos: bool = True) -> PreTrainedTokenizerFast:
    """A real HF fast tokenizer (word level) that adds BOS like Llama's (or, bos=False, none, like Qwen's) and has
    a chat template."""
    vocab = {w: i for i, w in enumerate(WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>" if bos else None, eos_token="</s>",
                                  unk_token="<unk>", additional_special_tokens=["<|user|>", "<|assistant|>"])  # fmt: skip
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
class EngineCore:
    """Stands in for `llm.llm_engine.engine_core` (the engine-core process client): counts shutdowns."""

    def __init__(self) -> None:
        self.shutdowns = 0

    def shutdown(self, timeout=None) -> None:
        self.shutdowns += 1


class RecordingEngine:
    """Stands in for vllm.LLM (the GPU boundary): records generate() calls, answers with vLLM's own types.

    With a ModelConfig, every prompt goes through vLLM's own length check first, and one refused prompt fails the
    whole call, as in LLM.generate. Sample i of a prompt is `max_tokens` tokens (at most 3) of a word cycle shifted
    by i, so samples differ."""

    def __init__(self, config=None, tokenizer=None) -> None:
        self.tokenizer = tokenizer or make_tokenizer()
        self.model_config = config
        self.llm_engine = SimpleNamespace(engine_core=EngineCore())
        self.calls: list[tuple[list, list]] = []

    def get_tokenizer(self) -> PreTrainedTokenizerFast:
        return self.tokenizer

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((list(prompts), list(sampling_params)))
        for p in prompts:
            ids = p["prompt_token_ids"] if isinstance(p, dict) else self.tokenizer.encode(p)
            refused = refuses(self.model_config, len(ids)) if self.model_config is not None else None
            if refused:
                raise VLLMValidationError(refused)  # vLLM aborts every request of the call
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
    assert backend.usage.calls == 1
    assert backend.usage.extra == {"engine_calls": 1, "cached_prompt_tokens": 4, "failed_prompts": 0}
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
    assert backend.engine_prompt("hello world") == {"prompt_token_ids": [1, 5, 6]}  # BOS added, as vLLM would


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


# ------------------------------------------------------------------------------------------ prompts vLLM refuses
MAX_LEN = 8


@pytest.fixture(scope="module")
def gen_config(tmp_path_factory):
    """vLLM's ModelConfig of a tiny generation model started with max_model_len = MAX_LEN."""
    return model_config(tmp_path_factory.mktemp("tiny-llama"), "generate", MAX_LEN)


@requires_vllm
@pytest.mark.parametrize("runner", ["generate", "pooling"])
def test_prompt_failure_is_vllms_own_length_rule(tmp_path, runner):
    """tteval's pre-check refuses exactly the prompt lengths vLLM's InputProcessor refuses (empty; longer than
    max_model_len; for generation, equal to it: no room for an output token)."""
    for max_len in (1, 2, MAX_LEN):
        config = model_config(tmp_path / f"{runner}-{max_len}", runner, max_len)
        for n in range(max_len + 3):
            ours = prompt_failure(n, max_len, pooling=runner == "pooling")
            theirs = refuses(config, n)
            assert (ours is None) == (theirs is None), (runner, max_len, n, theirs)
            assert ours in (None, "empty_prompt" if n == 0 else "length_prompt")


@requires_vllm
def test_prompts_vllm_would_refuse_fail_alone_and_the_rest_of_the_batch_goes_on(gen_config):
    """Before: one over-long prompt made LLM.generate raise for the whole batch (vLLM aborts every request added)
    and the run stopped on a raw vLLM error. Now it is not sent; its n candidates come back failed."""
    engine = RecordingEngine(gen_config)
    backend = VLLMBackend("tiny", engine=engine)
    assert backend.max_model_len == MAX_LEN
    requests = [
        Request(prompt="hello world", n=2, max_tokens=3, seed=1),  # 3 tokens with BOS
        Request(prompt="hello " * 7, n=3, max_tokens=3),  # 8 tokens = max_model_len: no room to generate
        Request(messages=(("user", "yes no maybe yes no maybe"),), n=2, max_tokens=3),  # 9 tokens rendered
        Request(messages=(("user", "hello"),), n=1, max_tokens=3),  # 4 tokens rendered
        Request(prompt="world " * 50, n=1, max_tokens=3),
    ]
    out = backend.generate(requests)
    (prompts, params), = engine.calls  # one engine call, with the two prompts vLLM takes (it checked them itself)
    assert [len(p["prompt_token_ids"]) for p in prompts] == [3, 4] and [sp.n for sp in params] == [2, 1]
    assert [len(o) for o in out] == [2, 3, 2, 1, 1]
    for i, tokens in ((1, 8), (2, 9), (4, 51)):
        assert all((c.finish_reason, c.text, c.num_tokens, c.prompt_tokens, c.logprob) == ("length_prompt", "", 0, tokens, None)
                   for c in out[i])  # fmt: skip
    assert all(c.finish_reason not in FAILED_FINISH_REASONS and c.num_tokens > 0 for c in out[0] + out[3])
    assert backend.usage.extra["failed_prompts"] == 3
    assert backend.usage.prompt_tokens == 3 + 4  # only what the engine read
    backend.generate([requests[1]])
    assert len(engine.calls) == 1  # nothing left to send: no engine call at all
    with pytest.raises(VLLMValidationError, match="longer than the maximum model length of 8"):
        engine.generate([{"prompt_token_ids": [1] * 9}], params[:1])  # the stand-in refuses as vLLM does


@requires_vllm
def test_an_empty_prompt_fails_alone(gen_config):
    engine = RecordingEngine(gen_config, tokenizer=make_tokenizer(bos=False))
    out = VLLMBackend("tiny", engine=engine).generate([Request(prompt="", n=2), Request(prompt="hello", n=1, max_tokens=2)])
    assert [c.finish_reason for c in out[0]] == ["empty_prompt", "empty_prompt"]
    assert out[1][0].finish_reason == "length" and len(engine.calls) == 1


@requires_vllm
def test_vllms_finish_reasons_are_kept_and_failures_are_marked():
    """Before: "abort", "error" and "repetition" were recorded as "stop", so a failed request looked normal."""
    for reason, kept in (("stop", "stop"), ("length", "length"), ("repetition", "repetition"), ("abort", "abort"),
                         ("error", "error"), (None, "error"), ("something-new", "error")):  # fmt: skip
        assert finish_reason(reason) == kept
        (c,) = parse_request_output(request_output([sample(0, [5], [-0.1], [{}], finish_reason=reason)]))
        assert c.finish_reason == kept
    assert {"abort", "error"} <= FAILED_FINISH_REASONS and "repetition" not in FAILED_FINISH_REASONS


class ScriptedEngine(RecordingEngine):
    """Answers sample j of every prompt with SCRIPT[j]: (text, vLLM finish reason)."""

    SCRIPT = [("so \\boxed{2}", "stop"), ("so \\boxed{2}", "abort"), ("so \\boxed{2}", "error"), ("so \\boxed{3}", "repetition")]

    def generate(self, prompts, sampling_params, use_tqdm=True):
        self.calls.append((list(prompts), list(sampling_params)))
        outputs = []
        for p, sp in zip(prompts, sampling_params):
            samples = [CompletionOutput(index=j, text=text, token_ids=[5, 6], cumulative_logprob=-1.0, logprobs=None,
                                        finish_reason=reason) for j, (text, reason) in enumerate(self.SCRIPT[: sp.n])]  # fmt: skip
            outputs.append(request_output(samples, p["prompt_token_ids"]))
        return outputs


@requires_vllm
def test_failed_candidates_are_graded_wrong_counted_in_metrics_and_reported(gen_config, tmp_path):
    """Through the real worker path (grading, records, metrics): an aborted or errored candidate is incorrect even
    when its text holds the right answer, and metrics.json counts every failed candidate with its reason."""
    from tteval.graders.grading import Grader
    from tteval.metrics import compute_metrics
    from tteval.config import RunConfig
    from tteval.engine_host import Chunk, chunk_records
    from tteval.runner import _warn_failures
    from tteval.tasks import load_problems, load_task

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_text("name: t\nkind: math\nsource: {local: d.jsonl}\nprompt: {user: '{q}'}\nmath: {gold: '{a}'}\n")
    (tasks / "d.jsonl").write_text('{"q": "1 + 1 =", "a": "2"}\n{"q": "' + "yes " * 20 + '", "a": "2"}\n')
    task = load_task("t", tasks)
    problems = load_problems(task)
    config = RunConfig.of(task="t", tasks_dir=str(tasks), backend="vllm", n=4, temperature=0.7)
    backend = VLLMBackend("tiny", engine=ScriptedEngine(model_config(tmp_path / "m", "generate", 16)))
    grader = Grader(task, workers=1)
    try:
        records = chunk_records(config, task, Chunk(tuple(problems), (0, 0)), backend, grader, None, {"generation_s": 0.0,
                                                                                                  "grading_s": 0.0})  # fmt: skip
    finally:
        grader.close()
    short = [r for r in records if r["task_id"] == "t/0"]
    assert [(r["finish_reason"], r["correct"]) for r in short] == [("stop", True), ("abort", False), ("error", False),
                                                                    ("repetition", False)]  # fmt: skip
    assert [r["finish_reason"] for r in records if r["task_id"] == "t/1"] == ["length_prompt"] * 4
    metrics = compute_metrics(records, task="t", n=4)
    assert metrics["failed"] == {"samples": 6, "samples_by_reason": {"abort": 1, "error": 1, "length_prompt": 4},
                                 "scores": 0, "scores_by_reason": {}}  # fmt: skip
    assert metrics["summary"]["pass@1"] == pytest.approx(1 / 8)
    said = []
    _warn_failures(metrics, len(records), said.append)
    assert said == ["6 of 8 candidates failed (abort: 1, error: 1, length_prompt: 4); they count as incorrect"]


# ------------------------------------------------------------------------------------------ shutting down
@requires_vllm
def test_close_shuts_the_engine_core_down_once_and_says_so():
    engine = RecordingEngine()
    backend = VLLMBackend("tiny", engine=engine)
    line = backend.close()
    assert engine.llm_engine.engine_core.shutdowns == 1 and backend.engine is None
    assert line == "vLLM engine of tiny shut down; GPU memory not measured (no NVML)"  # no GPU here
    assert backend.close() is None and engine.llm_engine.engine_core.shutdowns == 1


def test_release_report_says_whether_gpu_memory_came_back(monkeypatch):
    """NVML is the GPU boundary: its readings are scripted; the report's rule is what is tested."""
    from tteval.backends import vllm_engine

    gib = vllm_engine.GIB
    readings = iter([30 * gib, 20 * gib + 1])
    monkeypatch.setattr(vllm_engine, "gpu_memory_used", lambda: next(readings))
    line = vllm_engine.release_report("vLLM engine of m", before=20 * gib, wait_s=5)
    assert line == "vLLM engine of m shut down; GPU memory back (20.0 GiB in use, 20.0 GiB before it started)"
    monkeypatch.setattr(vllm_engine, "gpu_memory_used", lambda: 26 * gib)
    line = vllm_engine.release_report("vLLM engine of m", before=20 * gib, problem="timeout", wait_s=0)
    assert line == ("warning: vLLM engine of m shut down (shutdown said: timeout), but 6.0 GiB of GPU memory did not "
                    "come back (26.0 GiB in use, 20.0 GiB before it started)")  # fmt: skip


@requires_vllm
def test_the_engine_starts_with_an_auto_fitted_context_unless_given(monkeypatch):
    seen = []

    def recording_llm(**kwargs):
        seen.append(kwargs)
        raise RuntimeError("stop here\ndetail")

    monkeypatch.setattr("tteval.backends.vllm._no_accelerator", lambda: False)
    monkeypatch.setattr(vllm, "LLM", recording_llm)
    for given, passed in ((None, -1), (4096, 4096)):
        with pytest.raises(TtevalError, match="^vLLM could not start tiny: stop here$"):
            VLLMBackend("tiny", max_model_len=given)
        assert seen[-1]["max_model_len"] == passed
    assert set(seen[-1]) <= {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    monkeypatch.setenv("TTEVAL_VLLM_ARGS", '{"enforce_eager": true, "max_model_len": 2048, "gpu_memory_utilization": 0.3}')
    with pytest.raises(TtevalError, match="^vLLM could not start tiny: stop here$"):
        VLLMBackend("tiny")
    assert (seen[-1]["enforce_eager"], seen[-1]["max_model_len"], seen[-1]["gpu_memory_utilization"]) == (True, 2048, 0.3)
    for bad, message in (('{"enforce_eagre": true}', "TTEVAL_VLLM_ARGS: not vLLM engine arguments: enforce_eagre"),
                         ("[1]", "TTEVAL_VLLM_ARGS must be a JSON object of vLLM engine arguments"),
                         ("{", "TTEVAL_VLLM_ARGS must be a JSON object of vLLM engine arguments: Expecting")):  # fmt: skip
        monkeypatch.setenv("TTEVAL_VLLM_ARGS", bad)
        with pytest.raises(TtevalError, match=f"^{re.escape(message)}"):
            VLLMBackend("tiny")
