"""Reliability end to end: a backend failing mid-run, model output of any size or content, and bad input.

Everything runs for real: `tteval` as a subprocess, against an OpenAI-compatible stdlib HTTP server on 127.0.0.1
(in a thread of the test) whose answers each test scripts: correct chat completions, then HTTP 500s, 400s or
dropped connections; or completions of megabytes, control characters, invalid UTF-8 and LaTeX that makes sympy
hang. No llama.cpp model is loaded here, so every test takes seconds.
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

import pytest

from tteval.tasks import load_problems, load_task

TTEVAL = [sys.executable, "-m", "tteval.cli"]


def tteval(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("TTEVAL_DEBUG", None)
    return subprocess.run([*TTEVAL, *args], capture_output=True, text=True, timeout=timeout, env=full_env)


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


class ChatServer:
    """A real OpenAI-compatible HTTP server on 127.0.0.1: GET /v1/models, and POST /v1/chat/completions answered
    by `answer(question, body)` -> (status, raw bytes, headers), or None to drop the connection unanswered.

    `asked` lists the user message of every POST in arrival order (retries included)."""

    def __init__(self, answer: Callable[[str, dict], Any], port: int = 0):
        self.answer = answer
        self.asked: list[str] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self.reply(200, json_body({"object": "list", "data": [{"id": "x", "object": "model"}]}), {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                question = body["messages"][-1]["content"]
                with outer.lock:
                    outer.asked.append(question)
                answer = outer.answer(question, body)
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.reply(*answer)

            def reply(self, status: int, data: bytes, headers: dict):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    stopped = False

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.stopped = True


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


# ------------------------------------------------------------------------------ 1. a backend failing mid-run
FAILURES = {
    # mode: (the failing answer, env for the run, words the error line must hold, HTTP requests the failure costs)
    "500": (lambda: (500, json_body({"error": {"message": "CUDA out of memory"}}), {"Retry-After": "0"}),
            {"TTEVAL_HTTP_RETRIES": "2"}, "still answered 500 after 2 retries: CUDA out of memory", 3),
    "400": (lambda: (400, json_body({"error": {"message": "prompt is too long"}}), {}),
            {}, "rejected /chat/completions (400): prompt is too long", 1),
    "dropped": (lambda: None, {"TTEVAL_HTTP_RETRIES": "1", "TTEVAL_HTTP_BACKOFF_S": "0.01"},
                "cannot reach OpenAI-compatible server", 2),
    "not-json": (lambda: (200, b"<html>502 Bad Gateway</html>", {"Content-Type": "text/html"}),
                 {}, "answered with non-JSON", 1),
}  # fmt: skip


@pytest.mark.parametrize("mode", sorted(FAILURES))
def test_backend_error_mid_run_is_one_line_keeps_samples_and_resumes(server, tmp_path, mode):
    fail, env, message, failing_requests = FAILURES[mode]
    state = {"ok_left": 3}

    def answer(question, body):
        with state_lock:
            if state["ok_left"] == 0:
                return fail()
            state["ok_left"] -= 1
        return healthy(question, body)

    state_lock = threading.Lock()
    srv = server(answer)
    args = run_args(srv.url, tmp_path, "--limit", "6", "-n", "2", "--batch-problems", "1")
    r = tteval(*args, env=env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    (line,) = error_lines(r.stderr)
    assert line.startswith("error: ") and message in line, r.stderr
    assert "6 samples saved" in r.stderr and "resume with: tteval run --resume" in r.stderr
    run = only_run_dir(tmp_path)
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "failed" and message in meta["error"]
    assert not (run / "metrics.json").exists()
    first = read_samples(run)
    # the three problems answered before the failure are on disk, whole, exactly as the server sent them
    assert [(s["task_id"], s["sample_index"]) for s in first] == [(p.task_id, j) for p in PROBLEMS[:3] for j in range(2)]
    assert [s["correct"] for s in first] == [True, False] * 3
    assert all(s["completion"].startswith("seed ") for s in first)
    assert len(srv.asked) == 3 + failing_requests  # the 4th problem's request and its retries, then it stopped
    kept = (run / "samples.jsonl").read_bytes()

    state["ok_left"] = 10**9  # the server recovers; the same command resumes where the run stopped
    asked_before = len(srv.asked)
    r = tteval(*args, env=env)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "3/6 problems already done" in r.stderr
    again = srv.asked[asked_before:]
    assert sorted(QUESTION_INDEX[q] for q in again) == [3, 4, 5]  # finished problems are not asked again
    samples = read_samples(run)
    assert (run / "samples.jsonl").read_bytes().startswith(kept)
    keys = [(s["task_id"], s["sample_index"]) for s in samples]
    assert len(keys) == 6 * 2 and len(set(keys)) == len(keys)
    assert set(keys) == {(p.task_id, j) for p in PROBLEMS[:6] for j in range(2)}
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete" and "error" not in meta
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_problems"] == 6
    assert next(p for p in metrics["curves"]["pass@k"] if p["k"] == 1)["value"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------- 2. model output of any content
def raw_json_string(raw: bytes) -> str:
    """What a JSON string literal of raw (possibly invalid UTF-8) bytes should be recorded as."""
    return json.loads('"' + raw.decode("utf-8", "replace") + '"', strict=False)


HANG = ["\\boxed{9^{9^{9^{9^{9}}}}}", "\\boxed{" + "\\frac{1}{" * 50 + "2" + "}" * 50 + "}"]  # sympy never returns
FACTORIAL = "The answer is \\boxed{(10^{10})!}"  # a ten-billion factorial
RAW_BAD = b"\xff\xfe bad \xc3( bytes \x01\t \\\\boxed{%s}"  # JSON text, but not UTF-8 (and a raw control char)
RAW_CUT = b"a character cut short: \xe2\x82"


def any_content_texts(i: int) -> list[str] | bytes:
    """Problem i's two completions: a correct answer wrapped in hostile content, and a hostile non-answer."""
    gold = GOLD[i]
    if i == 0:  # megabytes
        return ["x" * 3_000_000 + f" so the answer is \\boxed{{{gold}}}", "1" * 1_500_000]
    if i == 1:  # control characters and ANSI escapes
        return [f"\x00\x1b[31mred\x1b[0m\r\x7f\x08\x0c\x1b[2J answer: \\boxed{{{gold}}}\x00",
                "\x1b]0;title\x07\u2028\u0085\ufeff\x00 #### \x1b[0m"]  # fmt: skip
    if i == 2:  # lone surrogates, sent as the JSON escapes \ud800 and \udfff
        return [f"\ud800 lone \udfff surrogates \\boxed{{{gold}}}", "\\boxed{\ud83d}"]
    if i == 3:  # raw bytes that are not UTF-8 in the HTTP body
        return b"".join(
            [b'{"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "',
             RAW_BAD % gold.encode(), b'"}}, {"index": 1, "finish_reason": "stop", "message": {"content": "',
             RAW_CUT, b'"}}], "usage": {"prompt_tokens": 5, "completion_tokens": 6}}']  # fmt: skip
        )
    if i == 4:  # LaTeX that makes sympy hang: a power tower and deep nesting
        return HANG
    return [FACTORIAL, FACTORIAL]


def expected_texts(i: int) -> list[str]:
    texts = any_content_texts(i)
    return [raw_json_string(RAW_BAD % GOLD[i].encode()), raw_json_string(RAW_CUT)] if isinstance(texts, bytes) else texts


def test_model_output_of_any_content_is_recorded_judged_and_reported(server, tmp_path):
    def answer(question, body):
        texts = any_content_texts(QUESTION_INDEX[question])
        return 200, texts if isinstance(texts, bytes) else chat_completion(texts), {}

    srv = server(answer)
    out = tmp_path / "runs"
    env = {"TTEVAL_MATH_TIMEOUT_S": "2"}  # a hanging check is killed after 2 s (5 s by default)
    r = tteval(*run_args(srv.url, out, "--limit", "6", "-n", "2"), env=env)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    run = only_run_dir(out)
    raw = (run / "samples.jsonl").read_bytes()
    raw.decode("ascii")  # lone surrogates and control characters are stored as JSON escapes: any reader copes
    samples = read_samples(run)
    assert [(s["task_id"], s["sample_index"]) for s in samples] == [(p.task_id, j) for p in PROBLEMS[:6] for j in range(2)]
    for i in range(6):
        got = samples[2 * i : 2 * i + 2]
        assert [s["completion"] for s in got] == expected_texts(i), f"problem {i}"
        assert all(isinstance(s["grading"], dict) and s["grading"].get("status") for s in got)
        if i < 4:  # the correct answer inside the hostile text is still found and graded correct
            assert [s["correct"] for s in got] == [True, False], (i, [s["grading"] for s in got])
            assert got[0]["answer"] == GOLD[i]
    assert samples[1]["grading"]["status"] == "too_long"  # a 1.5-million-digit number is not sent to sympy
    for s in samples[8:]:
        assert s["correct"] is False and s["grading"]["status"] in ("timeout", "error"), s["grading"]
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_problems"] == 6
    assert next(p for p in metrics["curves"]["pass@k"] if p["k"] == 1)["value"] == pytest.approx(4 / 12)

    board = tteval("leaderboard", str(out), "--format", "json")
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)
    assert rows and all(row["run_id"] == run.name for row in rows)
    board = tteval("leaderboard", str(out))
    assert board.returncode == 0 and "gsm8k" in board.stdout, board.stderr
    html = tmp_path / "report.html"
    rep = tteval("report", str(out), "--out", str(html), "--max-chars", "500")
    assert rep.returncode == 0, rep.stderr
    page = html.read_bytes().decode("utf-8")  # valid UTF-8, whatever the model wrote
    assert "\x00" not in page and "\x1b" not in page
    assert len(page) < 1_000_000  # megabyte completions are cut to --max-chars
    assert "lone" in page and "bad" in page
    assert "\\x1b[31mred" in page  # control characters are shown, escaped


# --------------------------------------------------------------------------- 3. bad task specs and data files
TINY_DATA = b'{"q": "What is 2+3?", "a": "5"}\n{"q": "What is 7*6?", "a": "42"}\n'
SPEC = "name: t\nkind: math\nsource: {local: d.jsonl}\nprompt: {user: '{q}'}\nmath: {gold: '{a}'}\n"
BAD_TASKS = {
    # case: (t.yaml bytes, d.jsonl bytes, what the one error line must say; {dir} is the tasks folder)
    "yaml-syntax": (b"name: t\nkind: math\nsource: [unclosed\n", TINY_DATA, "malformed task YAML {dir}/t.yaml:4:"),
    "yaml-tab": (b"name: t\n\tkind: math\n", TINY_DATA, "malformed task YAML {dir}/t.yaml:2:"),
    "yaml-not-utf8": (SPEC.encode() + b"description: caf\xe9\n", TINY_DATA, "{dir}/t.yaml:6: not valid UTF-8"),
    "yaml-list": (b"- name: t\n", TINY_DATA, "{dir}/t.yaml: expected a mapping"),
    "yaml-empty": (b"", TINY_DATA, "{dir}/t.yaml: expected a mapping"),
    "bad-kind": (SPEC.replace("kind: math", "kind: poetry").encode(), TINY_DATA, "t.yaml:2: kind must be one of"),
    "unknown-key": (SPEC.encode() + b"promt: {user: x}\n", TINY_DATA, "t.yaml:6: unknown key(s) promt"),
    "template-brace": (SPEC.replace("'{q}'", "'{q'").encode(), TINY_DATA, "t.yaml:4: prompt.user is not a valid template"),
    "template-not-str": (SPEC.replace("'{q}'", "5").encode(), TINY_DATA, "t.yaml:4: prompt.user must be a string"),
    "math-not-mapping": (SPEC.replace("{gold: '{a}'}", "[1, 2]").encode(), TINY_DATA, "t.yaml:5: math must be a mapping"),
    "bad-extract": (SPEC.replace("gold: '{a}'", "gold: '{a}', extract: regex").encode(), TINY_DATA,
                    "t.yaml:5: math.extract must be one of"),
    "hub-not-mapping": (SPEC.replace("{local: d.jsonl}", "{hub: [1]}").encode(), TINY_DATA, "t.yaml:3: source.hub must be"),
    "field-not-a-column": (SPEC.replace("'{q}'", "'{question}'").encode(), TINY_DATA,
                           "prompt.user: field '{question}' is not a column of the dataset (columns: a, q)"),
    "gold-not-a-column": (SPEC.replace("'{a}'", "'{answer}'").encode(), TINY_DATA, "math.gold: field '{answer}' is not a column"),
    "id-field-not-a-column": (SPEC.encode() + b"id_field: uid\n", TINY_DATA, "id_field 'uid' is not a column"),
    "duplicate-ids": (SPEC.encode() + b"id_field: a\n", TINY_DATA.replace(b'"42"', b'"5"'),
                      "rows 1 and 2 of the dataset have the same id '5'"),
    "gsm8k-gold-without-hashes": (SPEC.replace("gold: '{a}'", "gold: '{a}', gold_style: gsm8k").encode(), TINY_DATA,
                                  "problem t/0 (row 1): GSM8K answer field has no '####'"),
    "data-missing": (SPEC.replace("d.jsonl", "nope.jsonl").encode(), TINY_DATA, "local file is missing: {dir}/nope.jsonl"),
    "data-empty": (SPEC.encode(), b"", "task 't': the dataset is empty: {dir}/d.jsonl"),
    "data-blank-lines": (SPEC.encode(), b"\n  \n\n", "task 't': the dataset is empty"),
    "data-bad-json": (SPEC.encode(), TINY_DATA + b'{"q": "x", \n', "{dir}/d.jsonl:3: malformed JSON"),
    "data-not-utf8": (SPEC.encode(), TINY_DATA + b'{"q": "\xff\xfe", "a": "1"}\n', "{dir}/d.jsonl:3: not valid UTF-8"),
    "data-not-objects": (SPEC.encode(), b"[1, 2]\n", "{dir}/d.jsonl:1: expected a JSON object"),
    "data-lone-surrogate": (SPEC.encode(), TINY_DATA + b'{"q": "x \\ud800", "a": "1"}\n', "{dir}/d.jsonl:3: a string holds a lone surrogate"),
    "data-too-deep": (SPEC.encode(), b"[" * 100_000 + b"\n", "{dir}/d.jsonl:1: malformed JSON (nested too deeply)"),
}  # fmt: skip


def write_task(tmp_path: Path, case: str) -> tuple[Path, str]:
    spec, data, message = BAD_TASKS[case]
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_bytes(spec)
    (tasks / "d.jsonl").write_bytes(data)
    return tasks, message.replace("{dir}", str(tasks))


@pytest.mark.parametrize("case", sorted(BAD_TASKS))
def test_bad_task_spec_or_data_is_caught_at_load(tmp_path, case):
    """Every bad spec or data file fails loading (before any run folder or backend) with its file and line."""
    from tteval.errors import TtevalError

    tasks, message = write_task(tmp_path, case)
    with pytest.raises(TtevalError) as info:
        load_problems(load_task("t", tasks), limit=2)
    assert message in str(info.value) and "\n" not in str(info.value)


CLI_CASES = ["yaml-syntax", "yaml-not-utf8", "field-not-a-column", "data-empty", "data-bad-json", "data-not-utf8"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_bad_task_spec_or_data_is_one_line_and_makes_no_run_folder(tmp_path, case):
    tasks, message = write_task(tmp_path, case)
    out = tmp_path / "out"
    # an unreachable backend: a spec error must be caught before any backend is contacted
    r = tteval("run", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "x", "--task", "t",
               "--tasks-dir", str(tasks), "--limit", "2", "-n", "1", "--out", str(out))  # fmt: skip
    assert_one_line_error(r, message)
    assert run_dirs(out) == []


def test_good_tiny_task_runs(server, tmp_path):
    """The control for the table above: the same spec and data, undamaged, run to completion."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_text(SPEC)
    (tasks / "d.jsonl").write_bytes(TINY_DATA)
    srv = server(lambda q, body: (200, chat_completion(["\\boxed{5}"] * body["n"]), {}))
    r = tteval("run", "--backend", "openai", "--base-url", srv.url, "--model", "x", "--task", "t", "--tasks-dir",
               str(tasks), "--limit", "2", "-n", "1", "--out", str(tmp_path / "out"), "--no-cache")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [s["correct"] for s in read_samples(only_run_dir(tmp_path / "out"))] == [True, False]


# ------------------------------------------------------------- 4. bad input never damages an existing run
def finished_run(server, out: Path, limit: int = 2) -> tuple[ChatServer, list[str], Path]:
    srv = server(healthy)
    args = run_args(srv.url, out, "--limit", str(limit), "-n", "2")
    r = tteval(*args)
    assert r.returncode == 0, r.stderr
    return srv, args, only_run_dir(out)


def test_bad_commands_leave_a_finished_run_untouched(server, tmp_path):
    out = tmp_path / "out"
    srv, args, run = finished_run(server, out)
    before, asked = snapshot(out), len(srv.asked)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t.yaml").write_text("name: t\nkind: math\nsource: [unclosed\n")
    (tasks / "e.yaml").write_text(SPEC.replace("name: t", "name: e").replace("d.jsonl", "e.jsonl"))
    (tasks / "e.jsonl").write_bytes(b"")
    bad = [
        (["-n", "0"], "-n must be at least 1, got 0"),
        (["--max-tokens", "-1"], "--max-tokens must be at least 1, got -1"),
        (["--limit", "0"], "--limit must be at least 1, got 0"),
        (["--limit", "5000"], "--limit 5000 is beyond the dataset: task 'gsm8k' has 1319 problems"),
        (["--temperature", "-0.5"], "--temperature must be >= 0"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--task", "t", "--tasks-dir", str(tasks)], f"malformed task YAML {tasks}/t.yaml:4"),
        (["--task", "e", "--tasks-dir", str(tasks)], "the dataset is empty"),
        (["--backend", "llamacpp", "--model", "/nonexistent.gguf"], "model file not found: /nonexistent.gguf"),
    ]  # later options override the finished run's own: the same --out, one thing wrong
    for extra, message in bad:
        r = tteval(*args, *extra)
        assert_one_line_error(r, message)
        assert snapshot(out) == before, extra
    r = tteval("run", "--resume", str(run / "nope"))
    assert_one_line_error(r, "file not found")
    assert snapshot(out) == before and len(srv.asked) == asked  # and the server was never asked


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1", "http://no-such-host.invalid:8000/v1"])
def test_unreachable_server_fails_fast_in_one_line(tmp_path, url):
    import time

    t0 = time.monotonic()
    r = tteval(*run_args(url, tmp_path / "out", "--limit", "1", "-n", "1"), env={"TTEVAL_HTTP_RETRIES": "5"})
    assert time.monotonic() - t0 < 20  # the start-up probe is not retried
    assert_one_line_error(r, f"cannot reach OpenAI-compatible server at {url}")


# A backend that cannot start must not leave an empty run folder behind (execute creates it before the backend).
@pytest.mark.parametrize("backend", ["openai-unreachable", "llamacpp-garbage-gguf"])
def test_a_backend_that_cannot_start_leaves_no_run_folder(tmp_path, backend):
    out = tmp_path / "out"
    if backend == "llamacpp-garbage-gguf":
        model = tmp_path / "broken.gguf"
        model.write_bytes(b"GGUF" + bytes(range(256)) * 8)
        r = tteval("run", "--model", str(model), "--limit", "1", "-n", "1", "--out", str(out))
        assert_one_line_error(r, "could not load")
    else:
        r = tteval(*run_args("http://127.0.0.1:9/v1", out, "--limit", "1", "-n", "1"))
        assert_one_line_error(r, "cannot reach")
    assert run_dirs(out) == []


def test_rerun_against_a_dead_server_keeps_a_failed_run_resumable(server, tmp_path):
    state = {"ok_left": 2}

    def answer(question, body):
        if state["ok_left"] == 0:
            return 400, json_body({"error": {"message": "context length exceeded"}}), {}
        state["ok_left"] -= 1
        return healthy(question, body)

    srv = server(answer)
    args = run_args(srv.url, tmp_path, "--limit", "4", "-n", "2", "--batch-problems", "1")
    r = tteval(*args)
    assert r.returncode == 2 and "context length exceeded" in error_lines(r.stderr)[0]
    run = only_run_dir(tmp_path)
    before = snapshot(tmp_path)
    port = srv.server.server_port
    srv.stop()

    r = tteval(*args)  # the server is gone
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = error_lines(r.stderr)
    assert "cannot reach OpenAI-compatible server" in line
    assert snapshot(tmp_path) == before  # samples, run.json ("failed", with its error) as they were
    assert json.loads((run / "run.json").read_text())["status"] == "failed"

    srv = server(healthy, port=port)  # back, on the same address: the run resumes
    r = tteval(*args)
    assert r.returncode == 0, r.stderr
    assert sorted(QUESTION_INDEX[q] for q in srv.asked) == [2, 3]
    samples = read_samples(run)
    assert len({(s["task_id"], s["sample_index"]) for s in samples}) == len(samples) == 8


@pytest.mark.parametrize(
    "damage,message",
    [
        (b'{"task_id": "gsm8k/0", "completion": "\xff\xfe"}', "samples.jsonl:2: malformed sample line: not valid UTF-8"),
        (b'{"task_id": "gsm8k/0", "completion": ', "samples.jsonl:2: malformed sample line"),
        (b"[1, 2]", "samples.jsonl:2: malformed sample line: expected a JSON object"),
        (b"[" * 100_000, "samples.jsonl:2: malformed sample line: malformed JSON (nested too deeply)"),
    ],
)
def test_a_damaged_samples_file_is_reported_not_rewritten(server, tmp_path, damage, message):
    srv, args, run = finished_run(server, tmp_path)
    lines = (run / "samples.jsonl").read_bytes().split(b"\n")
    lines[1] = damage
    (run / "samples.jsonl").write_bytes(b"\n".join(lines))
    before = snapshot(tmp_path)
    r = tteval(*args)
    assert_one_line_error(r, message)
    assert snapshot(tmp_path) == before


# An error text holding rich markup ('[/]': a server's message, a path with brackets) is printed verbatim.
def test_an_error_message_with_markup_is_printed_verbatim(server, tmp_path):
    message = "bad [/] token [red]x[/red]"
    srv = server(lambda q, body: (400, json_body({"error": {"message": message}}), {}))
    r = tteval(*run_args(srv.url, tmp_path, "--limit", "1", "-n", "1"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = error_lines(r.stderr)
    assert line.endswith(message)


# Usage errors: typer 0.29 raises its vendored click's exceptions (typer._click), not click.ClickException; each
# must still be one `error:` line with exit 2, and bare `tteval` shows the help.
@pytest.mark.parametrize(
    "args,message",
    [
        (["run", "-n", "many"], "valid integer"),
        (["run", "--no-such-flag"], "No such option: --no-such-flag"),
        (["run", "--task"], "requires an argument"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_usage_errors_are_one_error_line_with_exit_2(args, message):
    r = tteval(*args, env={"COLUMNS": "80"})
    line = assert_one_line_error(r, message)
    assert r.returncode == 2 and "internal error" not in line


def test_prompts_with_lone_surrogates_reach_the_server_as_replacement_characters(server):
    """Model output fed back into a prompt (verifiers, particle filtering) may hold lone surrogates: sent as U+FFFD."""
    from tteval.backends.base import Request
    from tteval.backends.openai import OpenAIBackend

    bodies = []

    def answer(question, body):
        bodies.append(body)
        return 200, chat_completion(["ok \udfff"] * body["n"]), {}

    srv = server(answer)
    b = OpenAIBackend(srv.url, "x")
    try:
        (out,) = b.generate([Request(messages=(("user", "a \ud800 b"),), n=2, max_tokens=4, seed=1)])
    finally:
        b.close()
    assert bodies[0]["messages"] == [{"role": "user", "content": "a \ufffd b"}]
    assert [c.text for c in out] == ["ok \udfff", "ok \udfff"]  # what the server sent, kept as it is


@pytest.mark.parametrize(
    "env,message",
    [
        ({"TTEVAL_HTTP_RETRIES": "lots"}, "TTEVAL_HTTP_RETRIES must be a whole number >= 0, got 'lots'"),
        ({"TTEVAL_HTTP_BACKOFF_S": "-1"}, "TTEVAL_HTTP_BACKOFF_S must be a number >= 0, got '-1'"),
        ({"TTEVAL_MATH_TIMEOUT_S": "0"}, "TTEVAL_MATH_TIMEOUT_S must be a positive number of seconds, got '0'"),
    ],
)
def test_bad_tuning_variables_are_one_error_line(server, tmp_path, env, message):
    srv = server(healthy)
    r = tteval(*run_args(srv.url, tmp_path, "--limit", "1", "-n", "1"), env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = error_lines(r.stderr)  # the grader starts with the first chunk: it may come as "stopped by an error"
    assert message in line
    assert srv.asked == []
