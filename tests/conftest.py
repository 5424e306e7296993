"""Test-session setup: an isolated generation cache, so tests never read or write the user's cache; the xdist
worker count and test order; and the shared fixtures (the embedded CPU model, real runs that several tests read, the
scripted OpenAI-compatible servers). Shared helper functions are in helpers.py."""

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TTEVAL_CACHE_DIR", tempfile.mkdtemp(prefix="tteval-test-cache-"))
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # Each xdist worker's BLAS gets its share of the CPUs (set before numpy loads; a worker's subprocesses inherit
    # it): OpenBLAS's idle threads spin-wait, and beside the other workers that spinning took the CPU from them
    # (tests/test_rpc.py: 5x the CPU time with two threads per worker on two CPUs).
    from tteval.backends.threads import default_threads

    share = default_threads() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(max(1, share)))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): two test workers per CPU this process may use (its affinity, as the llama.cpp
    backend counts them), not the machine's count. Two, because a test often waits (on a CLI process, a server, a
    time limit): quiet on 2 CPUs the suite took 303 s with 2 workers, 280 s with 4."""
    from tteval.backends.threads import default_threads

    return 2 * default_threads()


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
def session_dir(tmp_path_factory) -> Path:
    """A folder of this test session that every xdist worker shares (the workers' temporary folders' parent)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def cpu_run(session_dir):
    """cpu_run(*args) -> the run folder of `tteval run *args` on the embedded CPU model, made once per test session
    for each distinct args (by whichever xdist worker asks first; the others wait for it): for tests that only read
    the run, never change it."""
    from helpers import only_run_dir, tteval

    runs = session_dir / "cpu-runs"
    runs.mkdir(exist_ok=True)

    def run(*args: str) -> Path:
        key = hashlib.sha256(json.dumps(args).encode()).hexdigest()[:16]
        out, done = runs / key, runs / f"{key}.done"
        with open(runs / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            if not done.is_file():
                shutil.rmtree(out, ignore_errors=True)  # a run that failed in another worker
                r = tteval("run", *args, "--out", out)
                assert r.returncode == 0, r.stderr
                done.touch()
        return only_run_dir(out)

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


@pytest.fixture
def closes_openai_backends(monkeypatch):
    """Close every OpenAIBackend the test made: its httpx client keeps keep-alive sockets open, and one collected
    later, during another test, fails that test with a ResourceWarning."""
    from tteval.backends.openai import OpenAIBackend

    made, init = [], OpenAIBackend.__init__

    def recording_init(self, *args, **kwargs):
        made.append(self)
        init(self, *args, **kwargs)

    monkeypatch.setattr(OpenAIBackend, "__init__", recording_init)
    yield
    for backend in made:
        if hasattr(backend, "_client"):  # its constructor may have failed before the client existed
            backend.close()
