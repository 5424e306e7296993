"""The OpenAI-compatible wire format: request bodies out, completions (tokens, logprobs) and error lines back in.

A response body is JSON, but the model text inside it may be anything: invalid UTF-8 bytes are decoded to U+FFFD
and lone surrogates (`"\\ud800"`) are kept as they are, so such output is recorded and graded, never a failure.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tteval.backends.base import Completion, Request
from tteval.errors import TtevalError

__all__ = ["error_message", "json_request_bytes", "normalize_base_url", "parse_logprobs", "parse_response",
           "request_body", "response_json"]  # fmt: skip


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
