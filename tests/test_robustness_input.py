"""Bad input never damages an existing run: bad options, a damaged samples file, usage errors and bad tuning
variables are one error line and leave the run folder byte for byte as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import (
    SPEC, ChatServer, assert_one_line_error, error_lines, healthy, only_run_dir, run_args, snapshot, tteval,
)  # fmt: skip

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
