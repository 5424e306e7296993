"""Test-session setup: an isolated generation cache, so tests never read or write the user's cache; and the
embedded CPU model as a shared fixture."""

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
