"""The OpenAI-compatible backend against real servers on 127.0.0.1: llama.cpp's server and a flaky stdlib server."""

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from tteval.backends.base import Request
from tteval.backends.llamacpp import resolve_model_path
from tteval.backends.openai import OpenAIBackend
from tteval.errors import TtevalError

pytest.importorskip("uvicorn", reason="llama-cpp-python[server] is in the test extras")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", resolve_model_path("smollm2"), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--verbose", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(120):
        try:
            if httpx.get(url + "/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("llama.cpp server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def test_chat_and_completions_with_logprobs(server):
    b = OpenAIBackend(server, "smollm2", max_concurrency=2)
    chat, raw = b.generate(
        [
            Request(messages=(("user", "Say hello."),), n=2, max_tokens=12, seed=1, temperature=0.8),
            Request(prompt="The capital of France is", n=1, max_tokens=8, temperature=0),
        ]
    )
    assert len(chat) == 2 and len(raw) == 1  # n=2 filled up even though the server answers one choice at a time
    for c in chat + raw:
        assert c.text and c.num_tokens >= 1
    assert raw[0].logprob is not None and raw[0].logprob <= 0
    assert b.usage.completion_tokens > 0 and b.usage.calls == 1


def test_unreachable_server_fails_fast():
    t0 = time.time()
    with pytest.raises(TtevalError, match="cannot reach"):
        OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "m")
    assert time.time() - t0 < 10


class Flaky(BaseHTTPRequestHandler):
    calls = 0

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._send(200, {"data": []})

    def do_POST(self):
        Flaky.calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if Flaky.calls <= 2:
            self._send(503, {"error": "busy"}, retry_after="0")
        elif "bad" in self.path:
            self._send(400, {"error": "bad request"})
        else:
            self._send(200, {"choices": [{"text": "ok", "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 1}})  # fmt: skip

    def _send(self, code, body, retry_after=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(data)


def test_retries_on_503_then_succeeds():
    srv = HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        b = OpenAIBackend(f"http://127.0.0.1:{srv.server_port}/v1", "m")
        (out,) = b.generate([Request(prompt="x", n=1, max_tokens=1)])
        assert out[0].text == "ok" and Flaky.calls == 3
    finally:
        srv.shutdown()
