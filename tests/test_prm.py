"""The scorer protocol's step helpers and the vLLM process reward model (PRM) scorer.

The first tests need no vLLM. The `vllm`-marked ones (`make test-vllm`) run on vLLM's real PoolingParams,
PoolerConfig validation, PoolingRequestOutput / PoolingOutput and torch tensors, with a real in-memory Hugging Face
tokenizer whose chat template is Qwen's shape; only the engine (vllm.LLM, which needs a GPU) is replaced, by
`RecordingEngine`, which scores each step tag by the word before it. It carries a real ModelConfig of a tiny
Qwen2ForProcessRewardModel and runs vLLM's own prompt-length check on every prompt it is sent.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from types import SimpleNamespace

import pytest

from tteval.errors import TtevalError
from tteval.verifiers import genrm, reward
from tteval.verifiers.prm import SYSTEM, VLLMPRMScorer, make_prm_scorer, prm_prompt, prm_steps, step_probabilities
from tteval.verifiers.reward import ScoreResult, aggregate_steps, split_steps

try:
    import torch
    import vllm
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast  # a vLLM dependency
    from vllm.config import PoolerConfig
    from vllm.exceptions import VLLMValidationError
    from vllm.outputs import PoolingOutput, PoolingRequestOutput, RequestError

    from vllm_configs import model_config, refuses
except ImportError:
    vllm = None


def requires_vllm(test):
    """Mark a test as needing vLLM (selected by `-m vllm`), skipped where vllm does not import."""
    return pytest.mark.vllm(pytest.mark.skipif(vllm is None, reason="vLLM is opt-in: run `make test-vllm`")(test))


# ------------------------------------------------------------------------------------------ aggregation
@pytest.mark.parametrize(("how", "expected"), [("last", 0.75), ("min", 0.25), ("prod", 0.09375), ("mean", 0.5)])
def test_aggregation_modes_on_hand_built_step_scores(how, expected):
    assert aggregate_steps([0.5, 0.25, 0.75], how) == expected  # exact in binary floating point


def test_aggregation_depends_on_step_order_only_for_last():
    assert aggregate_steps([0.75, 0.25, 0.5], "last") == 0.5
    assert [aggregate_steps([0.75, 0.25, 0.5], h) for h in ("min", "prod", "mean")] == [0.25, 0.09375, 0.5]
    assert [aggregate_steps([0.6], h) for h in reward.AGGREGATIONS] == [0.6] * 4
    assert aggregate_steps([0.5, 0.5]) == 0.5  # "last" by default
    assert aggregate_steps([1, 0]) == 0.0 and isinstance(aggregate_steps([1, 0], "mean"), float)


def test_unknown_aggregation_and_empty_step_list_are_clear_errors():
    with pytest.raises(TtevalError, match="unknown step aggregation 'median': use one of last, min, prod, mean"):
        aggregate_steps([0.5], "median")
    with pytest.raises(TtevalError, match="unknown step aggregation 'model'"):  # the PRM scorer's mode, not a fold
        aggregate_steps([0.5], "model")
    for how in reward.AGGREGATIONS:
        with pytest.raises(TtevalError, match="no step scores to aggregate"):
            aggregate_steps([], how)


# ------------------------------------------------------------------------------------------ steps
@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("a\n\nb", ["a", "b"]),
        ("s1\n\ns2\n\n", ["s1", "s2"]),  # particle filtering's partial answers end with the step separator
        ("one\ntwo\n\nthree", ["one\ntwo", "three"]),  # a single newline stays inside a step
        ("a\n \n\t\nb", ["a", "b"]),  # whitespace-only lines are blank lines
        ("\n\n\na\n\n\n\nb\n\n\n", ["a", "b"]),  # runs of blank lines make no empty steps
        ("  a  \n\n\tb ", ["a", "b"]),  # each step is stripped
        ("a\r\n\r\nb", ["a", "b"]),
        ("just one step", ["just one step"]),
        ("", []),
        ("  \n\n \n", []),
    ],
)
def test_split_steps(text, steps):
    assert split_steps(text) == steps


def test_prm_steps_for_each_aggregation():
    assert prm_steps("a\n\nb\nc\n\n", "min") == ["a", "b\nc"]
    assert prm_steps("a\n\nb\nc\n\n", "model") == ["a\nb\nc"]  # the whole answer, newline runs collapsed
    assert prm_steps("", "last") == [""] and prm_steps(" \n\n ", "model") == [""]  # empty: one empty step
    assert prm_steps("x<extra_0>y\n\nz", "last") == ["xy", "z"]  # a step tag written by the policy is dropped


def test_score_result_lives_in_scorer_and_genrm_still_exports_it():
    assert genrm.ScoreResult is ScoreResult
    r = ScoreResult(0.5)
    assert (r.chain_scores, r.tokens, r.step_scores) == ([], 0, None)


# ------------------------------------------------------------------------------------------ errors without vLLM
def test_without_vllm_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail, as on a machine without it
    with pytest.raises(TtevalError, match=r"prm verifier needs vLLM: pip install 'tteval\[vllm\]' \(GPU required\)"):
        VLLMPRMScorer("Qwen/Qwen2.5-Math-PRM-7B")
    with pytest.raises(TtevalError, match=r"pip install 'tteval\[vllm\]'"):
        make_prm_scorer("Qwen/Qwen2.5-Math-PRM-7B", "model")


def test_unknown_prm_aggregation_is_refused_before_any_engine(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(TtevalError, match="unknown PRM aggregation 'median': use one of last, min, prod, mean, model"):
        VLLMPRMScorer("any/prm", "median")


# ------------------------------------------------------------------------------------------ vLLM: tokenizer
WORDS = ["<unk>", "<|im_start|>", "<|im_end|>", "<extra_0>", "system", "user", "assistant",
         "good", "bad", "ok", "1", "+", "=", "2"]  # fmt: skip
TAG = WORDS.index("<extra_0>")
QWEN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'tool' %}{{ raise_exception('no tool role') }}{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
REWARD = {"good": 0.9, "bad": 0.2}  # RecordingEngine's reward for a step whose last word is this; else 0.6


def make_tokenizer(with_tag: bool = True) -> PreTrainedTokenizerFast:
    """A real HF fast tokenizer (word level, no BOS) with Qwen's chat-template shape and the step tag token."""
    words = WORDS if with_tag else [w for w in WORDS if w != "<extra_0>"]
    vocab = {w: i for i, w in enumerate(words)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    specials = ["<|im_start|>", "<|im_end|>"] + (["<extra_0>"] if with_tag else [])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|im_end|>", unk_token="<unk>",
                                  additional_special_tokens=specials)  # fmt: skip
    tok.chat_template = QWEN_TEMPLATE
    return tok


@requires_vllm
def test_prm_prompt_is_qwens_format_with_one_tag_token_per_step():
    tok = make_tokenizer()
    text = prm_prompt(tok, "1 + 1 =", ["ok 1", "2"])
    assert text == (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n1 + 1 =<|im_end|>\n"
        "<|im_start|>assistant\nok 1<extra_0>2<extra_0><|im_end|>\n"
    )
    assert SYSTEM == "Please reason step by step, and put your final answer within \\boxed{}."
    ids = tok.encode(text, add_special_tokens=False)
    assert ids.count(TAG) == 2 and ids[ids.index(TAG) - 1] == WORDS.index("1")  # the tag splits off as one token
    bare = prm_prompt(tok, "q", [""], system=None)
    assert bare == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<extra_0><|im_end|>\n"


@requires_vllm
def test_chat_template_errors_are_one_line():
    class Refusing:
        def apply_chat_template(self, *args, **kwargs):
            raise ValueError("template says no\nand more detail")

    with pytest.raises(TtevalError, match=r"PRM's chat template rejected the messages: template says no$"):
        prm_prompt(Refusing(), "q", ["s"])


# ------------------------------------------------------------------------------------------ vLLM: outputs
def pooling_output(data, ids=(1, 2, 3), error=None) -> PoolingRequestOutput:
    return PoolingRequestOutput(request_id="0", outputs=PoolingOutput(data=data), prompt_token_ids=list(ids),
                                num_cached_tokens=0, finished=True, error=error)  # fmt: skip


@requires_vllm
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_step_probabilities_read_the_positive_class_of_each_step(dtype):
    data = torch.tensor([[0.25, 0.75], [0.875, 0.125], [0.5, 0.5]], dtype=getattr(torch, dtype))
    assert step_probabilities(pooling_output(data)) == [0.75, 0.125, 0.5]
    softmaxed = torch.softmax(torch.tensor([[0.0, math.log(3.0)]]), dim=-1)  # what vLLM's activation makes
    assert step_probabilities(pooling_output(softmaxed)) == pytest.approx([0.75])
    assert step_probabilities(pooling_output(torch.empty(0, 2))) == []  # a prompt without step tags


@requires_vllm
def test_step_probabilities_refuse_logits_wrong_shapes_and_failed_requests():
    with pytest.raises(TtevalError, match="not class probabilities"):
        step_probabilities(pooling_output(torch.tensor([[-1.5, 2.25]])))
    with pytest.raises(TtevalError, match="not class probabilities"):
        step_probabilities(pooling_output(torch.tensor([[0.5, 0.25]])))  # in [0, 1] but not summing to 1
    with pytest.raises(TtevalError, match=r"shape \[4\], not \[steps, 2\]"):
        step_probabilities(pooling_output(torch.tensor([0.1, 0.2, 0.3, 0.4])))  # all tokens, one label
    with pytest.raises(TtevalError, match=r"shape \[2, 1\]"):
        step_probabilities(pooling_output(torch.tensor([[0.1], [0.9]])))
    failed = pooling_output(torch.empty(0, 2), error=RequestError(code="internal", message="worker died"))
    with pytest.raises(TtevalError, match="vLLM failed to score a prompt: worker died"):
        step_probabilities(failed)


# ------------------------------------------------------------------------------------------ vLLM: scoring
class RecordingEngine:
    """Stands in for vllm.LLM with a STEP-pooling PRM: records encode() calls, answers with vLLM's own types.

    Each request's PoolingParams are validated by vLLM's own `verify` against a real PoolerConfig, as the engine
    does; the reward at each step tag is REWARD of the word just before it (0.6 otherwise), through a softmax."""

    def __init__(self, tokenizer=None, pooling_type: str = "STEP", drop_rows: int = 0, drop_outputs: int = 0,
                 max_len: int = 256, errors: tuple[int, ...] = ()):  # fmt: skip
        self.tokenizer = tokenizer or make_tokenizer()
        self.model_config = prm_config(max_len)
        self.model_config.pooler_config = PoolerConfig(pooling_type=pooling_type, step_tag_id=TAG)
        self.llm_engine = SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda: self.calls.append("shutdown")))
        self.drop_rows, self.drop_outputs, self.errors = drop_rows, drop_outputs, errors
        self.calls: list = []

    def get_tokenizer(self) -> PreTrainedTokenizerFast:
        return self.tokenizer

    def encode(self, prompts, pooling_params=None, *, use_tqdm=True, pooling_task=None, **kwargs):
        self.calls.append((list(prompts), pooling_params, pooling_task))
        for prompt in prompts:
            refused = refuses(self.model_config, len(prompt["prompt_token_ids"]))
            if refused:
                raise VLLMValidationError(refused)  # vLLM aborts every request of the call
        outputs = []
        for i, prompt in enumerate(prompts):
            if i in self.errors:
                error = RequestError(code="internal", message="KV load failed")
                outputs.append(PoolingRequestOutput(str(i), PoolingOutput(data=torch.empty(0, 2)), list(prompt["prompt_token_ids"]),
                                                    0, finished=True, error=error))  # fmt: skip
                continue
            params = pooling_params.clone()
            params.task = pooling_task
            params.verify(self.model_config)  # vLLM's own checks and defaults
            ids = prompt["prompt_token_ids"]
            tag = params.step_tag_id
            rewards = [REWARD.get(WORDS[ids[j - 1]], 0.6) for j, t in enumerate(ids) if t == tag]
            logits = torch.tensor([[0.0, math.log(p / (1 - p))] for p in rewards]).reshape(-1, 2)
            data = torch.softmax(logits, dim=-1) if params.use_activation else logits
            data = data[: len(data) - self.drop_rows] if i == len(prompts) - 1 else data
            outputs.append(PoolingRequestOutput(str(i), PoolingOutput(data=data), list(ids), 0, finished=True))
        return outputs[: len(outputs) - self.drop_outputs]


_PRM_CONFIGS: dict[int, object] = {}


def prm_config(max_len: int):
    """vLLM's ModelConfig of a tiny Qwen2ForProcessRewardModel started with max_model_len = max_len (cached)."""
    import tempfile
    from pathlib import Path

    if max_len not in _PRM_CONFIGS:
        _PRM_CONFIGS[max_len] = model_config(Path(tempfile.mkdtemp(prefix="tiny-prm-")), "pooling", max_len)
    return _PRM_CONFIGS[max_len]


ITEMS = [("1 + 1 =", "good\n\nbad\n\ngood"), ("2 + 2 =", "bad\n"), ("1 =", ""), ("2 =", "ok good\n\ngood\n\n")]
STEPS = [[0.9, 0.2, 0.9], [0.2], [0.6], [0.9, 0.9]]  # the empty answer's tag follows "assistant": 0.6


@requires_vllm
@pytest.mark.parametrize(
    ("how", "expected"),
    [("last", [0.9, 0.2, 0.6, 0.9]), ("min", [0.2, 0.2, 0.6, 0.9]), ("prod", [0.162, 0.2, 0.6, 0.81]),
     ("mean", [2 / 3, 0.2, 0.6, 0.9])],
)  # fmt: skip
def test_one_engine_call_scores_a_batch_in_item_order(how, expected):
    engine = RecordingEngine()
    prm = VLLMPRMScorer("tiny-prm", how, engine=engine)
    results = prm.score(ITEMS)
    assert len(engine.calls) == 1 and prm.engine_calls == 1
    prompts, params, task = engine.calls[0]
    assert task == "token_classify" and isinstance(params, vllm.PoolingParams)
    assert params.use_activation is True and params.step_tag_id == TAG
    assert [p["prompt_token_ids"].count(TAG) for p in prompts] == [3, 1, 1, 2]
    tok = engine.tokenizer
    assert tok.decode(prompts[0]["prompt_token_ids"]).count("good") == 2
    assert [r.score for r in results] == pytest.approx(expected, abs=1e-6)
    assert [r.step_scores for r in results] == [pytest.approx(s, abs=1e-6) for s in STEPS]
    assert [r.tokens for r in results] == [len(p["prompt_token_ids"]) for p in prompts]
    assert all(isinstance(r, ScoreResult) and r.chain_scores == [] for r in results)
    reversed_results = prm.score(ITEMS[::-1])
    assert [r.score for r in reversed_results] == pytest.approx(expected[::-1], abs=1e-6)
    assert len(engine.calls) == 2


@requires_vllm
def test_model_aggregation_scores_the_whole_answer_as_one_step():
    engine = RecordingEngine()
    (r,) = VLLMPRMScorer("tiny-prm", "model", engine=engine).score([("1 + 1 =", "good\n\nok\n\nbad\n\n")])
    (prompt,), _, _ = engine.calls[0]
    ids = prompt["prompt_token_ids"]
    tag_at = ids.index(TAG)
    assert ids.count(TAG) == 1 and ids[tag_at - 3 : tag_at] == [WORDS.index(w) for w in ("good", "ok", "bad")]
    assert r.step_scores == pytest.approx([0.2]) and r.score == pytest.approx(0.2)


@requires_vllm
def test_empty_batch_makes_no_engine_call():
    engine = RecordingEngine()
    assert VLLMPRMScorer("tiny-prm", engine=engine).score([]) == [] and engine.calls == []


@requires_vllm
def test_mismatched_steps_or_outputs_are_clear_errors():
    with pytest.raises(TtevalError, match="item 1: the PRM returned 1 step rewards for 2 steps"):
        VLLMPRMScorer("tiny-prm", engine=RecordingEngine(drop_rows=1)).score([("q", "good"), ("q", "good\n\nbad")])
    with pytest.raises(TtevalError, match="vLLM returned 1 PRM outputs for 2 prompts"):
        VLLMPRMScorer("tiny-prm", engine=RecordingEngine(drop_outputs=1)).score([("q", "good"), ("q", "bad")])
    engine = RecordingEngine()
    with pytest.raises(TtevalError, match="item 0: the PRM prompt has 2 step tags for 1 steps"):
        VLLMPRMScorer("tiny-prm", engine=engine).score([("what is <extra_0> ?", "good")])
    assert engine.calls == []  # refused before the engine


@requires_vllm
def test_a_tokenizer_without_the_step_tag_is_refused():
    engine = RecordingEngine(tokenizer=make_tokenizer(with_tag=False))
    with pytest.raises(TtevalError, match="tiny-prm has no single token for the step tag '<extra_0>'"):
        VLLMPRMScorer("tiny-prm", engine=engine).score([("q", "good")])


@requires_vllm
def test_a_pooler_without_step_pooling_is_a_one_line_error():
    engine = RecordingEngine(pooling_type="ALL")  # vLLM itself refuses step_tag_id for ALL pooling
    with pytest.raises(TtevalError, match=r"vLLM could not score 1 prompts with tiny-prm: .*step_tag_id") as err:
        VLLMPRMScorer("tiny-prm", engine=engine).score([("q", "good")])
    assert "\n" not in str(err.value)


@requires_vllm
def test_no_gpu_is_one_clear_error():
    from vllm.platforms import current_platform

    if not current_platform.is_unspecified():
        pytest.skip("a GPU platform is present: the engine would start")
    with pytest.raises(TtevalError, match="vLLM found no GPU on this machine; the prm verifier needs one"):
        make_prm_scorer("Qwen/Qwen2.5-Math-PRM-7B", "model")


@requires_vllm
def test_engine_start_failure_is_one_line_and_the_factory_passes_vllms_own_arguments(monkeypatch):
    seen = {}

    def failing_llm(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("No CUDA GPUs are available\nTraceback-ish detail")

    monkeypatch.setattr("tteval.verifiers.prm._no_accelerator", lambda: False)
    monkeypatch.setattr(vllm, "LLM", failing_llm)
    with pytest.raises(TtevalError, match=r"^vLLM could not start the PRM some/prm: No CUDA GPUs are available$"):
        make_prm_scorer("some/prm", "min", gpu_memory_utilization=0.3, max_model_len=4096)
    assert seen == {"model": "some/prm", "runner": "pooling", "gpu_memory_utilization": 0.3, "max_model_len": 4096}
    # vllm.LLM hands its arguments to EngineArgs: every one passed must be a real engine argument
    assert set(seen) <= {f.name for f in dataclasses.fields(vllm.EngineArgs)}
    with pytest.raises(TtevalError, match="could not start the PRM some/prm"):
        make_prm_scorer("some/prm", "min")
    assert seen["max_model_len"] == -1  # by default: the longest context that fits the PRM's share of the GPU


# ------------------------------------------------------------------------------------------ vLLM: inputs it refuses
@requires_vllm
def test_items_longer_than_the_prms_context_fail_alone_with_reward_zero():
    """Before: one over-long pooling input (particle-filter candidates reach 40 x 128 tokens) made LLM.encode raise
    for the whole batch. Now it is not sent: it comes back failed ("length_prompt", reward 0); the rest are scored."""
    engine = RecordingEngine(max_len=40)
    prm = VLLMPRMScorer("tiny-prm", "last", engine=engine)
    long = "\n\n".join(["ok good"] * 12)
    results = prm.score([("1 + 1 =", "good"), ("1 + 1 =", long), ("2 =", "bad")])
    (prompts, _, _), = engine.calls  # vLLM's own check passed every prompt sent
    assert len(prompts) == 2 and all(len(p["prompt_token_ids"]) <= 40 for p in prompts)
    assert [r.failed for r in results] == [None, "length_prompt", None]
    assert [r.score for r in results] == pytest.approx([0.9, 0.0, 0.2], abs=1e-6)
    assert results[1].tokens == 0 and results[1].step_scores is None
    assert prm.score([("1 + 1 =", long)])[0].failed == "length_prompt" and len(engine.calls) == 1  # no call at all
    with pytest.raises(VLLMValidationError, match="longer than the maximum model length of 40"):
        engine.encode([{"prompt_token_ids": [5] * 41}], vllm.PoolingParams(), pooling_task="token_classify")


@requires_vllm
def test_a_request_vllm_reports_as_errored_fails_alone():
    engine = RecordingEngine(errors=(1,))
    results = VLLMPRMScorer("tiny-prm", "last", engine=engine).score([("q", "good"), ("q", "good"), ("q", "bad")])
    assert [(r.failed, r.score) for r in results] == [(None, pytest.approx(0.9)), ("error", 0.0), (None, pytest.approx(0.2))]


@requires_vllm
def test_failed_scores_are_recorded_per_candidate_and_counted_in_metrics():
    from tteval.backends.base import Completion
    from tteval.metrics import compute_metrics
    from tteval.engine_host import _score_pool

    prm = VLLMPRMScorer("tiny-prm", "last", engine=RecordingEngine(max_len=40))
    outputs = [[Completion("good", 1, "stop"), Completion("\n\n".join(["ok good"] * 12), 24, "length")]]
    extra = [[{}, {}]]
    _score_pool(["1 + 1 ="], outputs, extra, prm, [["t/0#0", "t/0#1"]])
    assert extra[0][0]["scores"] == {"prm": pytest.approx(0.9)} and "score_failed" not in extra[0][0]
    assert extra[0][1]["scores"] == {"prm": 0.0} and extra[0][1]["score_failed"] == "length_prompt"
    records = [{"task_id": "t/0", "sample_index": j, "correct": j == 0, "answer_class": j, **e} for j, e in enumerate(extra[0])]
    failed = compute_metrics(records, task="t", n=2)["failed"]
    assert failed == {"samples": 0, "samples_by_reason": {}, "scores": 1, "scores_by_reason": {"length_prompt": 1}}


@requires_vllm
def test_close_shuts_the_prm_engine_down_and_says_so():
    engine = RecordingEngine()
    prm = VLLMPRMScorer("tiny-prm", engine=engine)
    assert prm.close() == "vLLM PRM engine of tiny-prm shut down; GPU memory not measured (no NVML)"
    assert engine.calls == ["shutdown"] and prm.close() is None
