"""Test-session setup: an isolated generation cache, so tests never read or write the user's cache; and the
shared fixtures (the embedded CPU model, the scripted OpenAI-compatible servers). Shared helper functions are in
helpers.py."""

import os
import tempfile

import pytest

os.environ.setdefault("TTEVAL_CACHE_DIR", tempfile.mkdtemp(prefix="tteval-test-cache-"))


@pytest.fixture(scope="module")
def cpu_backend():
    """The embedded CPU model on llama.cpp, loaded once per test module."""
    from tteval.backends.llamacpp import LlamaCppBackend

    b = LlamaCppBackend()
    yield b
    b.close()


@pytest.fixture
def server():
    """start(answer, port=0) -> a scripted chat server on 127.0.0.1 (helpers.ChatServer: `answer(question, body)`,
    its url the /v1 root), stopped after the test."""
    from helpers import ChatServer

    yield from _serve(ChatServer)


@pytest.fixture
def scripted():
    """start(answer, **kw) -> a scripted server on 127.0.0.1 (helpers.ScriptedServer: `answer(call, path, body)`,
    its url the server's root), stopped after the test."""
    from helpers import ScriptedServer

    yield from _serve(ScriptedServer)


def _serve(kind):
    """Yield start(...) -> a new `kind` server; afterwards stop those still running."""
    servers = []

    def start(*args, **kw):
        servers.append(kind(*args, **kw))
        return servers[-1]

    yield start
    for s in servers:
        if not s.stopped:
            s.stop()


@pytest.fixture
def fake_backend(monkeypatch):
    """The `--backend` value of the in-memory fake (tests/fake_backend.py: scripted answers from the gold, no model),
    with tests/ put on PYTHONPATH so that tteval subprocesses can import it."""
    here = os.path.dirname(os.path.abspath(__file__))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    return "fake_backend:make"
