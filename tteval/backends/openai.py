"""OpenAI-compatible HTTP backend (`vllm serve`, llama.cpp's server, SGLang, TGI, hosted APIs), on httpx.

How a `generate` call runs:
- every request becomes one HTTP request (`messages` -> POST /v1/chat/completions, `prompt` -> /v1/completions)
  asking for its `n` samples; all of them go out at once through a thread pool of `max_concurrency` workers;
- a server that ignores `n` (llama.cpp's Python server does) or caps it returns fewer choices: the missing
  samples are asked for in follow-up requests, again all concurrently, until every request has its `n`. The
  smallest number of choices a server returned is remembered, so later calls split `n` to fit it at once.
  A follow-up asking for samples i.. of a seeded request sends seed + i, so the fill-up samples are not copies
  of the first one and a rerun against the same server reproduces them;
- 429, 408 and 5xx answers and broken connections are retried up to `max_retries` times with exponential backoff
  and jitter, waiting at least as long as a Retry-After header asks. A request that times out (no answer within
  `timeout_s`) is NOT retried: resending the same long generation only stacks more load on a slow server;
- any other 4xx is the caller's error and fails at once with the server's own message.
  `TTEVAL_HTTP_RETRIES` and `TTEVAL_HTTP_BACKOFF_S` set the retry count and base backoff when the caller does not.

Wire format (bodies, parsing, error lines): `openai_wire.py`; retry policy: `http_retry.py`; client-side chat
templates: `chat_template.py`.

Logprobs are whatever the server reports for the sampled tokens (vLLM and llama.cpp: the model's raw
distribution); `Completion.logprob` is their sum.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Sequence

import httpx

from tteval.backends.base import Completion, Request, Usage, validate_request
from tteval.backends.chat_template import load_chat_template, render_chat_template
from tteval.backends.http_retry import DEFAULT_BACKOFF_S, DEFAULT_MAX_RETRIES, RETRY_STATUS, backoff_delay, env_number
from tteval.backends.openai_wire import (
    error_message, json_request_bytes, normalize_base_url, parse_response, request_body, response_json,
)  # fmt: skip
from tteval.errors import TtevalError

_JSON_HEADERS = {"Content-Type": "application/json"}
CHECK_TIMEOUT = httpx.Timeout(10.0, connect=3.0)  # the construction-time probe: a wrong URL fails in seconds


@dataclass(frozen=True)
class _Post:
    """One HTTP request: `n` samples of request `index`, the first of them being sample number `offset`."""

    index: int
    offset: int
    n: int


class _Aborted(Exception):
    """Another request of the same generate() call failed: stop retrying this one."""


class OpenAIBackend:
    """A Backend over an OpenAI-compatible server: concurrent requests, `n` filled up, retries, one-line errors."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_concurrency: int = 16,
        timeout_s: float = 600.0,
        max_retries: int | None = None,
        chat_template: str | None = None,
        backoff_s: float | None = None,
    ) -> None:
        if max_retries is None:
            max_retries = int(env_number("TTEVAL_HTTP_RETRIES", DEFAULT_MAX_RETRIES, integer=True))
        if backoff_s is None:
            backoff_s = env_number("TTEVAL_HTTP_BACKOFF_S", DEFAULT_BACKOFF_S)
        if max_concurrency < 1:
            raise TtevalError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_retries < 0:
            raise TtevalError(f"max_retries must be >= 0, got {max_retries}")
        if not timeout_s > 0:
            raise TtevalError(f"timeout_s must be > 0, got {timeout_s}")
        if not backoff_s >= 0:
            raise TtevalError(f"backoff_s must be >= 0, got {backoff_s}")
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.usage = Usage(extra={"http_requests": 0, "retries": 0})
        self.max_concurrency, self.max_retries, self.timeout_s, self.backoff_s = (
            max_concurrency, max_retries, timeout_s, backoff_s,
        )  # fmt: skip
        self.chat_template = load_chat_template(chat_template)
        self.served_models: list[str] = []
        self._n_cap: int | None = None  # the most choices one response has been seen to hold, once it fell short
        self._lock = threading.Lock()
        key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._client = httpx.Client(
            headers={"Authorization": f"Bearer {key}"},
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        try:
            self.check()
        except TtevalError:
            self._client.close()
            raise

    # ------------------------------------------------------------------------------------------------ setup
    def check(self) -> None:
        """GET /v1/models with a short connect timeout, so an unreachable server or bad key fails fast, in one line."""
        try:
            resp = self._client.get(f"{self.base_url}/models", timeout=CHECK_TIMEOUT)
        except httpx.TransportError as exc:
            raise TtevalError(f"cannot reach OpenAI-compatible server at {self.base_url}: {_reason(exc)}") from None
        if resp.status_code in (401, 403):
            raise TtevalError(
                f"server at {self.base_url} rejected the API key ({resp.status_code}): {error_message(resp)}"
                " (set OPENAI_API_KEY or pass api_key)"
            )
        if resp.status_code == 200:  # some servers have no /models; they still serve completions
            try:
                self.served_models = [str(m.get("id")) for m in resp.json().get("data") or [] if isinstance(m, dict)]
            except (ValueError, AttributeError, TypeError, RecursionError):
                self.served_models = []

    def apply_chat_template(self, messages: Sequence[tuple[str, str]]) -> str:
        """Render chat messages with the configured jinja chat template (the server's own template is not exposed)."""
        if self.chat_template is None:
            raise TtevalError(
                "the openai backend cannot render raw prompts (the server applies the chat template and does not"
                " expose it): raw-prompt strategies need --chat-template FILE with the model's jinja chat template"
            )
        return render_chat_template(self.chat_template, messages)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    # ------------------------------------------------------------------------------------------- generation
    def generate(self, requests: Sequence[Request]) -> list[list[Completion]]:
        """Return each request's n completions; all HTTP requests of the call are in flight together (bounded)."""
        for r in requests:
            validate_request(r)
        got: list[dict[int, list[Completion]]] = [{} for _ in requests]
        pending = [p for i, r in enumerate(requests) for p in self._split(i, 0, r.n)]
        while pending:
            answers = self._post_all(requests, pending)
            follow_ups: list[_Post] = []
            for post, comps in zip(pending, answers):
                comps = comps[: post.n]
                if not comps:
                    raise TtevalError(f"server at {self.base_url} answered a request with no choices")
                got[post.index][post.offset] = comps
                if len(comps) < post.n:
                    with self._lock:
                        self._n_cap = len(comps) if self._n_cap is None else min(self._n_cap, len(comps))
                    follow_ups.extend(self._split(post.index, post.offset + len(comps), post.n - len(comps)))
            pending = follow_ups
        with self._lock:
            self.usage.calls += 1
        return [[c for offset in sorted(parts) for c in parts[offset]] for parts in got]

    def _split(self, index: int, offset: int, n: int) -> list[_Post]:
        """The posts that ask for samples offset..offset+n-1 of one request, each within the learned `n` cap."""
        step = max(1, self._n_cap or n)
        return [_Post(index, offset + k, min(step, n - k)) for k in range(0, n, step)]

    def _post_all(self, requests: Sequence[Request], posts: list[_Post]) -> list[list[Completion]]:
        """Send the posts concurrently (at most max_concurrency in flight); the first failure cancels the rest."""
        abort = threading.Event()  # set on the first failure: queued posts are cancelled, retrying ones give up
        workers = min(self.max_concurrency, len(posts))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tteval-http") as pool:
            futures = [pool.submit(self._post, requests[p.index], p, abort) for p in posts]
            try:
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in futures if f in done and f.exception() is not None]
                if failed:
                    raise failed[0].exception()  # type: ignore[misc]
                return [f.result() for f in futures]
            except BaseException:
                abort.set()
                for f in futures:
                    f.cancel()
                raise

    def _post(self, req: Request, post: _Post, abort: threading.Event) -> list[Completion]:
        """One HTTP request, parsed; counts its server-reported token usage."""
        path, body = request_body(self.model, req, post.n, post.offset)
        data = self._send(path, body, abort)
        usage = data.get("usage") or {}
        with self._lock:
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
        try:
            return parse_response(data, chat=req.messages is not None, top_logprobs=req.top_logprobs)
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise TtevalError(
                f"server at {self.base_url} answered {path} with a malformed completion ({type(exc).__name__}: {exc})"
            ) from None

    def _send(self, path: str, body: dict[str, Any], abort: threading.Event) -> dict[str, Any]:
        """POST with retries on 408/429/5xx and broken connections; other failures raise TtevalError."""
        url = self.base_url + path
        for attempt in range(self.max_retries + 1):
            if abort.is_set():
                raise _Aborted()
            with self._lock:
                self.usage.extra["http_requests"] += 1
            try:
                resp = self._client.post(url, content=json_request_bytes(body), headers=_JSON_HEADERS)
            except (httpx.ReadTimeout, httpx.WriteTimeout):
                raise TtevalError(
                    f"no answer from {url} within {self.timeout_s:g} s (not retried, as a retry resends the same"
                    " long generation); raise the timeout for long generations"
                ) from None
            except httpx.TransportError as exc:
                if attempt == self.max_retries:
                    raise TtevalError(
                        f"cannot reach OpenAI-compatible server at {self.base_url}: {_reason(exc)}"
                        f" (after {self.max_retries} retries)"
                    ) from None
                wait = backoff_delay(attempt, None, self.backoff_s)
            else:
                if resp.status_code < 400:
                    return response_json(resp, url)
                if resp.status_code not in RETRY_STATUS:
                    raise TtevalError(self._rejection(resp, path))
                if attempt == self.max_retries:
                    raise TtevalError(
                        f"server at {self.base_url} still answered {resp.status_code} after {self.max_retries}"
                        f" retries: {error_message(resp)}"
                    )
                wait = backoff_delay(attempt, resp.headers.get("retry-after"), self.backoff_s)
            with self._lock:
                self.usage.extra["retries"] += 1
            if abort.wait(wait):
                raise _Aborted()
        raise AssertionError("unreachable")  # pragma: no cover

    def _rejection(self, resp: httpx.Response, path: str) -> str:
        """The one-line message for a 4xx answer, with a hint for the common causes."""
        msg = f"server at {self.base_url} rejected {path} ({resp.status_code}): {error_message(resp)}"
        if resp.status_code in (401, 403):
            msg += " (set OPENAI_API_KEY or pass api_key)"
        elif resp.status_code == 404 and self.served_models and self.model not in self.served_models:
            msg += f" (model {self.model!r} is not served; the server has: {', '.join(self.served_models[:5])})"
        return msg


def _reason(exc: Exception) -> str:
    """An httpx exception as a short reason ('[Errno 111] Connection refused', 'ConnectTimeout')."""
    return str(exc) or type(exc).__name__


__all__ = ["OpenAIBackend"]
