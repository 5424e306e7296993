"""Bounds on every numeric option: a value outside its range is a one-line error before anything runs.

Each bound is what the option can mean, not a tuning limit: a pool of at most a million samples a problem, a
generation of at most 2^20 tokens, a finite temperature no hotter than 10. The same table checks the command line,
a sweep's grid and a `run.json` read back by `--resume`, so a value no command could take cannot enter by a file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from tteval.errors import TtevalError

MAX_SAMPLES = 1_000_000  # samples per problem (-n, PassUntil's cap); also bounds a sample_index read from a file
MAX_TOKENS = 1 << 20  # tokens of one generation (the longest contexts served today)


@dataclass(frozen=True)
class Bound:
    """The allowed range of one option: whole numbers in [lo, hi], or finite reals in [lo, hi] ((lo, hi] if open)."""

    flag: str
    lo: float
    hi: float
    integer: bool = True
    lo_open: bool = False

    def interval(self) -> str:
        return f"{'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}]"


# RunConfig field -> its bound (None values are "not given" and skip the check)
RUN_BOUNDS: dict[str, Bound] = {
    "n": Bound("-n", 1, MAX_SAMPLES),
    "limit": Bound("--limit", 1, 100_000_000),
    "max_tokens": Bound("--max-tokens", 1, MAX_TOKENS),
    "num_fewshot": Bound("--num-fewshot", 0, 10_000),
    "temperature": Bound("--temperature", 0, 10, integer=False),
    "top_p": Bound("--top-p", 0, 1, integer=False, lo_open=True),
    "seed": Bound("--seed", 0, 2**63 - 1),
    "batch_problems": Bound("--batch-problems", 1, 1_000_000),
    "verifications": Bound("--verifications", 1, 1024),
    "verifier_max_tokens": Bound("--verifier-max-tokens", 1, MAX_TOKENS),
    "pf_step_tokens": Bound("--pf-step-tokens", 1, MAX_TOKENS),
    "pf_max_steps": Bound("--pf-max-steps", 1, 100_000),
    "pf_softmax_temp": Bound("--pf-softmax-temp", 0, 1e6, integer=False, lo_open=True),
    "pf_iterations": Bound("--pf-iterations", 1, 1000),
    "until_successes": Bound("--until-successes", 1, MAX_SAMPLES),
    "round_size": Bound("--round-size", 1, MAX_SAMPLES),
    "workers": Bound("--grader-processes", 1, 256),
    "ray_actors": Bound("--ray-actors", 1, 4096),
    "tensor_parallel": Bound("--tensor-parallel", 1, 1024),
    "max_concurrency": Bound("--max-concurrency", 1, 4096),
    "request_timeout": Bound("--timeout", 0, 7 * 86400, integer=False, lo_open=True),
}
SCORE_WORKERS = RUN_BOUNDS["workers"]


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def check(bound: Bound, value: Any) -> None:
    """Raise a one-line TtevalError unless `value` is a number (whole, if asked) inside `bound`."""
    flag = bound.flag
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TtevalError(f"{flag} must be a number, got {value!r}")
    if bound.integer and not isinstance(value, int):
        raise TtevalError(f"{flag} must be a whole number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise TtevalError(f"{flag} must be a finite number in {bound.interval()}, got {value}")
    below = value < bound.lo or (bound.lo_open and value == bound.lo)
    if bound.lo_open and (below or value > bound.hi):  # a positive real: say its interval
        raise TtevalError(f"{flag} must be in {bound.interval()}, got {value}")
    if below:
        word = "at least" if bound.integer else ">="
        raise TtevalError(f"{flag} must be {word} {_num(bound.lo)}, got {value}")
    if value > bound.hi:
        raise TtevalError(f"{flag} must be at most {_num(bound.hi)}, got {value}")


def check_fields(obj: Any, bounds: dict[str, Bound] = RUN_BOUNDS) -> None:
    """Check every bounded attribute of `obj` (a RunConfig) that is set."""
    for name, bound in bounds.items():
        value = getattr(obj, name, None)
        if value is not None:
            check(bound, value)


def env_seconds(name: str, default: float) -> float:
    """A positive, finite number of seconds from environment variable `name`, else `default`; one line if bad."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise TtevalError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value
