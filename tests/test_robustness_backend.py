"""A backend failing mid-run or never reachable: one error line, the finished chunks kept, and the same command
resumes; no empty run folder. Runs `tteval` as a subprocess against the scripted OpenAI-compatible server
(tests/helpers.py) answering correct chat completions, then HTTP 500s, 400s or dropped connections; no model is
loaded, so every test takes seconds."""

from __future__ import annotations

import json
import threading

import pytest
from helpers import (
    PROBLEMS, QUESTION_INDEX, assert_one_line_error, error_lines, healthy, json_body, only_run_dir, read_samples,
    run_args, run_dirs, snapshot, tteval,
)  # fmt: skip

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


# An error text holding rich markup ('[/]': a server's message, a path with brackets) is printed verbatim.
def test_an_error_message_with_markup_is_printed_verbatim(server, tmp_path):
    message = "bad [/] token [red]x[/red]"
    srv = server(lambda q, body: (400, json_body({"error": {"message": message}}), {}))
    r = tteval(*run_args(srv.url, tmp_path, "--limit", "1", "-n", "1"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    (line,) = error_lines(r.stderr)
    assert line.endswith(message)
