"""Test-session setup: an isolated generation cache, so tests never read or write the user's cache; and the
shared fixtures (the embedded CPU model, the scripted OpenAI-compatible servers). Shared helper functions are in
helpers.py."""

import os
import tempfile

import pytest

os.environ.setdefault("TTEVAL_CACHE_DIR", tempfile.mkdtemp(prefix="tteval-test-cache-"))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): one test worker per CPU this process may use (its affinity, as the llama.cpp
    backend counts them), not the machine's count."""
    from tteval.backends.threads import default_threads

    return default_threads()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked `slow` first (else in collection order): spread over xdist workers in this order, the long
    ones start early and the last to start are short, so the workers finish together."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="module")
def cpu_backend():
    """The embedded CPU model on llama.cpp, loaded once per test module."""
    from tteval.backends.llamacpp import LlamaCppBackend

    b = LlamaCppBackend()
    yield b
    b.close()


@pytest.fixture(scope="session")
def cpu_run(tmp_path_factory):
    """cpu_run(*args) -> (the CompletedProcess, the run folder) of `tteval run *args` on the embedded CPU model, run
    once per session (per xdist worker) for each distinct args: for tests that only read the run, never change it.
    Tests sharing a run share an `xdist_group` too, so that xdist hands them to one worker."""
    from helpers import only_run_dir, tteval

    runs = {}

    def run(*args: str):
        if args not in runs:
            out = tmp_path_factory.mktemp("cpu-run")
            r = tteval("run", *args, "--out", out)
            assert r.returncode == 0, r.stderr
            runs[args] = r, only_run_dir(out)
        return runs[args]

    return run


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
