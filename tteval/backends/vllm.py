"""The GPU backend: vLLM's offline engine (`vllm.LLM`), every prompt of a round in ONE `generate` call.

- Each request becomes one vLLM prompt with `SamplingParams(n=...)`, so its n samples share one prefill; prefix
  caching (on by default) shares the prompts' common prefixes across requests and rounds.
- Chat messages are rendered with the tokenizer's own chat template. A prompt that already begins with the
  tokenizer's BOS token (a rendered template, as raw-prompt strategies pass) is tokenized here without special
  tokens, so the engine does not add a second BOS.
- vLLM refuses n > 1 with temperature 0; greedy decoding is deterministic, so such a request is decoded once and
  its completion repeated n times (as the other backends would return it).
- Logprobs are vLLM's defaults: the model's raw distribution (before temperature and top-p), like the llama.cpp
  backend's.

The request mapping (`to_sampling_params`) and output parsing (`parse_request_output`) are plain functions over
vLLM's own types, testable without a GPU.
"""

from __future__ import annotations

import copy
import gc
from typing import Any, Sequence

from tteval.backends.base import Completion, Request, Usage, validate_request
from tteval.errors import TtevalError, first_line

GREEDY_EPS = 1e-5  # vLLM treats a temperature below this as greedy


def import_vllm(user: str = "the vllm backend") -> Any:
    """Import vllm, or explain in one line how to get it (`user` names what needs it)."""
    try:
        import vllm
    except ImportError:
        raise TtevalError(f"{user} needs vLLM: pip install 'tteval[vllm]' (GPU required)") from None
    return vllm


def _no_accelerator() -> bool:
    """True when vLLM detects no platform it can run on (a CPU-only machine with a GPU build of vLLM)."""
    try:
        from vllm.platforms import current_platform
    except ImportError:  # pragma: no cover - a vLLM without the platforms module: let the engine decide
        return False
    check = getattr(current_platform, "is_unspecified", None)
    return bool(check()) if callable(check) else False


def is_greedy(req: Request) -> bool:
    """True when vLLM decodes the request greedily (and so refuses n > 1)."""
    return req.temperature < GREEDY_EPS


def to_sampling_params(req: Request) -> Any:
    """The vllm.SamplingParams of one request: n samples (1 if greedy), seed, stop strings, logprobs.

    `logprobs` is the number of top alternatives per position: 0 returns just the sampled token's logprob."""
    vllm = import_vllm()
    validate_request(req)
    if req.logprobs or req.top_logprobs > 0:
        logprobs: int | None = req.top_logprobs
    else:
        logprobs = None
    try:
        return vllm.SamplingParams(
            n=1 if is_greedy(req) else req.n,
            temperature=req.temperature,
            top_p=req.top_p,
            max_tokens=req.max_tokens,
            stop=list(req.stop) or None,
            seed=req.seed,
            logprobs=logprobs,
        )
    except Exception as exc:  # vLLM's own checks (temperature in [0, 2], max_tokens >= 1, ...), whatever their class
        raise TtevalError(f"vLLM rejected the sampling parameters: {exc}") from None


def parse_request_output(output: Any, top_logprobs: int = 0) -> list[Completion]:
    """Completions from a vllm.RequestOutput, in sample order: text, tokens, logprobs, top-k alternatives, finish.

    `output.outputs[i].logprobs` holds, per generated position, {token_id: Logprob} with the sampled token and
    the top-k alternatives (a list of dicts or vLLM's FlatLogprobs, which reads the same)."""
    prompt_tokens = len(output.prompt_token_ids or [])
    completions = []
    for c in sorted(output.outputs, key=lambda c: c.index):
        token_ids = list(c.token_ids)
        tokens: list[str] | None = None
        lps: list[float] | None = None
        tops: list[dict[str, float]] | None = None
        if c.logprobs is not None and len(c.logprobs) == len(token_ids):
            positions = list(c.logprobs)
            chosen = [pos.get(tid) if pos else None for tid, pos in zip(token_ids, positions)]
            if all(lp is not None for lp in chosen):
                lps = [float(lp.logprob) for lp in chosen]
                tokens = [lp.decoded_token if lp.decoded_token is not None else "" for lp in chosen]
            if top_logprobs > 0:
                tops = [_top(pos or {}, top_logprobs) for pos in positions]
        if lps is not None:
            logprob: float | None = float(sum(lps))
        else:
            logprob = float(c.cumulative_logprob) if c.cumulative_logprob is not None else None
        completions.append(
            Completion(
                text=c.text,
                num_tokens=len(token_ids),
                finish_reason="length" if c.finish_reason == "length" else "stop",
                logprob=logprob,
                token_logprobs=lps,
                tokens=tokens,
                top_logprobs=tops,
                prompt_tokens=prompt_tokens,
                stop_reason=c.stop_reason if isinstance(c.stop_reason, str) else None,
            )
        )
    return completions


def _top(position: dict[int, Any], k: int) -> dict[str, float]:
    """The k most likely alternatives at one position, by decoded token (the sampled one only if it is among them)."""
    ranked = sorted(position.values(), key=lambda lp: (lp.rank if lp.rank is not None else 1 << 30, -lp.logprob))
    out: dict[str, float] = {}
    for lp in ranked[:k]:
        out.setdefault(lp.decoded_token if lp.decoded_token is not None else "", float(lp.logprob))
    return out


class VLLMBackend:
    """vllm.LLM with prefix caching: one engine `generate` over all requests of a round."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        seed: int = 0,
        enable_prefix_caching: bool = True,
        engine: Any = None,
        **engine_kwargs: Any,
    ) -> None:
        """Start the engine (or use `engine`, any object with vllm.LLM's generate/get_tokenizer)."""
        self.model = model
        self.usage = Usage(extra={"engine_calls": 0, "cached_prompt_tokens": 0})
        if engine is None:
            vllm = import_vllm()
            if _no_accelerator():
                raise TtevalError(
                    "vLLM found no GPU on this machine; use the llamacpp backend on CPU (the default)"
                )
            try:
                engine = vllm.LLM(
                    model=model,
                    tensor_parallel_size=tensor_parallel_size,
                    gpu_memory_utilization=gpu_memory_utilization,
                    max_model_len=max_model_len,
                    seed=seed,
                    enable_prefix_caching=enable_prefix_caching,
                    **engine_kwargs,
                )
            except Exception as exc:  # bad model name or path, out of memory, unsupported architecture, ...
                raise TtevalError(f"vLLM could not start {model}: {first_line(exc)}") from exc
        self.engine = engine
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The engine's (Hugging Face) tokenizer."""
        if self._tokenizer is None:
            self._tokenizer = self.engine.get_tokenizer()
        return self._tokenizer

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """Render chat messages with the model's own chat template, generation prompt appended."""
        try:
            return self.tokenizer.apply_chat_template(
                [{"role": role, "content": content} for role, content in messages],
                tokenize=False,
                add_generation_prompt=True,
            )
        except Exception as exc:  # a template's raise_exception, a missing template, a jinja error
            raise TtevalError(f"the chat template of {self.model} rejected the messages: {exc}") from None

    def engine_prompt(self, text: str) -> str | dict[str, list[int]]:
        """The prompt as the engine takes it: the text, or its token ids when it already starts with BOS."""
        bos = getattr(self.tokenizer, "bos_token", None)
        if bos and text.startswith(bos):
            return {"prompt_token_ids": list(self.tokenizer.encode(text, add_special_tokens=False))}
        return text

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Return each request's n completions from a single engine call over all requests."""
        for r in requests:
            validate_request(r)
        params = [to_sampling_params(r) if r.n > 0 else None for r in requests]
        live = [i for i, p in enumerate(params) if p is not None]
        results: list[list[Completion]] = [[] for _ in requests]
        self.usage.calls += 1
        if not live:
            return results
        prompts = []
        for i in live:
            r = requests[i]
            text = r.prompt if r.prompt is not None else self.apply_chat_template(r.messages or ())
            prompts.append(self.engine_prompt(text))
        outputs = self.engine.generate(prompts, [params[i] for i in live], use_tqdm=False)
        if len(outputs) != len(live):
            raise TtevalError(f"vLLM returned {len(outputs)} outputs for {len(live)} prompts")
        self.usage.extra["engine_calls"] += 1
        for i, out in zip(live, outputs):
            r = requests[i]
            comps = parse_request_output(out, r.top_logprobs)
            self.usage.prompt_tokens += len(out.prompt_token_ids or [])
            self.usage.extra["cached_prompt_tokens"] += int(getattr(out, "num_cached_tokens", None) or 0)
            self.usage.completion_tokens += sum(c.num_tokens for c in comps)
            if is_greedy(r) and len(comps) == 1 and r.n > 1:
                comps += [copy.deepcopy(comps[0]) for _ in range(r.n - 1)]
            if len(comps) != r.n:
                raise TtevalError(f"vLLM returned {len(comps)} samples for a request of n={r.n}")
            results[i] = comps
        return results

    def close(self) -> None:
        """Drop the engine so its GPU memory can be freed."""
        self.engine = None
        self._tokenizer = None
        gc.collect()
