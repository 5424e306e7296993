"""Backends from outside tteval: `--backend package.module:factory` names a callable that takes the run's config and
returns a Backend (`tteval/backends/base.py`), e.g. a client for an in-house server, or an in-memory fake in tests.

The factory owns its model; the `--model-args` and `--gen-kwargs` keys it takes are those it lists in its own
`model_args` / `gen_kwargs` attributes (none unless it lists them), so a typo is one line before anything runs. The
run id hashes the `module:factory` string like a built-in backend's name. The module must be importable (installed,
or on PYTHONPATH)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from tteval.backends.base import Backend
from tteval.errors import TtevalError

PROTOCOL = ("generate", "apply_chat_template", "close", "name", "model", "usage")


def is_plugin(name: str) -> bool:
    """Whether a --backend value is a `module:factory` plug-in rather than a built-in backend's name."""
    return ":" in name


def load_factory(spec: str) -> Callable[[Any], Backend]:
    """The factory a `module:factory` spec names; a one-line error when it cannot be imported or called."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise TtevalError(f"--backend {spec!r}: a plug-in is MODULE:FACTORY, e.g. mypkg.backend:make")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise TtevalError(f"--backend {spec!r}: cannot import {module} ({exc})") from None
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise TtevalError(f"--backend {spec!r}: {module} has no callable {attr}")
    return factory


def make_plugin_backend(spec: str, config: Any) -> Backend:
    """Build the plug-in backend for `config`, checking that it has the Backend protocol's members."""
    backend = load_factory(spec)(config)
    missing = [m for m in PROTOCOL if not hasattr(backend, m)]
    if missing:
        raise TtevalError(f"--backend {spec!r}: the factory's object is not a Backend (no {', '.join(missing)})")
    return backend


def option_keys(spec: str, what: str) -> set[str]:
    """The `--model-args` (what="model_args") or `--gen-kwargs` (what="gen_kwargs") keys a plug-in's factory takes."""
    return set(getattr(load_factory(spec), what, None) or ())
