"""The GPU backend: vLLM's offline engine, all prompts of a round in ONE `generate` call, prefix caching on."""

from __future__ import annotations

import math
from typing import Any, Sequence

from tteval.backends.base import Completion, Request, Usage
from tteval.errors import TtevalError


def _vllm():
    try:
        import vllm
    except ImportError:
        raise TtevalError("the vllm backend needs vLLM: pip install 'tteval[vllm]' (GPU required)") from None
    return vllm


def to_sampling_params(req: Request):
    """The vLLM SamplingParams of one request (n samples, seed, stop strings, chosen-token and top-k logprobs)."""
    vllm = _vllm()
    logprobs = req.top_logprobs if req.top_logprobs else (0 if req.logprobs else None)
    return vllm.SamplingParams(
        n=req.n, temperature=req.temperature, top_p=req.top_p, max_tokens=req.max_tokens, stop=list(req.stop) or None,
        seed=req.seed, logprobs=logprobs,
    )  # fmt: skip


def parse_request_output(output: Any, want_top: int = 0) -> list[Completion]:
    """Completions from a vllm.RequestOutput: text, tokens, chosen-token logprobs, top alternatives, finish reason."""
    prompt_tokens = len(output.prompt_token_ids or [])
    out = []
    for c in output.outputs:
        lps, toks, tops = [], [], []
        for tid, pos in zip(c.token_ids, c.logprobs or []):
            chosen = pos.get(tid)
            lps.append(float(chosen.logprob) if chosen is not None else float("nan"))
            toks.append((chosen.decoded_token if chosen is not None else None) or "")
            if want_top:
                ranked = sorted(pos.values(), key=lambda lp: -lp.logprob)[:want_top]
                tops.append({(lp.decoded_token or ""): float(lp.logprob) for lp in ranked})
        have = bool(lps) and all(math.isfinite(x) for x in lps)
        out.append(
            Completion(
                text=c.text, num_tokens=len(c.token_ids), finish_reason="length" if c.finish_reason == "length" else "stop",
                logprob=float(sum(lps)) if have else (c.cumulative_logprob if c.cumulative_logprob is not None else None),
                token_logprobs=lps if have else None, tokens=toks or None, top_logprobs=tops or None,
                prompt_tokens=prompt_tokens, stop_reason=c.stop_reason if isinstance(c.stop_reason, str) else None,
            )  # fmt: skip
        )
    return out


class VLLMBackend:
    """vllm.LLM with prefix caching; one generate() over all requests of a round; chat via the tokenizer's template."""

    name = "vllm"

    def __init__(self, model: str, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int | None = None, seed: int = 0, enable_prefix_caching: bool = True,
                 engine: Any = None, **engine_kwargs: Any):  # fmt: skip
        self.model = model
        self.usage = Usage()
        if engine is None:
            vllm = _vllm()
            engine = vllm.LLM(
                model=model, tensor_parallel_size=tensor_parallel_size, gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len, seed=seed, enable_prefix_caching=enable_prefix_caching, **engine_kwargs,
            )  # fmt: skip
        self.engine = engine

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        tok = self.engine.get_tokenizer()
        return tok.apply_chat_template([{"role": r, "content": c} for r, c in messages], tokenize=False,
                                       add_generation_prompt=True)  # fmt: skip

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        prompts = [r.prompt if r.prompt is not None else self.apply_chat_template(r.messages) for r in requests]
        outputs = self.engine.generate(prompts, [to_sampling_params(r) for r in requests], use_tqdm=False)
        results = [parse_request_output(o, r.top_logprobs) for o, r in zip(outputs, requests)]
        self.usage.calls += 1
        for comps in results:
            self.usage.prompt_tokens += comps[0].prompt_tokens if comps else 0
            self.usage.completion_tokens += sum(c.num_tokens for c in comps)
        return results

    def close(self) -> None:
        self.engine = None
