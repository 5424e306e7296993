"""The GPU backend: vLLM's offline engine (`vllm.LLM`), every prompt of a round in ONE `generate` call.

- Each request becomes one vLLM prompt with `SamplingParams(n=...)`. vLLM (0.33) fans it out into n child
  requests (seeds seed, seed + 1, ...) that share the prompt's KV blocks through prefix caching (on by default),
  which also shares common prefixes across requests and rounds; `usage.extra["cached_prompt_tokens"]` counts
  the prompt tokens served from that cache.
- Prompts go to the engine as token ids, tokenized here: chat messages are rendered with the tokenizer's own
  chat template and tokenized without special tokens (as `LLM.chat` does); a raw prompt is tokenized with them
  (as `LLM.generate` does), unless it already begins with BOS (a rendered template, as raw-prompt strategies
  pass). So each prompt's length is known before submitting: one that vLLM would refuse (empty, or not shorter
  than the engine's max_model_len) would make `generate` raise and abort the whole batch, so it is not sent; its
  candidates come back failed (finish_reason "empty_prompt" / "length_prompt") and the rest of the batch goes on.
- vLLM's finish reasons are kept: "stop", "length", "repetition" (a repetitive pattern detected), and the failed
  "abort" and "error" (see FAILED_FINISH_REASONS).
- vLLM refuses n > 1 with temperature 0; greedy decoding is deterministic, so such a request is decoded once and
  its completion repeated n times (as the other backends would return it).
- Logprobs are vLLM's defaults: the model's raw distribution (before temperature and top-p), like the llama.cpp
  backend's.
- `close()` shuts the engine down (its engine-core process and the GPU memory it holds) and checks with NVML
  that the memory came back: a sweep starts the next model's engine only after that.

The request mapping (`to_sampling_params`) and output parsing (`parse_request_output`) are plain functions over
vLLM's own types, testable without a GPU.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

from tteval.backends.base import Completion, Request, Usage, failed_completion, validate_request
from tteval.backends.vllm_engine import close_engine, engine_max_len, gpu_memory_used, prompt_failure, start_engine
from tteval.errors import TtevalError

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
            **dict(req.extra),
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
                finish_reason=finish_reason(c.finish_reason),
                logprob=logprob,
                token_logprobs=lps,
                tokens=tokens,
                top_logprobs=tops,
                prompt_tokens=prompt_tokens,
                stop_reason=c.stop_reason if isinstance(c.stop_reason, str) else None,
            )
        )
    return completions


def finish_reason(reason: Any) -> str:
    """vLLM's finish reason as tteval records it: "stop", "length", "repetition", "abort" or "error" as they are
    (the last two are failures); an unfinished or unknown one is "error", never a normal "stop"."""
    reason = str(reason) if reason is not None else ""
    return reason if reason in ("stop", "length", "repetition", "abort", "error") else "error"


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
        """Start the engine (or use `engine`, any object with vllm.LLM's generate/get_tokenizer/model_config).

        `max_model_len` None lets vLLM fit the longest context its share of GPU memory holds."""
        self.model = model
        self.usage = Usage(extra={"engine_calls": 0, "cached_prompt_tokens": 0, "failed_prompts": 0})
        self._memory_before: int | None = None
        if engine is None:
            vllm = import_vllm()
            if _no_accelerator():
                raise TtevalError(
                    "vLLM found no GPU on this machine; use the llamacpp backend on CPU (the default)"
                )
            self._memory_before = gpu_memory_used()
            engine = start_engine(vllm, model, "TTEVAL_VLLM_ARGS", model=model, tensor_parallel_size=tensor_parallel_size,
                                  gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                                  seed=seed, enable_prefix_caching=enable_prefix_caching, **engine_kwargs)  # fmt: skip
        self.engine = engine
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        """The engine's (Hugging Face) tokenizer."""
        if self._tokenizer is None:
            self._tokenizer = self.engine.get_tokenizer()
        return self._tokenizer

    @property
    def max_model_len(self) -> int | None:
        """The engine's context length: a prompt must be shorter than this (None: unknown, not checked)."""
        return engine_max_len(self.engine)

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

    def engine_prompt(self, text: str, special_tokens: bool = True) -> dict[str, list[int]]:
        """The prompt's token ids as the engine takes them: with the tokenizer's special tokens (BOS), as
        `LLM.generate` would add them, unless asked not to or the text already begins with BOS."""
        bos = getattr(self.tokenizer, "bos_token", None)
        special = special_tokens and not (bos and text.startswith(bos))
        return {"prompt_token_ids": list(self.tokenizer.encode(text, add_special_tokens=special))}

    def request_prompt(self, r: Request) -> dict[str, list[int]]:
        """A request's engine prompt: a chat rendered and tokenized as `LLM.chat` does, or the raw prompt."""
        if r.prompt is not None:
            return self.engine_prompt(r.prompt)
        return self.engine_prompt(self.apply_chat_template(r.messages or ()), special_tokens=False)

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Return each request's n completions from a single engine call over all requests.

        A request whose prompt the engine would refuse is not sent: its n candidates come back failed."""
        for r in requests:
            validate_request(r)
        params = [to_sampling_params(r) if r.n > 0 else None for r in requests]
        results: list[list[Completion]] = [[] for _ in requests]
        self.usage.calls += 1
        limit = self.max_model_len
        live, prompts = [], []
        for i, (r, p) in enumerate(zip(requests, params)):
            if p is None:
                continue
            prompt = self.request_prompt(r)
            reason = prompt_failure(len(prompt["prompt_token_ids"]), limit)
            if reason is not None:
                results[i] = [failed_completion(reason, len(prompt["prompt_token_ids"])) for _ in range(r.n)]
                self.usage.extra["failed_prompts"] += 1
                continue
            live.append(i)
            prompts.append(prompt)
        if not live:
            return results
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

    def close(self) -> str | None:
        """Shut the engine down; a log line saying whether its GPU memory came back (None if already closed)."""
        return close_engine(self, f"vLLM engine of {self.model}")
