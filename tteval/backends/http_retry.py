"""HTTP retry policy of the openai backend: which answers are retried, exponential backoff with jitter, Retry-After,
and the TTEVAL_HTTP_* environment overrides."""

from __future__ import annotations

import email.utils
import os
import random
import time

from tteval.errors import TtevalError

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_MAX_RETRIES = 5
DEFAULT_BACKOFF_S = 0.5
MAX_BACKOFF_S = 60.0  # no single wait between retries is longer than this, whatever Retry-After says


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


def env_number(name: str, default: float, integer: bool = False) -> float:
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
