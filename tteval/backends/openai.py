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

A response body is JSON, but the model text inside it may be anything: invalid UTF-8 bytes are decoded to U+FFFD
and lone surrogates (`"\\ud800"`) are kept as they are, so such output is recorded and graded, never a failure.

Logprobs are whatever the server reports for the sampled tokens (vLLM and llama.cpp: the model's raw
distribution); `Completion.logprob` is their sum.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import httpx

from tteval.backends.base import Completion, Request, Usage, validate_request
from tteval.errors import TtevalError

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_MAX_RETRIES = 5
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 60.0  # no single wait between retries is longer than this, whatever Retry-After says
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
            max_retries = int(_env_number("TTEVAL_HTTP_RETRIES", DEFAULT_MAX_RETRIES, integer=True))
        if backoff_s is None:
            backoff_s = _env_number("TTEVAL_HTTP_BACKOFF_S", DEFAULT_BACKOFF_S)
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


# ------------------------------------------------------------------------------------------- pure helpers
def normalize_base_url(base_url: str) -> str:
    """'http://host:8000', 'http://host:8000/' and 'http://host:8000/v1' all mean the API root ending in /v1."""
    url = base_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise TtevalError(f"base_url must start with http:// or https://, got {base_url!r}")
    return url if url.endswith("/v1") else url + "/v1"


def request_body(model: str, req: Request, n: int, offset: int = 0) -> tuple[str, dict[str, Any]]:
    """The endpoint path and JSON body asking for `n` samples of `req`, the first being sample number `offset`."""
    body: dict[str, Any] = {
        "model": model, "n": n, "temperature": req.temperature, "top_p": req.top_p, "max_tokens": req.max_tokens,
    }  # fmt: skip
    body.update(dict(req.extra))  # --gen-kwargs, checked against the API's fields beforehand
    if req.stop:
        body["stop"] = list(req.stop)
    if req.seed is not None:
        body["seed"] = req.seed + offset
    want = req.logprobs or req.top_logprobs > 0
    if req.messages is not None:
        body["messages"] = [{"role": role, "content": content} for role, content in req.messages]
        if want:
            body["logprobs"] = True
            body["top_logprobs"] = req.top_logprobs
        return "/chat/completions", body
    body["prompt"] = req.prompt
    if want:
        body["logprobs"] = req.top_logprobs
    return "/completions", body


_JSON_HEADERS = {"Content-Type": "application/json"}
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_request_bytes(body: dict[str, Any]) -> bytes:
    """A request body as UTF-8 JSON; lone surrogates (from a model's invalid output fed back) become U+FFFD."""
    text = json.dumps(body, ensure_ascii=False, allow_nan=False)
    return _LONE_SURROGATE.sub("\ufffd", text).encode("utf-8")


def response_json(resp: httpx.Response, url: str) -> dict[str, Any]:
    """A successful response's JSON object; model text with invalid UTF-8 bytes is decoded with U+FFFD for them."""
    raw = resp.content
    try:
        try:
            data = json.loads(raw, strict=False)  # strict=False: raw control characters inside strings are kept
        except UnicodeDecodeError:
            data = json.loads(raw.decode("utf-8", "replace"), strict=False)
    except (ValueError, RecursionError):
        text = raw[:200].decode("utf-8", "replace")
        raise TtevalError(f"server at {url} answered with non-JSON ({resp.status_code}): {text!r}") from None
    if not isinstance(data, dict):
        raise TtevalError(f"server at {url} answered with an unexpected body: {str(data)[:200]}")
    return data


def parse_response(data: dict[str, Any], chat: bool, top_logprobs: int = 0) -> list[Completion]:
    """Completions from a (chat) completions response body, in choice order, with tokens and logprobs if present."""
    usage = data.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    choices = sorted(data.get("choices") or [], key=lambda ch: int(ch.get("index") or 0))
    total_completion = int(usage.get("completion_tokens") or 0)
    out = []
    for i, ch in enumerate(choices):
        text = _choice_text((ch.get("message") or {}).get("content") if chat else ch.get("text"))
        tokens, lps, tops = parse_logprobs(ch.get("logprobs"), chat)
        if tokens is not None:
            num_tokens = len(tokens)
        else:  # no logprobs: split the response's completion tokens over its choices (exact for one choice)
            num_tokens = total_completion // len(choices) + (1 if i < total_completion % len(choices) else 0)
        stop_reason = ch.get("stop_reason")
        out.append(
            Completion(
                text=text,
                num_tokens=num_tokens,
                finish_reason="length" if ch.get("finish_reason") == "length" else "stop",
                logprob=float(sum(lps)) if lps is not None else None,
                token_logprobs=lps,
                tokens=tokens,
                top_logprobs=[_top(t, top_logprobs) for t in tops] if tops is not None and top_logprobs > 0 else None,
                prompt_tokens=prompt_tokens,
                stop_reason=stop_reason if isinstance(stop_reason, str) else None,
            )
        )
    return out


def _choice_text(content: Any) -> str:
    """A choice's text: a string as is, a list of content parts joined, None as '', anything else as JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return "".join(str(p.get("text") or "") for p in content)
    return json.dumps(content)


def parse_logprobs(
    lp: dict[str, Any] | None, chat: bool
) -> tuple[list[str] | None, list[float] | None, list[dict[str, float]] | None]:
    """(tokens, their logprobs, top alternatives per position) from either logprobs format; None where absent.

    Logprobs are None as a whole when any position lacks one, rather than a sum over fewer tokens."""
    if not lp:
        return None, None, None
    if chat:
        content = lp.get("content")
        if content is None:
            return None, None, None
        tokens = [str(c.get("token", "")) for c in content]
        raw = [c.get("logprob") for c in content]
        tops = [{str(t.get("token", "")): float(t["logprob"]) for t in c.get("top_logprobs") or []} for c in content]
    else:
        tokens = [str(t) for t in lp.get("tokens") or []]
        raw = list(lp.get("token_logprobs") or [])
        tops = [{str(k): float(v) for k, v in (t or {}).items()} for t in lp.get("top_logprobs") or []]
    lps = None if len(raw) != len(tokens) or any(x is None for x in raw) else [float(x) for x in raw]
    return tokens, lps, tops if len(tops) == len(tokens) else None


def _top(alternatives: dict[str, float], k: int) -> dict[str, float]:
    """The k most likely alternatives of one position."""
    return dict(sorted(alternatives.items(), key=lambda kv: -kv[1])[:k])


def backoff_delay(
    attempt: int, retry_after: str | None, base_s: float = 0.5, rng: random.Random | None = None
) -> float:
    """Seconds to wait before retry number attempt+1: base * 2^attempt with jitter, or at least Retry-After."""
    rng = rng or random
    if retry_after is not None:
        asked = parse_retry_after(retry_after)
        if asked is not None:
            return min(MAX_BACKOFF_S, asked * (1.0 + 0.2 * rng.random()))
    return min(MAX_BACKOFF_S, base_s * 2**attempt * (0.5 + rng.random()))


def parse_retry_after(value: str) -> float | None:
    """A Retry-After header (delay seconds or an HTTP date) as seconds from now; None if unparseable."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(resp: httpx.Response) -> str:
    """The server's error message, on one line: OpenAI's {"error": {"message"}}, FastAPI's {"detail"}, or the text."""
    try:
        data = resp.json()
    except (ValueError, RecursionError):
        data = None
    msg: Any = None
    if isinstance(data, dict):
        err = data.get("error")
        msg = err.get("message") if isinstance(err, dict) else err
        if msg is None:
            detail = data.get("detail", data.get("message"))
            if isinstance(detail, list):  # pydantic validation errors
                detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
            msg = detail
    if msg is None:
        msg = resp.text or resp.reason_phrase
    line = " ".join(str(msg).split())
    return line[:500] + ("..." if len(line) > 500 else "")


def load_chat_template(template: str | None) -> str | None:
    """A jinja chat template given inline, or the path of a file holding one (as --chat-template takes it)."""
    if template is None:
        return None
    if "{" not in template:
        path = Path(template).expanduser()
        if not path.is_file():
            raise TtevalError(f"chat template file not found: {template}")
        template = path.read_text(encoding="utf-8")
    return template


def render_chat_template(template: str, messages: Sequence[tuple[str, str]]) -> str:
    """Render a Hugging Face style jinja chat template (sandboxed) with the generation prompt appended.

    bos_token and eos_token render empty: the server's tokenizer adds BOS to a /v1/completions prompt itself."""
    import jinja2
    import jinja2.sandbox

    def raise_exception(message: str) -> None:
        raise TtevalError(f"the chat template rejected the messages: {message}")

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(
            messages=[{"role": role, "content": content} for role, content in messages],
            add_generation_prompt=True, bos_token="", eos_token="",
        )  # fmt: skip
    except jinja2.TemplateError as exc:
        raise TtevalError(f"the chat template could not be rendered: {exc}") from None


def _env_number(name: str, default: float, integer: bool = False) -> float:
    """A non-negative number from environment variable `name`, else `default`; a bad value is a one-line error."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = -1
    if not value >= 0:
        kind = "a whole number" if integer else "a number"
        raise TtevalError(f"{name} must be {kind} >= 0, got {raw!r}")
    return value


def _reason(exc: Exception) -> str:
    """An httpx exception as a short reason ('[Errno 111] Connection refused', 'ConnectTimeout')."""
    return str(exc) or type(exc).__name__


__all__ = ["OpenAIBackend", "backoff_delay", "error_message", "parse_response", "request_body"]
