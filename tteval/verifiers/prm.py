"""Process reward model (PRM) scorer on vLLM's pooling API, for PRMs such as Qwen/Qwen2.5-Math-PRM-7B.

The PRM reads the question and the candidate's steps (split at blank lines) in its own chat template: system
prompt SYSTEM, the question as the user turn, and the steps as the assistant turn, each followed by the step tag
`<extra_0>`. Its reward for a step is the softmax probability of the positive class (index 1) at that step's tag.
A candidate's score aggregates its step rewards: last / min / prod / mean, or "model" aggregation (Puri et al.
2025): the whole candidate as ONE step (its steps joined by single newlines, as the authors' wrapper collapses
newline runs) and that step's reward. An empty candidate is one empty step. All items go in ONE engine call;
vLLM neither chunks nor prefix-caches STEP-pooled prompts, so every call prefills each whole prompt.

The engine starts with a bounded context (`max_model_len`, by default the longest that fits its GPU share): a
prompt vLLM would refuse (longer than that; particle-filter candidates reach pf_max_steps x pf_step_tokens
tokens) is not sent, since it would abort the whole `encode` call; the item comes back failed
(ScoreResult.failed "length_prompt", reward 0), and so does an item whose request vLLM reports as errored.

Checked against vLLM 0.33.0: `LLM(model, runner="pooling")` serves `Qwen2ForProcessRewardModel` with a STEP
token pooler (`step_tag_id` defaults to 151651, `<extra_0>`) for the "token_classify" task; there is no
`LLM.reward` any more, so scoring is `LLM.encode(prompts, PoolingParams(...), pooling_task="token_classify")`.
Each `PoolingRequestOutput.outputs.data` is a tensor [num_step_tags, 2]: the classifier's rows at the step-tag
positions, softmaxed when `use_activation` is on (the default for token_classify, and set here together with the
tokenizer's step-tag id). `step_probabilities` reads column 1 and refuses rows that are not probabilities
(logits, when a pooler config turns the activation off); the scorer refuses a row count that is not the step count.
"""

from __future__ import annotations

from typing import Any, Sequence

from tteval.backends.vllm import _no_accelerator, import_vllm
from tteval.backends.vllm_engine import close_engine, engine_max_len, gpu_memory_used, prompt_failure, start_engine
from tteval.errors import TtevalError, first_line
from tteval.verifiers.reward import AGGREGATIONS, ScoreResult, aggregate_steps, split_steps

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
STEP_TAG = "<extra_0>"
PRM_AGGREGATIONS = (*AGGREGATIONS, "model")
POSITIVE = 1  # the classifier's [negative, positive] order
_PROB_TOL = 2e-2  # a row of class probabilities sums to 1 within this (bf16 heads round)


def prm_steps(candidate: str, aggregation: str = "last", step_tag: str = STEP_TAG) -> list[str]:
    """The steps the PRM scores: the candidate's blank-line steps, or all of them as one step ("model");
    an empty candidate is one empty step. Step tags written in the candidate itself are dropped."""
    steps = split_steps(candidate.replace(step_tag, ""))
    if aggregation == "model":
        steps = ["\n".join(steps)]
    return steps or [""]


def prm_prompt(tokenizer: Any, question: str, steps: Sequence[str], step_tag: str = STEP_TAG,
               system: str | None = SYSTEM) -> str:  # fmt: skip
    """The PRM's input in its chat template: system, question, then the steps, each followed by the step tag."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages += [{"role": "user", "content": question},
                 {"role": "assistant", "content": "".join(s + step_tag for s in steps)}]  # fmt: skip
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    except Exception as exc:  # a template's raise_exception, a missing template, a jinja error
        raise TtevalError(f"the PRM's chat template rejected the messages: {first_line(exc)}") from None


def request_error(output: Any) -> str | None:
    """The message of a request-level error vLLM reports on a PoolingRequestOutput, or None."""
    error = getattr(output, "error", None)
    return None if error is None else str(getattr(error, "message", error))


def step_probabilities(output: Any) -> list[float]:
    """The positive-class probability at each step tag, from a vllm PoolingRequestOutput ([steps, 2] data)."""
    error = request_error(output)
    if error is not None:
        raise TtevalError(f"vLLM failed to score a prompt: {error}")
    data = output.outputs.data
    if hasattr(data, "float"):  # a torch tensor, maybe bf16 or on the GPU
        data = data.detach().float().cpu()
    shape = tuple(getattr(data, "shape", ()))
    if len(shape) != 2 or shape[1] <= POSITIVE:
        raise TtevalError(f"the PRM returned data of shape {list(shape)}, not [steps, 2] class probabilities")
    rows = data.tolist()
    for row in rows:
        if min(row) < 0 or max(row) > 1 or abs(sum(row) - 1) > _PROB_TOL:
            raise TtevalError(f"the PRM returned {row}, not class probabilities (is the pooler's activation off?)")
    return [float(row[POSITIVE]) for row in rows]


class VLLMPRMScorer:
    """A process reward model on vllm.LLM's pooling runner: one `encode` call per `score`."""

    name = "prm"

    def __init__(self, model: str, aggregation: str = "last", engine: Any = None, *, step_tag: str = STEP_TAG,
                 system: str | None = SYSTEM, **engine_kwargs: Any) -> None:  # fmt: skip
        """Start the engine (or use `engine`, any object with vllm.LLM's encode/get_tokenizer)."""
        if aggregation not in PRM_AGGREGATIONS:
            raise TtevalError(f"unknown PRM aggregation {aggregation!r}: use one of {', '.join(PRM_AGGREGATIONS)}")
        self.model, self.aggregation, self.step_tag, self.system = model, aggregation, step_tag, system
        self._memory_before: int | None = None
        if engine is None:
            vllm = import_vllm("the prm verifier")
            if _no_accelerator():
                raise TtevalError("vLLM found no GPU on this machine; the prm verifier needs one")
            self._memory_before = gpu_memory_used()
            engine = start_engine(vllm, f"the PRM {model}", "TTEVAL_VLLM_PRM_ARGS", model=model, runner="pooling",
                                  **engine_kwargs)  # fmt: skip
        self.engine = engine
        self.engine_calls = 0
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The engine's (Hugging Face) tokenizer."""
        if self._tokenizer is None:
            self._tokenizer = self.engine.get_tokenizer()
        return self._tokenizer

    @property
    def step_tag_id(self) -> int:
        """The step tag's token id; the tokenizer must have it as one token."""
        ids = self.tokenizer.encode(self.step_tag, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == getattr(self.tokenizer, "unk_token_id", None):
            raise TtevalError(f"the tokenizer of {self.model} has no single token for the step tag {self.step_tag!r}")
        return int(ids[0])

    def score(self, items: Sequence[tuple[str, str]], keys: Sequence[str] | None = None) -> list[ScoreResult]:
        """One ScoreResult per (question, candidate), in item order, with its step rewards and prompt tokens (a PRM
        does not sample: `keys` are not needed).

        An item the engine cannot take (longer than its context) is not sent: it comes back failed, reward 0."""
        if not items:
            return []
        vllm = import_vllm("the prm verifier")
        tag_id = self.step_tag_id
        max_len = engine_max_len(self.engine)
        results: list[ScoreResult | None] = [None] * len(items)
        steps_of, prompts, live = [], [], []
        for i, (question, candidate) in enumerate(items):
            steps = prm_steps(candidate, self.aggregation, self.step_tag)
            text = prm_prompt(self.tokenizer, question, steps, self.step_tag, self.system)
            ids = list(self.tokenizer.encode(text, add_special_tokens=False))  # the template has any BOS itself
            if ids.count(tag_id) != len(steps):
                raise TtevalError(f"item {i}: the PRM prompt has {ids.count(tag_id)} step tags for {len(steps)} "
                                  "steps (does the question contain the step tag?)")  # fmt: skip
            reason = prompt_failure(len(ids), max_len, pooling=True)
            if reason is not None:
                results[i] = ScoreResult(0.0, failed=reason)
                continue
            live.append(i)
            steps_of.append(steps)
            prompts.append({"prompt_token_ids": ids})
        if prompts:
            outputs = self._encode(vllm, prompts, tag_id)
            for i, steps, prompt, out in zip(live, steps_of, prompts, outputs):
                results[i] = self._result(i, steps, prompt, out)
        return [r for r in results if r is not None]

    def _encode(self, vllm: Any, prompts: list[dict[str, list[int]]], tag_id: int) -> list[Any]:
        """One `LLM.encode` call (token_classify, step pooling) over the prompts, one output per prompt."""
        params = vllm.PoolingParams(use_activation=True, step_tag_id=tag_id)
        try:
            outputs = self.engine.encode(prompts, params, pooling_task="token_classify", use_tqdm=False)
        except Exception as exc:  # a pooler without step pooling, an engine failure, ...
            first = first_line(exc)
            raise TtevalError(f"vLLM could not score {len(prompts)} prompts with {self.model}: {first}") from exc
        self.engine_calls += 1
        if len(outputs) != len(prompts):
            raise TtevalError(f"vLLM returned {len(outputs)} PRM outputs for {len(prompts)} prompts")
        return list(outputs)

    def _result(self, i: int, steps: list[str], prompt: dict[str, list[int]], out: Any) -> ScoreResult:
        """Item i's ScoreResult from its pooling output: aggregated step rewards, or failed "error" (reward 0)."""
        if request_error(out) is not None:
            return ScoreResult(0.0, failed="error")
        probs = step_probabilities(out)
        if len(probs) != len(steps):
            raise TtevalError(f"item {i}: the PRM returned {len(probs)} step rewards for {len(steps)} steps")
        score = aggregate_steps(probs, "last" if self.aggregation == "model" else self.aggregation)
        tokens = len(getattr(out, "prompt_token_ids", None) or prompt["prompt_token_ids"])
        return ScoreResult(score, tokens=tokens, step_scores=probs)

    def close(self) -> str | None:
        """Shut the engine down; a log line saying whether its GPU memory came back (None if already closed)."""
        return close_engine(self, f"vLLM PRM engine of {self.model}")


def make_prm_scorer(model: str, aggregation: str = "model", gpu_memory_utilization: float = 0.4,
                    max_model_len: int | None = None, **engine_kwargs: Any) -> VLLMPRMScorer:  # fmt: skip
    """The runner's PRM: its own vLLM engine on a share of the GPU (the policy engine needs the rest), with a
    bounded context: `max_model_len`, or by default the longest that fits that share (vLLM's -1)."""
    return VLLMPRMScorer(model, aggregation, gpu_memory_utilization=gpu_memory_utilization,
                         max_model_len=max_model_len, **engine_kwargs)  # fmt: skip
