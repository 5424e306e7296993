"""Process reward model (PRM) scorer on vLLM's pooling API, for PRMs such as Qwen/Qwen2.5-Math-PRM-7B.

The PRM reads the question and the candidate's steps (split at blank lines) in its own chat template: system
prompt SYSTEM, the question as the user turn, and the steps as the assistant turn, each followed by the step tag
`<extra_0>`. Its reward for a step is the softmax probability of the positive class (index 1) at that step's tag.
A candidate's score aggregates its step rewards: last / min / prod / mean, or "model" aggregation (Puri et al.
2025): the whole candidate as ONE step (its steps joined by single newlines, as the authors' wrapper collapses
newline runs) and that step's reward. An empty candidate is one empty step. All items go in ONE engine call;
vLLM neither chunks nor prefix-caches STEP-pooled prompts, so every call prefills each whole prompt.

Checked against vLLM 0.33.0: `LLM(model, runner="pooling")` serves `Qwen2ForProcessRewardModel` with a STEP
token pooler (`step_tag_id` defaults to 151651, `<extra_0>`) for the "token_classify" task; there is no
`LLM.reward` any more, so scoring is `LLM.encode(prompts, PoolingParams(...), pooling_task="token_classify")`.
Each `PoolingRequestOutput.outputs.data` is a tensor [num_step_tags, 2]: the classifier's rows at the step-tag
positions, softmaxed when `use_activation` is on (the default for token_classify, and set here together with the
tokenizer's step-tag id). `step_probabilities` reads column 1 and refuses rows that are not probabilities
(logits, when a pooler config turns the activation off); the scorer refuses a row count that is not the step count.
"""

from __future__ import annotations

import gc
from typing import Any, Sequence

from tteval.backends.vllm import _no_accelerator, import_vllm
from tteval.errors import TtevalError, first_line
from tteval.verifiers.scorer import AGGREGATIONS, ScoreResult, aggregate_steps, split_steps

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


def step_probabilities(output: Any) -> list[float]:
    """The positive-class probability at each step tag, from a vllm PoolingRequestOutput ([steps, 2] data)."""
    error = getattr(output, "error", None)
    if error is not None:
        raise TtevalError(f"vLLM failed to score a prompt: {getattr(error, 'message', error)}")
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
        if engine is None:
            vllm = import_vllm("the prm verifier")
            if _no_accelerator():
                raise TtevalError("vLLM found no GPU on this machine; the prm verifier needs one")
            try:
                engine = vllm.LLM(model=model, runner="pooling", **engine_kwargs)
            except Exception as exc:  # bad model name or path, out of memory, not a pooling model, ...
                raise TtevalError(f"vLLM could not start the PRM {model}: {first_line(exc)}") from exc
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
        does not sample: `keys` are not needed)."""
        if not items:
            return []
        vllm = import_vllm("the prm verifier")
        tag_id = self.step_tag_id
        steps_of, prompts = [], []
        for i, (question, candidate) in enumerate(items):
            steps = prm_steps(candidate, self.aggregation, self.step_tag)
            text = prm_prompt(self.tokenizer, question, steps, self.step_tag, self.system)
            ids = list(self.tokenizer.encode(text, add_special_tokens=False))  # the template has any BOS itself
            if ids.count(tag_id) != len(steps):
                raise TtevalError(f"item {i}: the PRM prompt has {ids.count(tag_id)} step tags for {len(steps)} "
                                  "steps (does the question contain the step tag?)")  # fmt: skip
            steps_of.append(steps)
            prompts.append({"prompt_token_ids": ids})
        params = vllm.PoolingParams(use_activation=True, step_tag_id=tag_id)
        try:
            outputs = self.engine.encode(prompts, params, pooling_task="token_classify", use_tqdm=False)
        except Exception as exc:  # a prompt longer than the PRM's context, a pooler without step pooling, ...
            first = first_line(exc)
            raise TtevalError(f"vLLM could not score {len(prompts)} prompts with {self.model}: {first}") from exc
        self.engine_calls += 1
        if len(outputs) != len(prompts):
            raise TtevalError(f"vLLM returned {len(outputs)} PRM outputs for {len(prompts)} prompts")
        results = []
        for i, (steps, prompt, out) in enumerate(zip(steps_of, prompts, outputs)):
            probs = step_probabilities(out)
            if len(probs) != len(steps):
                raise TtevalError(f"item {i}: the PRM returned {len(probs)} step rewards for {len(steps)} steps")
            score = aggregate_steps(probs, "last" if self.aggregation == "model" else self.aggregation)
            tokens = len(getattr(out, "prompt_token_ids", None) or prompt["prompt_token_ids"])
            results.append(ScoreResult(score, tokens=tokens, step_scores=probs))
        return results

    def close(self) -> None:
        """Drop the engine so its GPU memory can be freed."""
        self.engine = None
        self._tokenizer = None
        gc.collect()


def make_prm_scorer(model: str, aggregation: str = "model", gpu_memory_utilization: float = 0.4,
                    **engine_kwargs: Any) -> VLLMPRMScorer:  # fmt: skip
    """The runner's PRM: its own vLLM engine on a share of the GPU (the policy engine needs the rest)."""
    return VLLMPRMScorer(model, aggregation, gpu_memory_utilization=gpu_memory_utilization, **engine_kwargs)
