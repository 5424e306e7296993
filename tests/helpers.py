"""Helpers shared by the test modules: `tteval` as a subprocess, one-line error checks, run-folder readers, and the
scripted OpenAI-compatible server (a real stdlib HTTP server on 127.0.0.1, in a thread of the test).

The `server` and `scripted` fixtures in conftest.py start and stop these servers; the GSM8K problems and the
`healthy` answer are what most end-to-end tests ask and are answered.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

import warm_cli
from tteval.tasks import load_problems, load_task

REPO = Path(__file__).resolve().parents[1]
TTEVAL = [sys.executable, "-m", "tteval.cli"]


def tteval(*args: Any, cwd: Path | str | None = None, timeout: float = 600, env: dict | None = None,
           columns: int = 200, fresh: bool = False) -> subprocess.CompletedProcess:
    """Run the `tteval` CLI from this checkout as a subprocess: text output captured, a wide terminal, and
    TTEVAL_DEBUG unset (errors are one line) unless `env` sets it. The process is forked from a server that has the
    third-party libraries imported (tests/warm_cli.py); `fresh=True` starts a new interpreter instead."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    full_env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": path}
    full_env.pop("TTEVAL_DEBUG", None)
    full_env.update(env or {})
    cmd = [*TTEVAL, *map(str, args)]
    if not fresh and warm_cli.enabled():
        return warm_cli.run(cmd[len(TTEVAL):], cmd, None if cwd is None else str(cwd), full_env, timeout)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=full_env)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.lstrip().startswith(("error:", "internal error:"))]


def assert_one_line_error(r: subprocess.CompletedProcess, message: str) -> str:
    """A non-zero exit whose stderr is exactly one line, an `error:` naming the problem; no traceback."""
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: "), r.stderr
    assert message in lines[0], r.stderr
    return lines[0]


def run_dirs(out: Path) -> list[Path]:
    return sorted(d for d in out.iterdir() if d.is_dir()) if out.is_dir() else []


def only_run_dir(out: Path) -> Path:
    (run,) = run_dirs(out)
    return run


def read_samples(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_bytes().splitlines()]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file below `root` (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ the scripted server
def json_body(payload: Any) -> bytes:
    return json.dumps(payload).encode()  # ensure_ascii: a lone surrogate travels as the JSON escape \ud800


def chat_completion(texts: list[str], completion_tokens: int = 3) -> bytes:
    return json_body(
        {
            "object": "chat.completion",
            "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                        for i, t in enumerate(texts)],  # fmt: skip
            "usage": {"prompt_tokens": 11, "completion_tokens": completion_tokens * len(texts)},
        }
    )


class ScriptedServer:
    """A real OpenAI-compatible HTTP server on 127.0.0.1: GET (/v1/models) lists `model`; every POST is answered by
    `answer(call_number, path, body)` -> (status, payload, headers), the payload raw bytes or JSON-encoded, or
    None to drop the connection unanswered. `url` is the server's root.

    `bodies` lists every POST body and `asked` the last chat message of each (retries included), in arrival
    order; `max_inflight` is the most POSTs answered at once."""

    def __init__(self, answer: Callable[[int, str, dict], tuple[int, Any, dict] | None], port: int = 0,
                 get_status: int = 200, keep_alive: bool = True, model: str = "scripted"):  # fmt: skip
        self.answer, self.get_status = answer, get_status
        self.bodies: list[dict] = []
        self.asked: list[str] = []
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()
        self.stopped = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send(outer.get_status, {"object": "list", "data": [{"id": model, "object": "model"}]}, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.bodies.append(body)
                    if isinstance(body.get("messages"), list) and body["messages"]:
                        outer.asked.append(body["messages"][-1].get("content"))
                    call = len(outer.bodies)
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                try:
                    reply = outer.reply(call, self.path, body)
                finally:
                    with outer.lock:
                        outer.inflight -= 1
                if reply is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send(*reply)

            def send(self, status: int, payload: Any, headers: dict):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def reply(self, call: int, path: str, body: dict) -> tuple[int, Any, dict] | None:
        """The answer to POST number `call` (`answer`, which a test may swap while the server runs)."""
        return self.answer(call, path, body)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.stopped = True


class ChatServer(ScriptedServer):
    """The scripted server seen as a chat endpoint: `answer(question, body)`, the question being the last chat
    message; `url` is its /v1 root, and its one model is "x"."""

    def __init__(self, answer: Callable[[str, dict], tuple[int, bytes, dict] | None], port: int = 0):
        super().__init__(answer, port, model="x")  # type: ignore[arg-type]  # called by `reply` below
        self.url += "/v1"

    def reply(self, call: int, path: str, body: dict) -> tuple[int, Any, dict] | None:
        return self.answer(body["messages"][-1]["content"], body)


# ------------------------------------------------------------------------ the problems the scripted runs ask
GSM8K = load_task("gsm8k")
PROBLEMS = load_problems(GSM8K, limit=8)
QUESTION_INDEX = {GSM8K.messages(p)[-1][1]: i for i, p in enumerate(PROBLEMS)}
GOLD = [GSM8K.gold(p) for p in PROBLEMS]


def healthy(question: str, body: dict) -> tuple[int, bytes, dict]:
    """n seeded answers; sample 0 of every problem is correct, the others are not."""
    i = QUESTION_INDEX[question]
    texts = [f"seed {body['seed'] + j}: the answer is \\boxed{{{GOLD[i] if j == 0 else -1}}}" for j in range(body["n"])]
    return 200, chat_completion(texts), {}


def run_args(url: str, out: Path, *more: str) -> list[str]:
    return ["run", "--backend", "openai", "--base-url", url, "--model", "x", "--task", "gsm8k", "--out", str(out),
            "--no-cache", *more]  # fmt: skip


# A tiny local math task: its spec (tasks/t.yaml) and data (tasks/d.jsonl).
TINY_DATA = b'{"q": "What is 2+3?", "a": "5"}\n{"q": "What is 7*6?", "a": "42"}\n'
SPEC = "name: t\nkind: math\nsource: {local: d.jsonl}\nprompt: {user: '{q}'}\nmath: {gold: '{a}'}\n"


# ---------------------------------------------------- real CPU-model runs that more than one test reads (`cpu_run`)
SMALL_RUN = ("--task", "gsm8k", "--limit", "2", "--max-tokens", "12", "--no-cache", "--seed", "5")
GENRM_RUN = ("-n", "2", "--verifier", "genrm", "-V", "2", "--verifier-max-tokens", "12")
PF_RUN = ("-n", "2", "--strategy", "particle-filter", "--pf-step-tokens", "6", "--pf-max-steps", "2",
          "--verifier-max-tokens", "6")  # fmt: skip


def small_run_args(batch: int, extra: tuple[str, ...]) -> tuple[str, ...]:
    """`tteval run` arguments: 2 GSM8K problems, 12 tokens, seed 5, `--batch-problems batch`, then `extra`."""
    return (*SMALL_RUN, "--batch-problems", str(batch), *extra)
