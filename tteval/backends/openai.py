"""OpenAI-compatible HTTP backend (vllm serve, llama.cpp server, SGLang): concurrent requests, retries, timeouts."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import httpx

from tteval.backends.base import Completion, Request, Usage
from tteval.errors import TtevalError

RETRY_STATUS = {429, 500, 502, 503, 504}


class OpenAIBackend:
    """Fans a batch out as concurrent HTTP requests (bounded), retrying 429/5xx with exponential backoff + jitter.

    A server that returns fewer than `n` choices (some ignore `n`) is asked again until the request has n."""

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, max_concurrency: int = 16,
                 timeout_s: float = 600.0, max_retries: int = 5, chat_template: str | None = None):  # fmt: skip
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.usage = Usage()
        self.max_concurrency, self.max_retries = max_concurrency, max_retries
        self.chat_template = chat_template
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=max_concurrency),
        )
        self._lock = threading.Lock()
        self.check()

    def check(self) -> None:
        """Fail fast, in one line, when the server cannot be reached."""
        try:
            self._client.get(f"{self.base_url}/models", timeout=5.0)
        except httpx.HTTPError as exc:
            raise TtevalError(f"cannot reach OpenAI-compatible server at {self.base_url}: {exc}") from None

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        if not self.chat_template:
            raise TtevalError("raw-prompt strategies over the openai backend need a chat template (chat_template=...)")
        import jinja2

        return jinja2.Template(self.chat_template).render(
            messages=[{"role": r, "content": c} for r, c in messages], add_generation_prompt=True
        )

    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            results = list(pool.map(self._one, requests))
        with self._lock:
            self.usage.calls += 1
        return results

    def _one(self, r: Request) -> list[Completion]:
        out: list[Completion] = []
        while len(out) < r.n:
            out.extend(self._post(r, r.n - len(out), attempt_seed=len(out)))
        return out[: r.n]

    def _body(self, r: Request, n: int, offset: int) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, "n": n, "temperature": r.temperature, "top_p": r.top_p,
                                "max_tokens": r.max_tokens}  # fmt: skip
        if r.stop:
            body["stop"] = list(r.stop)
        if r.seed is not None:
            body["seed"] = r.seed + offset
        if r.messages is not None:
            body["messages"] = [{"role": role, "content": c} for role, c in r.messages]
            if r.logprobs or r.top_logprobs:
                body["logprobs"] = True
                body["top_logprobs"] = r.top_logprobs
            return "/chat/completions", body
        body["prompt"] = r.prompt
        if r.logprobs or r.top_logprobs:
            body["logprobs"] = max(r.top_logprobs, 1)
        return "/completions", body

    def _post(self, r: Request, n: int, attempt_seed: int) -> list[Completion]:
        path, body = self._body(r, n, attempt_seed)
        for attempt in range(self.max_retries + 1):
            try:
                resp = self._client.post(self.base_url + path, json=body)
            except httpx.HTTPError as exc:
                if attempt == self.max_retries:
                    raise TtevalError(f"cannot reach OpenAI-compatible server at {self.base_url}: {exc}") from None
                self._sleep(attempt, None)
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.max_retries:
                self._sleep(attempt, resp.headers.get("retry-after"))
                continue
            if resp.status_code >= 400:
                raise TtevalError(f"server error {resp.status_code} from {self.base_url}{path}: {resp.text[:300]}")
            return self._parse(resp.json(), chat=r.messages is not None)
        raise TtevalError(f"server at {self.base_url} kept failing after {self.max_retries} retries")

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def _sleep(attempt: int, retry_after: str | None) -> None:
        try:
            wait = float(retry_after) if retry_after else 0.5 * 2**attempt
        except ValueError:
            wait = 0.5 * 2**attempt
        time.sleep(min(wait, 30.0) * (0.5 + random.random()))

    def _parse(self, data: dict[str, Any], chat: bool) -> list[Completion]:
        usage = data.get("usage") or {}
        choices = data.get("choices") or []
        with self._lock:
            self.usage.prompt_tokens += int(usage.get("prompt_tokens", 0))
            self.usage.completion_tokens += int(usage.get("completion_tokens", 0))
        out = []
        for ch in choices:
            text = (ch.get("message") or {}).get("content") if chat else ch.get("text")
            tokens, lps, tops = _logprobs(ch.get("logprobs"), chat)
            num = len(lps) if lps else max(1, int(usage.get("completion_tokens", 0)) // max(len(choices), 1))
            out.append(
                Completion(
                    text=text or "", num_tokens=num, finish_reason="length" if ch.get("finish_reason") == "length" else "stop",
                    logprob=float(sum(lps)) if lps else None, token_logprobs=lps or None, tokens=tokens or None,
                    top_logprobs=tops or None, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                    stop_reason=ch.get("stop_reason") if isinstance(ch.get("stop_reason"), str) else None,
                )  # fmt: skip
            )
        return out


def _logprobs(lp: dict[str, Any] | None, chat: bool) -> tuple[list[str], list[float], list[dict[str, float]]]:
    """Tokens, their logprobs and top alternatives from either the chat or the completions logprobs format."""
    if not lp:
        return [], [], []
    if chat:
        content = lp.get("content") or []
        toks = [c.get("token", "") for c in content]
        lps = [float(c.get("logprob", 0.0)) for c in content]
        tops = [{t["token"]: float(t["logprob"]) for t in c.get("top_logprobs") or []} for c in content]
    else:
        toks = list(lp.get("tokens") or [])
        lps = [float(x) if x is not None and math.isfinite(x) else 0.0 for x in lp.get("token_logprobs") or []]
        tops = [dict(t or {}) for t in lp.get("top_logprobs") or []]
    return toks, lps, tops
