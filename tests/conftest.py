"""Test-session setup: an isolated generation cache, so tests never read or write the user's cache; and the
shared fixtures (the embedded CPU model, a scripted OpenAI-compatible server)."""

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
    """start(answer, port=0) -> a scripted OpenAI-compatible server on 127.0.0.1 (test_robustness.ChatServer),
    stopped after the test."""
    from test_robustness import ChatServer

    servers = []

    def start(answer, port: int = 0):
        servers.append(ChatServer(answer, port))
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
