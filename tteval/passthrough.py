"""`--model-args` and `--gen-kwargs` (lm-eval's spelling): backend options passed through as key=value pairs.

Keys are checked against what the backend takes before anything starts, so a typo is one line, not an option
silently ignored: each backend's spec (`tteval.backends.registry`) says which keys it takes, or why none.
"""

from __future__ import annotations

from typing import Any

from tteval.backends.registry import backend_spec
from tteval.errors import TtevalError

# set by tteval's own options: passing them again would make two sources of one setting
OWN_MODEL_ARGS = {"model": "--model", "seed": "--seed", "tensor_parallel_size": "--tensor-parallel"}
OWN_GEN_KWARGS = {"n": "-n", "temperature": "--temperature", "top_p": "--top-p", "max_tokens": "--max-tokens",
                  "seed": "--seed", "logprobs": "(always on)", "prompt_logprobs": "(not used)"}  # fmt: skip


def parse_kv(text: str | None, flag: str) -> dict[str, Any] | None:
    """'a=1,b=true,c=x' -> {'a': 1, 'b': True, 'c': 'x'} as lm-eval reads --model-args; None when not given."""
    if text is None or not text.strip():
        return None
    out: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise TtevalError(f"{flag} must be key=value pairs separated by commas, got {item.strip()!r}")
        if key in out:
            raise TtevalError(f"{flag} gives '{key}' twice")
        out[key] = _value(raw.strip())
    return out


def _value(raw: str) -> Any:
    """A value as typed: true/false, none/null, an int, a float, else the string itself."""
    low = raw.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


# flag -> (keys tteval sets from its own options, the BackendSpec attribute of the keys taken, what they are)
PASSTHROUGH = {"--model-args": (OWN_MODEL_ARGS, "model_args", "engine arguments"),
               "--gen-kwargs": (OWN_GEN_KWARGS, "gen_kwargs", "sampling parameters")}  # fmt: skip


def check_passthrough(flag: str, backend: str, values: dict[str, Any] | None) -> None:
    """Refuse in one line a `--model-args` / `--gen-kwargs` key the backend does not take (or one tteval sets from
    its own options)."""
    if not values:
        return
    own_keys, attribute, what = PASSTHROUGH[flag]
    own = sorted(k for k in values if k in own_keys)
    if own:
        raise TtevalError(f"{flag}: {own[0]} is set by {own_keys[own[0]]}")
    known = getattr(backend_spec(backend), attribute)
    if isinstance(known, str):  # the backend takes none: why
        raise TtevalError(f"{flag}: {known}")
    unknown = sorted(set(values) - known())
    if unknown:
        raise TtevalError(f"{flag}: not {backend} {what}: {', '.join(unknown)}")
